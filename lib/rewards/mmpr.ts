// MMPR's answer checking (InternVL `tools/reasoning_data_pipeline/utils/accuracy_reward.py`,
// rl_data.md section 2): `check_answer(pred, gt, modes)` is 1 when the lowercased strings are equal,
// else 1 when the best of the modes' scores is > 0.9. The modes keep the source's quirks except the
// one named a bug: its ANLS scored dist / len (high for wrong answers); here it is 1 - dist / len.
// `latex` and `math_equiv` stand in for sympy's parse_latex and math_verify (not available in
// TypeScript): `latex` evaluates both sides as expressions, `math_equiv` is mathruler's grade_answer.
import { expressionsEqual } from './math_expr.js';
import { gradeAnswer } from './math_grader.js';
import { latexToText } from './latex_text.js';
import { pythonFloat, truthy } from './python.js';
import { groundTruthOf, perRow, type RewardFunction } from './types.js';
import type { ComputeScore } from './verl.js';

export const CHECK_MODES = ['vqa', 'relaxed', 'anls', 'mc', 'math', 'latex', 'math_equiv'] as const;
export type CheckMode = (typeof CHECK_MODES)[number];

/** The source's `get_mode(ds_name)`, by substring of the dataset name (math_verify_score as math_equiv). */
export function modesForDataset(name: string): CheckMode[] {
  const has = (...keys: string[]) => keys.some((k) => name.includes(k));
  if (has('chartqa')) return ['relaxed'];
  if (has('docvqa', 'infographics')) return ['anls'];
  if (has('SROIE', 'CLEVR_math', 'geos', 'geometry')) return ['relaxed', 'vqa', 'mc', 'math_equiv'];
  if (has('mavis')) return ['vqa', 'mc', 'math', 'latex', 'math_equiv'];
  return ['vqa', 'mc', 'math', 'math_equiv'];
}

/** `check_answer`: 0 or 1. */
export function checkAnswer(pred: string, gt: string, modes: readonly CheckMode[]): 0 | 1 {
  if (pred.toLowerCase() === gt.toLowerCase()) return 1;
  let accuracy = 0;
  // The source's order matters: an empty vqa normalisation resets what came before it.
  if (modes.includes('math_equiv')) accuracy = Math.max(accuracy, gradeAnswer(pred, gt) ? 1 : 0);
  if (modes.includes('vqa')) {
    const p = evalAiNormalize(pred);
    const g = evalAiNormalize(gt);
    accuracy = Math.max(accuracy, p === g ? 1 : 0);
    if (p.length === 0 || g.length === 0) accuracy = 0;
  }
  if (modes.includes('relaxed')) accuracy = Math.max(accuracy, relaxedCorrectness(gt, pred) ? 1 : 0);
  if (modes.includes('anls')) accuracy = Math.max(accuracy, anls(gt, pred));
  if (modes.includes('mc')) accuracy = Math.max(accuracy, multiChoiceScore(pred, gt) ? 1 : 0);
  if (modes.includes('math')) accuracy = Math.max(accuracy, mathScore(pred, gt) ? 1 : 0);
  if (modes.includes('latex') && (usesLatex(pred) || usesLatex(gt))) {
    accuracy = Math.max(accuracy, latexEqual(pred, gt) ? 1 : 0);
  }
  return accuracy > 0.9 ? 1 : 0;
}

// ---- vqa: EvalAI's answer normalisation (mmf `EvalAIAnswerProcessor`), then exact match ----

