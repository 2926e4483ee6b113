// MIA-DPO (Liuziyu77/MIA-DPO, rl_data.md section 5): multi-image preference data from
// single-image rows {image, question, chosen}. Each row becomes one candidate per form (sequence,
// grid collage, pic-in-pic; lib/pipelines/mia_dpo_images.ts) with companions drawn from the input's
// own images of the same source (the path's first folder, as MIA-DPO pools textvqa / coco / ...);
// the model answers each candidate greedily and its attention decides whether the answer is a
// rejected one (lib/pipelines/mia_dpo_select.ts). Candidates stream to `candidates.jsonl` through
// the shared resumable runner (a killed run resumes by row key, byte for byte); at the end the kept
// ones are written per form as MIA-DPO's DPO JSON and as MMPR jsonl with meta.json entries.
import fs from 'node:fs';
import path from 'node:path';
import { DataError, resolveInsideRoot, type RecordSource } from '../data/records.js';
import type { ImageInput } from '../processing/index.js';
import { writeAtomic } from '../util/atomic_write.js';
import { imageField, pythonStr, readJsonlRows, textField } from './input.js';
import { writeMetaEntry } from './meta.js';
import {
  containsBox,
  decodeRgb,
  GRID_COUNTS,
  gridPrompt,
  noiseGridRegion,
  noiseWrapped,
  PIP_PHRASES,
  pipPrompt,
  SEQUENCE_COUNTS,
  sequencePrompt,
  writeGrid,
  writePictureInPicture,
} from './mia_dpo_images.js';
import {
  type AttentionMap,
  centerRatio,
  gridRatio,
  type InspectingEngine,
  type Inspection,
  type InspectRequest,
  isRejectedCandidate,
  MIA_DPO_DEFAULTS,
  MIA_FORMS,
  type MiaForm,
  sequenceRatio,
} from './mia_dpo_select.js';
import { PythonRandom } from './python_random.js';
import { runResumable, type RunSummary } from './runner.js';

export interface MiaDpoOptions {
  input: string;
  /** Output folder: candidates.jsonl (resumed when present), images/, the per-form results, meta.json. */
  outDir: string;
  engine: InspectingEngine;
  /** Image paths resolve here (default: the input's folder). */
  imageRoot?: string;
  /**
   * A text file of image paths (one a line, relative to the image root) companions are drawn from
   * (default: the input's own images). MIA-DPO draws from every image of the row's source dataset.
   */
  poolFile?: string;
  /** Forms made per row (default all three, in this order). */
  forms?: readonly MiaForm[];
  /** Row r's form f draws from Python's random seeded with (seed · 2^20 + line) · 4 + f. */
  seed?: number;
  /** Add MIA-DPO's noise to the picture the model answers (grid: σ 225 on the target cell; pic-in-pic: σ 49). Default true. */
  noise?: boolean;
  batchSize?: number;
  log?: (line: string) => void;
}

export interface MiaDpoSummary extends RunSummary {
  /** Kept pairs per form. */
  kept: Partial<Record<MiaForm, number>>;
}

interface MiaItem {
  row: Record<string, unknown>;
  source: RecordSource;
  /** The input line: seeds the row's draws and names its pictures. */
  line: number;
  id: unknown;
  image: string;
  question: string;
  gt: string;
  key: string;
}

/** What the model answers for one candidate, and how its ratio is read. */
interface Built {
  line: Record<string, unknown>;
  request: InspectRequest;
  ratio: (maps: AttentionMap[]) => number;
}

const rowKey = (image: unknown, question: unknown) => JSON.stringify([pythonStr(image), question]);

export async function runMiaDpo(options: MiaDpoOptions): Promise<MiaDpoSummary> {
  const forms = options.forms ?? MIA_FORMS;
  if (forms.length === 0 || forms.some((f) => !MIA_FORMS.includes(f)) || new Set(forms).size !== forms.length)
    throw new RangeError(`forms must be distinct ones of ${MIA_FORMS.join(', ')}, got ${forms.join(', ')}`);
  const root = options.imageRoot ?? path.dirname(options.input);
  const seed = options.seed ?? 0;
  const noise = options.noise ?? true;
  fs.mkdirSync(path.join(options.outDir, 'images'), { recursive: true });
  const pools = options.poolFile === undefined ? await imagePools(options.input) : poolsFromFile(options.poolFile);
  const context: BuildContext = { root, outDir: options.outDir, pools, noise };
  const output = path.join(options.outDir, 'candidates.jsonl');
  const summary = await runResumable<MiaItem>({
    name: 'mia-dpo',
    input: options.input,
    output,
    batchSize: options.batchSize ?? 8,
    linesPerRow: forms.length,
    parse: parseRow,
    inputKey: (item) => item.key,
    outputKey: (line) => rowKey(line.source_image, line.question),
    log: options.log,
    process: async (batch, batchIndex) => {
      const built: Built[][] = [];
      for (const item of batch) {
        const perForm: Built[] = [];
        for (const form of forms) {
          const rng = new PythonRandom((seed * 2 ** 20 + item.line) * 4 + MIA_FORMS.indexOf(form));
          perForm.push(await buildCandidate(form, item, rng, context));
        }
        built.push(perForm);
      }
      const asked = built.flat().filter((b) => b.line.skipped === undefined);
      const answers = await options.engine.inspect(
        asked.map((b) => b.request),
        batchIndex,
      );
      asked.forEach((b, i) => judge(b, answers[i]!));
      return built.map((perForm) => perForm.map((b) => b.line));
    },
  });
  return { ...summary, kept: await writeResults(output, forms, root, options.outDir) };
}

