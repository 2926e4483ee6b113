// MMPR's correctness postprocess (InternVL `mmpr_data_pipeline_correctness_postprocess.py`,
// rl_data.md section 2): sampled responses are grouped by (image, question, answer); each is
// positive when its extracted answer checks against the ground truth, negative when it does not,
// and a format negative when no answer can be extracted. Per key every positive x negative pair is
// built, except where the positive's answer is a substring of the negative's (lowercased: "the
// negative may well say the same"), and random.sample keeps at most numPairsPerKey of them with
// Python's generator seeded 0, so the same pairs as MMPR's own run are kept. Pairs are then
// deduplicated. Answer extraction and check_answer are the rewards' (lib/rewards/mmpr.ts).
import fs from 'node:fs';
import path from 'node:path';
import { DataError, type RecordSource } from '../data/records.js';
import {
  checkAnswer,
  extractMmprAnswer,
  modesForDataset,
  PROMPT_VERSIONS,
  type CheckMode,
  type PromptVersion,
} from '../rewards/mmpr.js';
import { writeFileAtomic, writeAll } from '../util/atomic_write.js';
import { readJsonlRows, pythonStr, textField } from './input.js';
import { writeMetaEntry } from './meta.js';
import { PythonRandom } from './python_random.js';
import { answerText } from './sample.js';

/** MMPR's `option_candidate`: the letters a multiple-choice ground truth can be. */
const OPTION_LETTERS = 'ABCDEFGHIJKLMN';

/** MMPR's `post_process`: the option letter of a prediction ("b", "B.", "(B)", "**B**"), or an error. */
export function optionLetter(pred: string): string {
  const p = stripChars(pred.trim(), '*').trim().toUpperCase();
  if ([...p].length === 1) return p;
  if (p.length > 1 && !/^\p{L}$/u.test(p[1]!) && OPTION_LETTERS.includes(p[0]!)) return p[0]!;
  if (p.length > 2 && p[0] === '(' && p[2] === ')' && OPTION_LETTERS.includes(p[1]!)) return p[1]!;
  throw new Error(`Fail to parse pred: ${p}`);
}

/** Python's str.strip(chars) for a set of characters. */
function stripChars(text: string, chars: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && chars.includes(text[start]!)) start++;
  while (end > start && chars.includes(text[end - 1]!)) end--;
  return text.slice(start, end);
}

/**
 * MMPR's `fix_answer` (`--answer-fix`): when the prediction contains the ground truth (also with
 * '.' stripped and ',' removed: 30,594 vs 30594), its last occurrence in the response becomes the
 * ground truth as written and surrounding '*' go; then `**Final` on the last line becomes `Final`.
 * Throws where MMPR's raises (an empty prediction to replace, a response of one line): the item
 * then counts as a format negative.
 */
export function fixAnswer(response: string, answerPred: string, answerGt: string): string {
  let pred = answerPred.toLowerCase();
  let gt = answerGt.toLowerCase();
  if (gt.length === 1 && OPTION_LETTERS.includes(gt.toUpperCase())) {
    try {
      pred = optionLetter(answerPred);
    } catch {
      return response;
    }
    gt = gt.toUpperCase();
  }
  const loose = (s: string) => stripChars(s, '.').replaceAll(',', '');
  let fixed = response;
  if (pred.includes(gt) || loose(pred).includes(loose(gt))) {
    if (answerPred === '') throw new Error('fix_answer: empty separator');
    const at = fixed.lastIndexOf(answerPred);
    if (at !== -1) fixed = fixed.slice(0, at) + answerGt + fixed.slice(at + answerPred.length);
    fixed = stripChars(fixed.trim(), '*').trim();
  }
  const cut = fixed.lastIndexOf('\n');
  if (cut === -1) throw new Error('fix_answer: the response has one line');
  const last = fixed.slice(cut + 1);
  if (last.includes('**Final')) fixed = `${fixed.slice(0, cut)}\n${last.replaceAll('**Final', 'Final')}`.trim();
  return fixed;
}

