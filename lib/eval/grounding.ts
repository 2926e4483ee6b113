// Grounding metrics: InternVL's refcoco evaluation (eval/refcoco/evaluate_grounding.py: its prompt,
// its box regex, a hit when IoU >= 0.5) and ViRFT's detection reward as a score, both the rewards'
// rules (lib/rewards/grounding.ts, virft.ts) read from a record's columns.
import { refcocoScore, THINK_ANSWER_FORMAT, virftDetectionScores, type Box } from '../rewards/index.js';
import { boxOf } from '../rewards/boxes.js';

/** InternVL's refcoco question, `{}` replaced by the referring expression (its `prompt.format(sent)`). */
export const REFCOCO_PROMPT =
  'Please provide the bounding box coordinate of the region this sentence describes: <ref>{}</ref>';

/** The refcoco question InternVL asks about `sentence`. */
export const refcocoPrompt = (sentence: string): string => REFCOCO_PROMPT.replace('{}', sentence);

/** The reference box of a refcoco-style record and the size it is measured in. */
export interface GroundingTruth {
  box: Box;
  /** [width, height] the prediction's 0-1000 (or 0-1) values scale to: the image's pixels, or 1000 x 1000. */
  size: readonly [number, number];
}

/**
 * InternVL's refcoco files: `bbox` in pixels with the image's `width` and `height`; else a 4-number
 * ground truth (`ground_truth` / `solution` / `answer`) on the 0-1000 grid the answer uses.
 */
export function groundingTruthOf(columns: Readonly<Record<string, unknown>>, where: string): GroundingTruth {
  const pixels = boxOf(columns.bbox);
  if (pixels !== null) {
    const { width, height } = columns;
    if (typeof width !== 'number' || typeof height !== 'number' || !(width > 0) || !(height > 0)) {
      throw new TypeError(`${where}: a pixel bbox needs the image's width and height columns (positive numbers)`);
    }
    return { box: pixels, size: [width, height] };
  }
  const value = columns.ground_truth ?? columns.solution ?? columns.answer;
  const box = boxOf(typeof value === 'string' ? parseBoxText(value) : value);
  if (box === null) {
    throw new TypeError(
      `${where}: no reference box: give bbox + width + height (pixels) or a 4-number ground_truth / solution / answer (0-1000), received ${JSON.stringify(value)}`,
    );
  }
  return { box, size: [1000, 1000] };
}

// "[x1, y1, x2, y2]" written as text (a jsonl answer column).
function parseBoxText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** 1 when InternVL's refcoco rule finds the predicted box with IoU >= `threshold` (0.5) to the reference, else 0. */
export function refcocoHit(prediction: string, truth: GroundingTruth, threshold = 0.5): number {
  return refcocoScore(prediction, truth.box, truth.size, threshold);
}

export interface DetectionScore {
  /** ViRFT's detection reward: iou + confidence + format, in [0, 3]. */
  score: number;
  iou: number;
  confidence: number;
  format: number;
}

/**
 * ViRFT's detection reward of a completion against its `<answer>[{'Position': ..., 'Confidence': ...}]</answer>`
 * solution, with its three parts.
 */
export function virftDetection(prediction: string, solution: string): DetectionScore {
  const { iou, confidence } = virftDetectionScores(prediction, solution);
  const format = THINK_ANSWER_FORMAT.test(prediction) ? 1 : 0;
  return { score: iou + confidence + format, iou, confidence, format };
}