const NUMBER_MAP: Readonly<Record<string, string>> = {
  none: '0',
  zero: '0',
  one: '1',
  two: '2',
  three: '3',
  four: '4',
  five: '5',
  six: '6',
  seven: '7',
  eight: '8',
  nine: '9',
  ten: '10',
};
const ARTICLES = new Set(['a', 'an', 'the']);
const PUNCTUATIONS = [
  ';',
  '/',
  '[',
  ']',
  '"',
  '{',
  '}',
  '(',
  ')',
  '=',
  '+',
  '\\',
  '_',
  '-',
  '>',
  '<',
  '@',
  '`',
  ',',
  '?',
  '!',
];
// EvalAI's contraction table: key -> written form, '|' between pairs, '=' inside a pair.
const CONTRACTIONS: ReadonlyMap<string, string> = new Map(
  (
    "aint=ain't|arent=aren't|cant=can't|couldve=could've|couldnt=couldn't|couldn'tve=couldn't've|" +
    "couldnt've=couldn't've|didnt=didn't|doesnt=doesn't|dont=don't|hadnt=hadn't|hadnt've=hadn't've|" +
    "hadn'tve=hadn't've|hasnt=hasn't|havent=haven't|hed=he'd|hed've=he'd've|he'dve=he'd've|hes=he's|" +
    "howd=how'd|howll=how'll|hows=how's|Id've=I'd've|I'dve=I'd've|Im=I'm|Ive=I've|isnt=isn't|itd=it'd|" +
    "itd've=it'd've|it'dve=it'd've|itll=it'll|let's=let's|maam=ma'am|mightnt=mightn't|" +
    "mightnt've=mightn't've|mightn'tve=mightn't've|mightve=might've|mustnt=mustn't|mustve=must've|" +
    "neednt=needn't|notve=not've|oclock=o'clock|oughtnt=oughtn't|ow's'at='ow's'at|'ows'at='ow's'at|" +
    "'ow'sat='ow's'at|shant=shan't|shed've=she'd've|she'dve=she'd've|she's=she's|shouldve=should've|" +
    "shouldnt=shouldn't|shouldnt've=shouldn't've|shouldn'tve=shouldn't've|somebody'd=somebodyd|" +
    "somebodyd've=somebody'd've|somebody'dve=somebody'd've|somebodyll=somebody'll|somebodys=somebody's|" +
    "someoned=someone'd|someoned've=someone'd've|someone'dve=someone'd've|someonell=someone'll|" +
    "someones=someone's|somethingd=something'd|somethingd've=something'd've|something'dve=something'd've|" +
    "somethingll=something'll|thats=that's|thered=there'd|thered've=there'd've|there'dve=there'd've|" +
    "therere=there're|theres=there's|theyd=they'd|theyd've=they'd've|they'dve=they'd've|theyll=they'll|" +
    "theyre=they're|theyve=they've|twas='twas|wasnt=wasn't|wed've=we'd've|we'dve=we'd've|weve=we've|" +
    "werent=weren't|whatll=what'll|whatre=what're|whats=what's|whatve=what've|whens=when's|" +
    "whered=where'd|wheres=where's|whereve=where've|whod=who'd|whod've=who'd've|who'dve=who'd've|" +
    "wholl=who'll|whos=who's|whove=who've|whyll=why'll|whyre=why're|whys=why's|wont=won't|" +
    "wouldve=would've|wouldnt=wouldn't|wouldnt've=wouldn't've|wouldn'tve=wouldn't've|yall=y'all|" +
    "yall'll=y'all'll|y'allll=y'all'll|yall'd've=y'all'd've|y'alld've=y'all'd've|y'all'dve=y'all'd've|" +
    "youd=you'd|youd've=you'd've|you'dve=you'd've|youll=you'll|youre=you're|youve=you've"
  )
    .split('|')
    .map((pair) => pair.split('=') as [string, string]),
);
const COMMA_STRIP = /(?<=\d)(,)+(?=\d)/;
// The source's `(?!<=\d)` is a lookahead (a mistyped lookbehind), so a period before a digit stays.
const PERIOD_STRIP = /(?!<=\d)(\.)(?!\d)/g;
// `PERIOD_STRIP.sub('', text, re.UNICODE)` passes re.UNICODE (32) as the count: at most 32 removals.
const PERIOD_STRIP_COUNT = 32;

/** EvalAI's VQA answer normalisation as the source calls it. */
export function evalAiNormalize(answer: string): string {
  let s = answer.toLowerCase().replaceAll(',', '').replaceAll('?', '').replaceAll("'s", " 's").trim();
  s = s.replaceAll('\n', ' ').replaceAll('\t', ' ').trim();
  return digitsAndArticles(punctuation(s));
}