/** One sampled response with what the postprocess found. */
export interface ScoredItem {
  row: Record<string, unknown>;
  /** The extracted answer ('None' for a format negative, as MMPR writes it). */
  answerPred: string;
  source: RecordSource;
}

export interface Groups {
  /** Per key, in first-seen order. */
  positive: Map<string, ScoredItem[]>;
  negative: Map<string, ScoredItem[]>;
  formatNegative: Map<string, ScoredItem[]>;
}

export interface ClassifyOptions {
  modes: readonly CheckMode[];
  answerFix?: boolean;
  /** Take correctness from each row's `is_correct` (MMPR's --use-correctness-cache). */
  useCorrectnessCache?: boolean;
}

/** The group key: (str(image), question, answer). */
export function pairKey(row: Record<string, unknown>): string {
  return JSON.stringify([pythonStr(row.image ?? ''), row.question, String(row.answer)]);
}

function push(map: Map<string, ScoredItem[]>, key: string, item: ScoredItem): void {
  const list = map.get(key);
  if (list) list.push(item);
  else map.set(key, [item]);
}

/** `_build_items_based_on_correctness` on the sampled rows, in order. */
export function classifyItems(
  rows: Iterable<{ row: Record<string, unknown>; source: RecordSource }>,
  options: ClassifyOptions,
): Groups {
  const groups: Groups = { positive: new Map(), negative: new Map(), formatNegative: new Map() };
  for (const { row: input, source } of rows) {
    const row = { ...input };
    const key = pairKey(row);
    const gt = answerText(row, source);
    const response = textField(row, 'response', source);
    const version = promptVersionOf(row, source);
    let correct: boolean;
    let answerPred = '';
    if (options.useCorrectnessCache) {
      correct = correctnessOf(row, source);
    } else {
      const parsed = extractMmprAnswer(response, version);
      if (parsed === null) {
        row.answer_pred = 'None';
        push(groups.formatNegative, key, { row, answerPred: 'None', source });
        continue;
      }
      answerPred = parsed;
      row.answer_pred = answerPred;
      if (options.answerFix && (version === 'en' || version === 'zh')) {
        try {
          row.response = fixAnswer(response, answerPred, gt);
        } catch {
          row.answer_pred = 'None';
          push(groups.formatNegative, key, { row, answerPred: 'None', source });
          continue;
        }
      }
      correct = checkAnswer(answerPred, gt, options.modes) === 1;
    }
    push(correct ? groups.positive : groups.negative, key, { row, answerPred, source });
  }
  return groups;
}

function promptVersionOf(row: Record<string, unknown>, source: RecordSource): PromptVersion {
  const value = row.prompt_version ?? 'en';
  if (!PROMPT_VERSIONS.includes(value as PromptVersion)) {
    throw new DataError(
      source,
      `"prompt_version" must be one of ${PROMPT_VERSIONS.join(', ')}, got ${JSON.stringify(value)}`,
    );
  }
  return value as PromptVersion;
}

function correctnessOf(row: Record<string, unknown>, source: RecordSource): boolean {
  const value = row.is_correct;
  if (value === true || value === 1 || value === '1') return true;
  if (value === false || value === 0 || value === '0') return false;
  throw new DataError(source, `"is_correct" must be 0 or 1 with useCorrectnessCache, got ${JSON.stringify(value)}`);
}

/** A preference pair as MMPR writes it. */
export type PairRow = Record<string, unknown>;

function pairOf(pos: ScoredItem, neg: ScoredItem): PairRow {
  const pair: PairRow = {
    image: pos.row.image ?? '',
    question: pos.row.question,
    chosen: pos.row.response,
    rejected: neg.row.response,
    answer_gt: pos.row.answer,
  };
  if ('meta' in pos.row) pair.chosen_meta = pos.row.meta;
  if ('meta' in neg.row) pair.rejected_meta = neg.row.meta;
  return pair;
}

