// ViRFT (Visual-RFT, `src/virft/src/open_r1/`) rewards, step by step as grpo.py, grpo_classification.py
// and grpo_lisa.py compute them (trainers_anchor.md 3.1, 3.2, 1.10). Python's `.` without DOTALL is
// written `[^\n]`. Anything the source would raise on scores 0, as its `except Exception` does.
// Fixed on purpose: the classification reward's empty answer (1.0 in the source) scores 0, and LISA
// takes the first box of each side (the source pairs the first box's corner with the second box's).
import { boxOf, lisaGiouPlusOne, virftIou, type Box } from './boxes.js';
import { groundTruthOf, perRow, type RewardFunction } from './types.js';

/**
 * ViRFT first tries `math_verify.verify(parse(content), parse(solution))` and, when it holds, gives
 * 1.0. math_verify is a Python library with its own extraction; pass a checker to reproduce that step.
 */
export interface VirftOptions {
  mathShortcut?: (content: string, solution: string) => boolean;
}

const ANSWER_LINE = /<answer>([^\n]*?)<\/answer>/;
const ANSWER_DOTALL = /<answer>([\s\S]*?)<\/answer>/;

/** `re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", s, re.DOTALL)`. */
export const THINK_ANSWER_FORMAT = /^<think>[\s\S]*?<\/think>\s*<answer>[\s\S]*?<\/answer>$/;

/** ViRFT's `format` reward: 1 when the completion is exactly think-then-answer. */
export const virftFormat: RewardFunction = perRow((content) => (THINK_ANSWER_FORMAT.test(content) ? 1 : 0));

export interface DetectionPrediction {
  position: Box;
  confidence: number;
}

/** ViRFT `extract_bbox`: the list between the first `<answer>` and `</answer>` (or the end), JSON after `'`→`"`. */
export function extractVirftBoxes(response: string): unknown {
  const start = response.indexOf('<answer>');
  if (start === -1) return null;
  const from = start + '<answer>'.length;
  const end = response.indexOf('</answer>');
  let content = response.slice(from, end === -1 ? response.length : end);
  // A truncated list: keep the entries up to the last complete one.
  if (!content.endsWith(']')) content = `${rsplitFirst(content, '},')}}]`;
  try {
    return JSON.parse(content.replaceAll("'", '"'));
  } catch {
    return null;
  }
}

// Python's `s.rsplit(sep, 1)[0]`.
function rsplitFirst(s: string, sep: string): string {
  const at = s.lastIndexOf(sep);
  return at === -1 ? s : s.slice(0, at);
}

// Entries as the source reads them: each a dict with a 4-number Position and a numeric Confidence.
function predictionsOf(value: unknown): DetectionPrediction[] | null {
  if (!Array.isArray(value) || value.length === 0) return null;
  const out: DetectionPrediction[] = [];
  for (const entry of value) {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return null;
    const position = boxOf((entry as Record<string, unknown>).Position);
    const confidence = numeric((entry as Record<string, unknown>).Confidence);
    if (position === null || confidence === null) return null;
    out.push({ position, confidence });
  }
  return out;
}