function punctuation(input: string): string {
  let out = input;
  const commaStrip = COMMA_STRIP.test(input);
  for (const p of PUNCTUATIONS) {
    const spaced = input.includes(`${p} `) || input.includes(` ${p}`);
    out = out.replaceAll(p, spaced || commaStrip ? '' : ' ');
  }
  let removed = 0;
  return out.replace(PERIOD_STRIP, (m) => (removed++ < PERIOD_STRIP_COUNT ? '' : m));
}

function digitsAndArticles(input: string): string {
  const words = input
    .toLowerCase()
    .split(/\s+/)
    .filter((w) => w.length > 0)
    .map((w) => NUMBER_MAP[w] ?? w)
    .filter((w) => !ARTICLES.has(w));
  return words.map((w) => CONTRACTIONS.get(w) ?? w).join(' ');
}

// ---- relaxed (ChartQA, pix2struct): numbers within 5%, else exact ----

/** `relaxed_correctness(target, prediction)`: a "20xx" target must match exactly; `%` is stripped. */
export function relaxedCorrectness(target: string, prediction: string, maxRelativeChange = 0.05): boolean {
  if (target.length === 4 && target.startsWith('20')) return prediction.toLowerCase() === target.toLowerCase();
  const toFloat = (text: string) => pythonFloat(text.endsWith('%') ? text.replace(/%+$/, '') : text);
  const p = toFloat(prediction);
  const t = toFloat(target);
  if (p !== null && truthy(t)) return Math.abs(p - t) / Math.abs(t) <= maxRelativeChange;
  return prediction.toLowerCase() === target.toLowerCase();
}

// ---- anls (DocVQA, InfographicVQA) ----

/** Normalised Levenshtein similarity 1 - dist / max length (the source returned dist / length: the bug). */
export function anls(gt: string, pred: string): number {
  const squash = (s: string) => s.trim().toLowerCase().split(/\s+/).filter(Boolean).join(' ');
  const dist = levenshtein([...squash(gt)], [...squash(pred)]);
  const length = Math.max([...gt.toUpperCase()].length, [...pred.toUpperCase()].length);
  return length === 0 ? 1 : 1 - dist / length;
}

function levenshtein(a: readonly string[], b: readonly string[]): number {
  let prev = Array.from({ length: a.length + 1 }, (_, i) => i);
  for (let j = 1; j <= b.length; j++) {
    const cur = [j];
    for (let i = 1; i <= a.length; i++) {
      cur[i] = a[i - 1] === b[j - 1] ? prev[i - 1]! : 1 + Math.min(prev[i - 1]!, prev[i]!, cur[i - 1]!);
    }
    prev = cur;
  }
  return prev[a.length]!;
}

// ---- mc: the letter of "B." or "(B)" ----

export function multiChoiceScore(pred: string, gt: string): boolean {
  let p = pred.trim();
  const g = gt.trim();
  if (p.toLowerCase() === g.toLowerCase()) return true;
  if (p.length >= 2 && p[1] === '.') p = p[0]!;
  if (p.length >= 3 && p[0] === '(' && p[2] === ')') p = p[1]!;
  return p.toLowerCase() === g.toLowerCase();
}

// ---- math: numbers within 1e-3 after stripping degree / ° / % / cm ----

export function mathScore(prediction: string, target: string, maxRelativeChange = 1e-3): boolean {
  const toFloat = (text: string) =>
    pythonFloat(
      text
        .replaceAll('degrees', '')
        .replaceAll('degree', '')
        .replaceAll('\\angle', '')
        .replaceAll('°', '')
        .replaceAll('%', '')
        .replaceAll('cm', ''),
    );
  const p = toFloat(prediction);
  const t = toFloat(target);
  if (p !== null && truthy(t)) return Math.abs(p - t) / Math.abs(t) <= maxRelativeChange;
  return prediction.toLowerCase() === target.toLowerCase();
}

// ---- latex ----

function usesLatex(x: string): boolean {
  return x.includes('\\') || /^\s*\d+\s*\/\s*\d+\s*$/.test(x);
}