export interface PairStats {
  pairs: number;
  entailSkip: number;
  keysWithoutPairs: number;
  maxPossiblePairs: number;
}

/** `build_pairs_based_on_pos_neg`: per positive key with negatives, pos x neg pairs, at most numPairsPerKey kept. */
export function buildPairs(
  positive: Map<string, ScoredItem[]>,
  negative: Map<string, ScoredItem[]>,
  options: { numPairsPerKey: number; random: PythonRandom; allowEntailment?: boolean },
): { pairs: PairRow[]; stats: PairStats } {
  const stats: PairStats = { pairs: 0, entailSkip: 0, keysWithoutPairs: 0, maxPossiblePairs: 0 };
  const pairs: PairRow[] = [];
  for (const [key, positives] of positive) {
    const negatives = negative.get(key);
    if (negatives === undefined) continue;
    const candidates: PairRow[] = [];
    for (const pos of positives) {
      for (const neg of negatives) {
        if (!options.allowEntailment && neg.answerPred.toLowerCase().includes(pos.answerPred.toLowerCase())) {
          stats.entailSkip += 1;
          continue;
        }
        candidates.push(pairOf(pos, neg));
      }
    }
    if (candidates.length === 0) stats.keysWithoutPairs += 1;
    stats.maxPossiblePairs += positives.length * negatives.length;
    pairs.push(...options.random.sample(candidates, Math.min(candidates.length, options.numPairsPerKey)));
  }
  stats.pairs = pairs.length;
  return { pairs, stats };
}

/**
 * `save_pairs`' deduplication on (str(image), question, chosen, rejected, answer_gt), first
 * occurrence kept (MMPR iterates a Python set: its order is arbitrary); an empty image is left out.
 */
export function dedupePairs(pairs: readonly PairRow[]): PairRow[] {
  const seen = new Set<string>();
  const out: PairRow[] = [];
  for (const pair of pairs) {
    const key = JSON.stringify([pythonStr(pair.image), pair.question, pair.chosen, pair.rejected, pair.answer_gt]);
    if (seen.has(key)) continue;
    seen.add(key);
    const { image, ...rest } = pair;
    const hasImage =
      image !== '' && image !== null && image !== undefined && !(Array.isArray(image) && image.length === 0);
    out.push(hasImage ? { image, ...rest } : rest);
  }
  return out;
}

export interface PairsOptions {
  /** The sampled responses (`vlalign data sample`'s output). */
  input: string;
  /** MMPR's save dir: raw/, pos_items/, neg_items/ and meta.json go here. */
  outDir: string;
  /** The dataset name (default: the input's file name without .jsonl); also picks the check modes. */
  name?: string;
  /** Overrides the modes MMPR picks from the dataset name. */
  modes?: readonly CheckMode[];
  /** MMPR's default 15; capped at 3 for files of more than 500,000 lines. */
  numPairsPerKey?: number;
  answerFix?: boolean;
  useCorrectnessCache?: boolean;
  /** Only the first maxLines lines are read (MMPR's default 1e6). */
  maxLines?: number;
  /** Python random seed (MMPR seeds 0 once). */
  seed?: number;
  /** Image root written to meta.json (default: the input's folder). */
  imageRoot?: string;
  log?: (line: string) => void;
}

export interface PairsSummary {
  correctness: PairStats & { distinct: number; file: string | null };
  format: PairStats & { distinct: number; file: string | null };
  positiveItems: number;
  negativeItems: number;
  formatNegativeItems: number;
  allIncorrectKeys: number;
}