// Python arithmetic accepts int, float and bool.
function numeric(value: unknown): number | null {
  if (typeof value === 'boolean') return Number(value);
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function groundTruthBoxes(value: unknown): Box[] | null {
  if (!Array.isArray(value)) return null;
  const boxes: Box[] = [];
  for (const entry of value) {
    const position =
      entry !== null && typeof entry === 'object' ? boxOf((entry as Record<string, unknown>).Position) : null;
    if (position === null) return null;
    boxes.push(position);
  }
  return boxes;
}

/**
 * The (IoU, confidence) pairs of ViRFT's `sort_and_calculate_iou` after `remove_duplicates`:
 * predictions by Confidence, highest first (stable); each takes the unmatched ground truth of
 * highest IoU (first on ties) and keeps it only when that IoU is > 0.5, else pairs (0, conf).
 */
export function matchDetections(
  groundTruth: readonly Box[],
  predictions: readonly DetectionPrediction[],
): [number, number][] {
  const seen = new Set<string>();
  const unique = predictions.filter((p) => {
    const key = p.position.join(',');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const sorted = [...unique].sort((a, b) => b.confidence - a.confidence);
  const matched = new Set<number>();
  return sorted.map((pred) => {
    let best = 0;
    let bestIndex = -1;
    groundTruth.forEach((gt, i) => {
      if (matched.has(i)) return;
      const iou = virftIou(gt, pred.position);
      if (iou > best) {
        best = iou;
        bestIndex = i;
      }
    });
    if (best > 0.5) {
      matched.add(bestIndex);
      return [best, pred.confidence];
    }
    return [0, pred.confidence];
  });
}

/** Both detection accuracies of one completion: `accuracy_iou` and `accuracy_confidence`, each in [0, 1]. */
export function virftDetectionScores(content: string, solution: string, options: VirftOptions = {}) {
  if (options.mathShortcut?.(content, solution)) return { iou: 1, confidence: 1 };
  const match = ANSWER_LINE.exec(content);
  const answer = `<answer>${match ? match[1]!.trim() : content.trim()}</answer>`
    .replaceAll('[[', '[')
    .replaceAll(']]', ']')
    .replaceAll('\n', '');
  const predictions = predictionsOf(extractVirftBoxes(answer));
  const groundTruth = groundTruthBoxes(extractVirftBoxes(solution.trim()));
  if (predictions === null || groundTruth === null) return { iou: 0, confidence: 0 };
  let results: [number, number][];
  try {
    results = matchDetections(groundTruth, predictions);
  } catch {
    return { iou: 0, confidence: 0 }; // a zero union
  }
  const iouSum = results.reduce((s, [iou]) => s + iou, 0);
  const iou = Math.min(1, iouSum / Math.max(groundTruth.length, results.length));
  const confidenceSum = results.reduce((s, [iou, conf]) => s + (iou === 0 ? 1 - conf : conf), 0);
  const confidence = Math.min(1, Math.max(0, confidenceSum / results.length));
  return { iou, confidence };
}

const solutionText = (row: Readonly<Record<string, unknown>>): string => {
  const value = groundTruthOf(row);
  return typeof value === 'string' ? value : JSON.stringify(value ?? '');
};

/** ViRFT `accuracy_iou` (reads the `solution` column). */
export function virftDetectionIou(options: VirftOptions = {}): RewardFunction {
  return perRow((content, row) => virftDetectionScores(content, solutionText(row), options).iou);
}

/** ViRFT `accuracy_confidence` (reads the `solution` column). */
export function virftDetectionConfidence(options: VirftOptions = {}): RewardFunction {
  return perRow((content, row) => virftDetectionScores(content, solutionText(row), options).confidence);
}

/**
 * ViRFT classification accuracy: the `<answer>` contents of both sides (else the whole text), with
 * spaces and `_` removed and lowercased; 1 when either contains the other and neither is empty.
 */
export function virftClassificationScore(content: string, solution: string, options: VirftOptions = {}): number {
  if (options.mathShortcut?.(content, solution)) return 1;
  const squash = (s: string) => s.replaceAll(' ', '').replaceAll('_', '').toLowerCase();
  const truth = squash(answerOr(solution, ANSWER_LINE));
  const student = squash(answerOr(content, ANSWER_LINE));
  if (truth === '' || student === '') return 0; // the source's `"" in s` is True: an empty answer scored 1
  return truth.includes(student) || student.includes(truth) ? 1 : 0;
}

export function virftClassification(options: VirftOptions = {}): RewardFunction {
  return perRow((content, row) => virftClassificationScore(content, solutionText(row), options));
}

const LISA_BOX = /\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)/;

/**
 * ViRFT LISA accuracy: "(x1,y1),(x2,y2)" integer corners / 1000 on both sides, GIoU + 1 in [0, 2];
 * 2.0 when the answers are equal strings; 0 when either side has no box. The solution's answer
 * regex has no DOTALL, the completion's has.
 */
export function lisaGroundingScore(content: string, solution: string, options: VirftOptions = {}): number {
  if (options.mathShortcut?.(content, solution)) return 1;
  const truth = answerOr(solution, ANSWER_LINE);
  const student = answerOr(content, ANSWER_DOTALL);
  const gt = lisaBox(truth);
  const pred = lisaBox(student);
  const reward = gt !== null && pred !== null ? lisaGiouPlusOne(gt, pred) : 0;
  return student === truth ? 2 : reward;
}

export function lisaGrounding(options: VirftOptions = {}): RewardFunction {
  return perRow((content, row) => lisaGroundingScore(content, solutionText(row), options));
}

function lisaBox(text: string): Box | null {
  const m = LISA_BOX.exec(text);
  if (m === null) return null;
  const [x1, y1, x2, y2] = m.slice(1, 5).map((v) => Number.parseInt(v, 10) / 1000);
  return [x1!, y1!, x2!, y2!];
}

function answerOr(text: string, pattern: RegExp): string {
  const m = pattern.exec(text);
  return m ? m[1]!.trim() : text.trim();
}