function latexEqual(pred: string, gt: string): boolean {
  if (pred === gt) return true;
  const asExpression = (s: string) =>
    latexToText(s, { parenthesizeFractions: true })
      .replaceAll('√', 'sqrt')
      .replaceAll('π', 'pi')
      .replaceAll('·', '*')
      .replaceAll('×', '*');
  return expressionsEqual(asExpression(pred), asExpression(gt));
}

// ---- answers from MMPR responses (parse_answer) ----

export const PROMPT_VERSIONS = ['en', 'zh', 'en_v2', 'zh_v2', 'en_r1', 'zh_r1'] as const;
export type PromptVersion = (typeof PROMPT_VERSIONS)[number];

/** `extract_answer_from_box`: the last `\boxed{...}`'s contents; the whole text without one or when unbalanced. */
export function extractAnswerFromBox(text: string): string {
  const at = text.lastIndexOf('\\boxed{');
  if (at === -1) return text;
  const start = at + '\\boxed{'.length;
  let level = 1;
  for (let i = start; i < text.length; i++) {
    if (text[i] === '{') level += 1;
    else if (text[i] === '}' && --level === 0) return text.slice(start, i);
  }
  return text;
}

/** The answer `parse_answer` finds for a prompt version, or null where it raises (a format negative). */
export function extractMmprAnswer(response: string, version: PromptVersion): string | null {
  if (version === 'en' || version === 'zh') return finalAnswerLine(response);
  if (version === 'en_v2' || version === 'zh_v2') return response.length > 20 ? extractAnswerFromBox(response) : null;
  return r1Format(response) ? extractAnswerFromBox(response) : null;
}

const count = (s: string, sub: string) => s.split(sub).length - 1;

function finalAnswerLine(response: string): string | null {
  const trigger = ['Final answer:', 'Final Answer:'].find((t) => count(response, t) > 0) ?? '答案:';
  const at = response.lastIndexOf(trigger);
  if (count(response, trigger) > 2 || count(response, '\n') < 2 || at === -1) return null;
  const rationale = response.slice(0, at).trim();
  const answer = response.slice(at + trigger.length).trim();
  return rationale.length === 0 || answer.includes('\n') ? null : answer;
}

function r1Format(response: string): boolean {
  if (!/^<think>[\s\S]*?<\/think>\s*[\s\S]+$/.test(response)) return false;
  if (count(response, '<think>') !== 1 || count(response, '</think>') !== 1) return false;
  const [think, after] = response.split('</think>') as [string, string];
  const answer = after.trim();
  return extractAnswerFromBox(answer) !== answer && think.trim().length > 20;
}

export interface MmprRewardOptions {
  /** The modes to check with; absent: `modesForDataset` of the row's `data_source` (the source's file name). */
  modes?: readonly CheckMode[];
  /** How to find the answer in the completion (default en_v2: the last \boxed{}, else the whole text). */
  promptVersion?: PromptVersion;
}

/** One completion's MMPR correctness: 1 when its extracted answer checks against `groundTruth`, else 0. */
export function mmprScore(
  content: string,
  groundTruth: string,
  dataSource: string,
  options: MmprRewardOptions = {},
): number {
  const answer = extractMmprAnswer(content, options.promptVersion ?? 'en_v2');
  if (answer === null) return 0;
  return checkAnswer(answer, groundTruth, options.modes ?? modesForDataset(dataSource));
}

/** verl form (e.g. the fallback of a data_source dispatch for MMPR-Tiny's mixed answers). */
export function mmprComputeScore(options: MmprRewardOptions = {}): ComputeScore {
  return (source, solution, groundTruth) => mmprScore(solution, String(groundTruth ?? ''), source, options);
}

/** Batch form: the row's ground truth, modes from its `data_source` unless given. */
export function mmprCorrectness(options: MmprRewardOptions = {}): RewardFunction {
  return perRow((content, row) => {
    const source = typeof row.data_source === 'string' ? row.data_source : '';
    return mmprScore(content, String(groundTruthOf(row) ?? ''), source, options);
  });
}