/** The whole postprocess of one sampled file, written as MMPR writes it, plus meta.json entries. */
export async function runPairs(options: PairsOptions): Promise<PairsSummary> {
  const name = options.name ?? path.basename(options.input).replace(/\.jsonl$/, '');
  const maxLines = options.maxLines ?? 1_000_000;
  const rows: { row: Record<string, unknown>; source: RecordSource }[] = [];
  for await (const row of readJsonlRows(options.input)) {
    if (rows.length >= maxLines) break;
    rows.push(row);
  }
  const requested = options.numPairsPerKey ?? 15;
  const numPairsPerKey = rows.length > 500_000 ? Math.min(requested, 3) : requested;
  const modes = options.modes ?? modesForDataset(options.name ?? path.basename(options.input));
  const groups = classifyItems(rows, {
    modes,
    answerFix: options.answerFix,
    useCorrectnessCache: options.useCorrectnessCache,
  });
  const random = new PythonRandom(options.seed ?? 0);
  const allowEntailment = options.useCorrectnessCache ?? false;
  const correctness = buildPairs(groups.positive, groups.negative, { numPairsPerKey, random, allowEntailment });
  const format = buildPairs(groups.positive, groups.formatNegative, { numPairsPerKey, random, allowEntailment });
  const dir = (sub: string) => {
    const d = path.join(options.outDir, sub);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
  writeJsonl(
    path.join(dir('pos_items'), `${name}.jsonl`),
    [...groups.positive.values()].flat().map((i) => i.row),
  );
  const allIncorrect = [...groups.negative.keys()].filter((k) => !groups.positive.has(k));
  writeJsonl(path.join(dir('neg_items'), `${name}.jsonl`), questionOnly(allIncorrect, groups.negative));
  const root = options.imageRoot ?? path.dirname(options.input);
  const save = (pairs: PairRow[], suffix: string): { distinct: number; file: string | null } => {
    const distinct = dedupePairs(pairs);
    if (distinct.length === 0) return { distinct: 0, file: null };
    const file = path.join(dir('raw'), `${name}_${suffix}.jsonl`);
    writeJsonl(file, distinct);
    writeMetaEntry(path.join(options.outDir, 'meta.json'), `${name}_${suffix}`, {
      root,
      annotation: file,
      length: distinct.length,
    });
    return { distinct: distinct.length, file };
  };
  const summary: PairsSummary = {
    correctness: { ...correctness.stats, ...save(correctness.pairs, 'pairs_vqa_correctness_rules') },
    format: { ...format.stats, ...save(format.pairs, 'pairs_vqa_format_rules') },
    positiveItems: count(groups.positive),
    negativeItems: count(groups.negative),
    formatNegativeItems: count(groups.formatNegative),
    allIncorrectKeys: allIncorrect.length,
  };
  options.log?.(
    `pairs ${name}: ${summary.correctness.distinct} correctness pairs, ${summary.format.distinct} format pairs ` +
      `(${summary.positiveItems} positive, ${summary.negativeItems} negative, ${summary.formatNegativeItems} format-negative responses; ` +
      `${summary.correctness.entailSkip + summary.format.entailSkip} skipped as substrings)`,
  );
  return summary;
}

const count = (map: Map<string, ScoredItem[]>) => [...map.values()].reduce((n, list) => n + list.length, 0);

// `save_items(question_only=True)`: one {image?, question, answer} row per all-incorrect key.
function questionOnly(keys: readonly string[], negative: Map<string, ScoredItem[]>): Record<string, unknown>[] {
  return keys.map((key) => {
    const { row } = negative.get(key)![0]!;
    const image = row.image;
    const hasImage =
      image !== undefined && image !== null && image !== '' && !(Array.isArray(image) && image.length === 0);
    return hasImage
      ? { image, question: row.question, answer: row.answer }
      : { question: row.question, answer: row.answer };
  });
}

function writeJsonl(file: string, rows: readonly Record<string, unknown>[]): void {
  writeFileAtomic(file, (fd) => {
    for (const row of rows) writeAll(fd, Buffer.from(`${JSON.stringify(row)}\n`, 'utf8'));
  });
}