function parseRow(row: Record<string, unknown>, source: RecordSource): MiaItem {
  const question = textField(row, 'question', source);
  const gt = textField(row, 'chosen', source);
  const images = imageField(row, source);
  if (images.length !== 1)
    throw new DataError(source, `MIA-DPO takes single-image rows; this one has ${images.length}`);
  if (stripTags(question).trim() === '') throw new DataError(source, '"question" has no text besides its <image>');
  return {
    row,
    source,
    line: source.line ?? 0,
    id: row.id ?? null,
    image: images[0]!,
    question,
    gt,
    key: rowKey(row.image, question),
  };
}

const stripTags = (q: string) => q.replaceAll('<image>', '');

/** The input's distinct images grouped by source (the path's first folder), in first-seen order. */
async function imagePools(input: string): Promise<Map<string, string[]>> {
  const images: string[] = [];
  for await (const { row, source } of readJsonlRows(input)) images.push(...imageField(row, source));
  return groupBySource(images);
}

function poolsFromFile(file: string): Map<string, string[]> {
  if (!fs.existsSync(file)) throw new Error(`pool file ${file} does not exist`);
  return groupBySource(
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean),
  );
}

function groupBySource(images: Iterable<string>): Map<string, string[]> {
  const pools = new Map<string, Set<string>>();
  for (const image of images) {
    const group = sourceOf(image);
    if (!pools.has(group)) pools.set(group, new Set());
    pools.get(group)!.add(image);
  }
  return new Map([...pools].map(([k, v]) => [k, [...v]]));
}

const sourceOf = (image: string) => (image.includes('/') ? image.split('/')[0]! : '');

interface BuildContext {
  root: string;
  outDir: string;
  pools: Map<string, string[]>;
  noise: boolean;
}

/** `count` companions of the row's image: from its source's pool, else (too few there) from every image. */
function companions(item: MiaItem, count: number, rng: PythonRandom, pools: Map<string, string[]>): string[] {
  const others = (list: readonly string[]) => list.filter((p) => p !== item.image);
  let pool = others(pools.get(sourceOf(item.image)) ?? []);
  if (pool.length < count) pool = others([...new Set([...pools.values()].flat())]);
  if (pool.length < count)
    throw new DataError(item.source, `needs ${count} companion images but the pool has ${pool.length} other images`);
  return rng.sample(pool, count);
}

/** Python's random.shuffle. */
function shuffle<T>(list: T[], rng: PythonRandom): void {
  for (let i = list.length - 1; i > 0; i--) {
    const j = rng.randbelow(i + 1);
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
}

async function buildCandidate(form: MiaForm, item: MiaItem, rng: PythonRandom, ctx: BuildContext): Promise<Built> {
  const line: Record<string, unknown> = {
    id: item.id,
    form,
    source_image: item.row.image,
    question: item.question,
    chosen: item.gt,
    gt: item.gt,
  };
  const skip = skipReason(form, item);
  const resolve = (p: string) => resolveInsideRoot(ctx.root, p, item.source);
  if (form === 'sequence') {
    const count = SEQUENCE_COUNTS[rng.randbelow(SEQUENCE_COUNTS.length)]!;
    const list = [...companions(item, count - 1, rng, ctx.pools), item.image];
    shuffle(list, rng);
    const target = list.indexOf(item.image) + 1;
    const prompt = sequencePrompt(item.question, count, target);
    Object.assign(line, { image: list, prompt, target, count });
    if (skip) return skipped(line, skip);
    return {
      line,
      request: { question: prompt, images: list.map(resolve) },
      ratio: (maps) => sequenceRatio(maps, target),
    };
  }
  if (form === 'grid') {
    const count = GRID_COUNTS[rng.randbelow(GRID_COUNTS.length)]!;
    const list = [...companions(item, count - 1, rng, ctx.pools), item.image];
    shuffle(list, rng);
    const target = list.indexOf(item.image) + 1;
    const prompt = gridPrompt(item.question, target);
    const file = `images/grid_${item.line}.png`;
    Object.assign(line, { image: [file], prompt, target, count, image_list: list });
    if (skip) return skipped(line, skip);
    const out = path.join(ctx.outDir, file);
    const layout = await atomicImage(out, (tmp) => writeGrid(list.map(resolve), tmp));
    const seen: ImageInput = ctx.noise
      ? noiseGridRegion(await decodeRgb(out), layout.rows, layout.cols, target, rng)
      : out;
    return {
      line,
      request: { question: prompt, images: [seen] },
      ratio: (maps) => gridRatio(maps[0]!, layout.rows, layout.cols, target),
    };
  }
  const [companion] = companions(item, 1, rng, ctx.pools);
  const phrase = PIP_PHRASES[rng.randbelow(PIP_PHRASES.length)]!;
  const prompt = pipPrompt(item.question, phrase);
  const file = `images/pip_${item.line}.png`;
  Object.assign(line, { image: [file], prompt, target: 1, count: 2, image_list: [item.image, companion] });
  if (skip) return skipped(line, skip);
  const out = path.join(ctx.outDir, file);
  await atomicImage(out, (tmp) => writePictureInPicture(resolve(item.image), resolve(companion!), tmp));
  const seen: ImageInput = ctx.noise ? noiseWrapped(await decodeRgb(out), rng) : out;
  return { line, request: { question: prompt, images: [seen] }, ratio: (maps) => centerRatio(maps[0]!) };
}

/** Why MIA-DPO would not ask the model about this candidate (null: it would). */
function skipReason(form: MiaForm, item: MiaItem): string | null {
  const chars = [...item.gt].length;
  if (chars >= MIA_DPO_DEFAULTS.maxAnswerChars)
    return `answer of ${chars} characters (MIA-DPO keeps answers under ${MIA_DPO_DEFAULTS.maxAnswerChars})`;
  if (form !== 'sequence' && (containsBox(item.question) || containsBox(item.gt)))
    return 'a bounding box in the text (MIA-DPO leaves such rows out of grid and pic-in-pic)';
  return null;
}

function skipped(line: Record<string, unknown>, reason: string): Built {
  Object.assign(line, { rejected: null, ratio: null, ppl: null, kept: false, skipped: reason });
  return { line, request: { question: '', images: [] }, ratio: () => Number.NaN };
}

async function atomicImage<T>(file: string, write: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = `${file}.tmp-${process.pid}.png`;
  const result = await write(tmp);
  fs.renameSync(tmp, file);
  return result;
}

/** Fills in the model's answer and MIA-DPO's verdict. */
function judge(built: Built, answer: Inspection): void {
  const line = built.line;
  const ratio = built.ratio(answer.maps);
  const candidate = {
    form: line.form as MiaForm,
    count: line.count as number,
    ratio,
    ppl: answer.ppl,
    response: answer.response,
    gt: line.gt as string,
  };
  Object.assign(line, {
    rejected: answer.response,
    ratio: Number.isFinite(ratio) ? ratio : null,
    ppl: Number.isFinite(answer.ppl) ? answer.ppl : null,
    kept: isRejectedCandidate(candidate),
  });
}

/**
 * The kept candidates of each form: `mia_dpo_{form}.json` as MIA-DPO's make_data scripts dump
 * them ({id, image, prompt, chosen, rejected, gt}, indent 4; its prompt spells each image
 * `<image-placeholder>`, LLaVA's IMAGE_PLACEHOLDER), and `mia_dpo_{form}.jsonl`, MMPR rows with
 * one `<image>` per image, entered in meta.json (sequence paths relative to the image root, the
 * built pictures relative to the output folder).
 */
async function writeResults(
  candidates: string,
  forms: readonly MiaForm[],
  root: string,
  outDir: string,
): Promise<Partial<Record<MiaForm, number>>> {
  const dpo = new Map<MiaForm, Record<string, unknown>[]>(forms.map((f) => [f, []]));
  const mmpr = new Map<MiaForm, string[]>(forms.map((f) => [f, []]));
  for await (const { row } of readJsonlRows(candidates)) {
    if (row.kept !== true) continue;
    const form = row.form as MiaForm;
    const prompt = row.prompt as string;
    dpo.get(form)?.push({
      id: row.id,
      image: row.image,
      prompt: prompt.replaceAll('<image>', '<image-placeholder>'),
      chosen: row.chosen,
      rejected: row.rejected,
      gt: row.gt,
    });
    const pair = { id: row.id, image: row.image, question: prompt, chosen: row.chosen, rejected: row.rejected };
    mmpr.get(form)?.push(`${JSON.stringify({ ...pair, form, ratio: row.ratio, ppl: row.ppl })}\n`);
  }
  const kept: Partial<Record<MiaForm, number>> = {};
  for (const form of forms) {
    const name = `mia_dpo_${form}`;
    writeAtomic(path.join(outDir, `${name}.json`), `${JSON.stringify(dpo.get(form), null, 4)}\n`);
    const annotation = path.join(outDir, `${name}.jsonl`);
    writeAtomic(annotation, mmpr.get(form)!.join(''));
    writeMetaEntry(path.join(outDir, 'meta.json'), name, {
      root: form === 'sequence' ? root : outDir,
      annotation,
      length: mmpr.get(form)!.length,
    });
    kept[form] = mmpr.get(form)!.length;
  }
  return kept;
}
