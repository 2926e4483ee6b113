// Box-grounding rewards on 0-1000 coordinates (trainers_anchor.md 3.4, rl_data.md 3):
// - the InternVL3.5 RL fork's reward (antoinegg1/verl-internvl `verl/utils/reward_score/grounding.py`,
//   data_source "grounding"): both boxes scaled to pixels with extra_info width / height, then mix,
//   sigmoid, penalty, normalized_exp or eval of their IoU;
// - InternVL's refcoco check (`eval/refcoco/evaluate_grounding.py`): hit (1) iff IoU >= 0.5.
import { clampedIou, torchvisionIou, type Box } from './boxes.js';
import { pythonFloat, pythonRound } from './python.js';
import { groundTruthOf, perRow, type RewardColumns, type RewardFunction } from './types.js';
import { fromComputeScore, type ComputeScore } from './verl.js';

export const GROUNDING_REWARD_TYPES = ['mix', 'sigmoid', 'penalty', 'normalized_exp', 'eval'] as const;
export type GroundingRewardType = (typeof GROUNDING_REWARD_TYPES)[number];

/** The fork's required `reward_kwargs` (its recipe: mix, alpha 0.5, threshold 0.5). */
export interface GroundingOptions {
  rewardType: GroundingRewardType;
  /** Weight of the pass term in mix / penalty. */
  alpha: number;
  /** IoU at which a box passes (mix, penalty, eval) or the sigmoid's centre. */
  threshold: number;
}

const NUMBER = /[-+]?\d*\.?\d+/g;
const ANSWER = /<answer>([\s\S]*?)<\/answer>/i;

/**
 * The fork's `extract_box_from_text`: inside `<answer>...</answer>` when present (else, or when that
 * has no box, the whole text), the first 4 numbers of the last `[...]` without nested brackets, or
 * without brackets the last 4 numbers; reordered so x1 <= x2, y1 <= y2. Null with fewer than 4
 * numbers or a non-finite one.
 */
export function extractGroundingBox(text: string): Box | null {
  const answer = ANSWER.exec(text);
  if (answer) {
    const inner = boxFromText(answer[1]!);
    if (inner !== null) return inner;
  }
  return boxFromText(text);
}

function boxFromText(text: string): Box | null {
  const brackets = [...text.matchAll(/\[([^[\]]+)\]/g)];
  let numbers: string[];
  if (brackets.length > 0) {
    numbers = brackets[brackets.length - 1]![1]!.match(NUMBER) ?? [];
  } else {
    numbers = text.match(NUMBER) ?? [];
    if (numbers.length < 4) return null;
    numbers = numbers.slice(-4);
  }
  if (numbers.length < 4) return null;
  const values = numbers.slice(0, 4).map(Number);
  if (!values.every(Number.isFinite)) return null;
  let [x1, y1, x2, y2] = values as [number, number, number, number];
  if (x1 > x2) [x1, x2] = [x2, x1];
  if (y1 > y2) [y1, y2] = [y2, y1];
  return [x1, y1, x2, y2];
}

/** The fork's `scale_bbox`: round(v * size / 1000) (halves to even), clamped to the image, a flat box widened to 1 px. */
export function scaleBox(box: Box, width: number, height: number): Box {
  const clamp = (v: number, size: number) => Math.max(0, Math.min(v, size - 1));
  const x1 = clamp(pythonRound((box[0] * width) / 1000), width);
  let x2 = clamp(pythonRound((box[2] * width) / 1000), width);
  const y1 = clamp(pythonRound((box[1] * height) / 1000), height);
  let y2 = clamp(pythonRound((box[3] * height) / 1000), height);
  if (x1 === x2 && width > 1) x2 = Math.min(x1 + 1, width - 1);
  if (y1 === y2 && height > 1) y2 = Math.min(y1 + 1, height - 1);
  return [x1, y1, x2, y2];
}

/** Validates the fork's knobs once, where the recipe is read (it raises ValueError at the first call). */
export function checkGroundingOptions(options: GroundingOptions): GroundingOptions {
  if (!GROUNDING_REWARD_TYPES.includes(options.rewardType)) {
    throw new TypeError(
      `Expected one of ${GROUNDING_REWARD_TYPES.join(', ')} for rewardType but received ${String(options.rewardType)}`,
    );
  }
  if (!(options.alpha >= 0 && options.alpha <= 1)) {
    throw new TypeError(`Expected a number in [0, 1] for alpha but received ${options.alpha}`);
  }
  if (!Number.isFinite(options.threshold)) {
    throw new TypeError(`Expected a finite number for threshold but received ${options.threshold}`);
  }
  return options;
}

/** The reward of one IoU (the fork's reward_type branches). `text` is the completion, for `penalty`. */
export function groundingRewardOf(iou: number, options: GroundingOptions, text: string): number {
  const { alpha, threshold } = options;
  const mix = () => alpha * (iou >= threshold ? 1 : 0) + (1 - alpha) * iou;
  switch (options.rewardType) {
    case 'mix':
      return mix();
    case 'sigmoid':
      return 1 / (1 + Math.exp(-8 * (iou - threshold)));
    case 'penalty':
      return mix() - lengthAndRepetitionPenalty(text);
    case 'normalized_exp': {
      const k = Math.log(16);
      return (1 - Math.exp(-k * iou)) / (1 - Math.exp(-k));
    }
    case 'eval':
      return iou >= threshold ? 1 : 0;
  }
}

// 0.01 per started 50 whitespace tokens beyond 512, plus 0.3 when a token repeats 7 times in a row.
function lengthAndRepetitionPenalty(text: string): number {
  const tokens = text.split(/\s+/).filter(Boolean);
  const over = tokens.length - 512;
  const lengthPenalty = over > 0 ? Math.ceil(over / 50) * 0.01 : 0;
  let run = 1;
  let repeated = false;
  for (let i = 1; i < tokens.length && !repeated; i++) {
    run = tokens[i] === tokens[i - 1] ? run + 1 : 1;
    repeated = run >= 7;
  }
  return lengthPenalty + (repeated ? 0.3 : 0);
}

/** A 4-number ground truth (a list or typed array), or null as the fork's length check gives 0. */
function groundTruthBox(value: unknown): Box | null {
  const list = ArrayBuffer.isView(value) ? Array.from(value as unknown as ArrayLike<number>) : value;
  if (!Array.isArray(list) || list.length !== 4) return null;
  return list.every((v) => typeof v === 'number' && Number.isFinite(v)) ? (list as unknown as Box) : null;
}

function imageSize(extraInfo: Readonly<Record<string, unknown>> | undefined, where: string): [number, number] {
  const width = extraInfo?.width;
  const height = extraInfo?.height;
  if (typeof width !== 'number' || typeof height !== 'number' || !(width > 0) || !(height > 0)) {
    throw new TypeError(
      `${where}: extra_info.width and extra_info.height (image size in pixels) are required, received ${JSON.stringify({ width, height })}`,
    );
  }
  return [width, height];
}

/**
 * One completion's grounding reward: 0 without a box or a 4-number ground truth; a missing image
 * size throws (the fork raises ValueError), which the combiner reports and scores 0. `split: 'test'`
 * in extra_info switches to `eval`, as in the fork.
 */
export function groundingScore(
  completion: string,
  groundTruth: unknown,
  extraInfo: Readonly<Record<string, unknown>> | undefined,
  options: GroundingOptions,
): number {
  const pred = extractGroundingBox(completion);
  const gt = groundTruthBox(groundTruth);
  if (pred === null || gt === null) return 0;
  const [width, height] = imageSize(extraInfo, 'grounding reward');
  const iou = clampedIou(scaleBox(pred, width, height), scaleBox(gt, width, height));
  const rewardType = extraInfo?.split === 'test' ? 'eval' : options.rewardType;
  return groundingRewardOf(iou, { ...options, rewardType }, completion);
}

/** verl form for `dispatchOnDataSource({ scorers: { grounding: groundingComputeScore(...) } })`. */
export function groundingComputeScore(options: GroundingOptions): ComputeScore {
  const checked = checkGroundingOptions(options);
  return (_source, solution, groundTruth, extraInfo) => groundingScore(solution, groundTruth, extraInfo, checked);
}

/** Batch form: ground truth from `reward_model.ground_truth` (or `ground_truth`), image size from `extra_info`. */
export function internvlGrounding(options: GroundingOptions): RewardFunction {
  return fromComputeScore(groundingComputeScore(options));
}

// ---- refcoco ----

const REFCOCO_BOX = /\[*\[([^\n]*?),([^\n]*?),([^\n]*?),([^\n]*?)\]\]*/;

export interface RefcocoOptions {
  /**
   * 'thousandths' (default): the ground truth is 0-1000 like the answer, no image size needed.
   * 'pixels': the ground truth is in pixels, as InternVL's refcoco files hold it, with the image's
   * width / height in `extra_info` (or the row's own `width` / `height`).
   */
  groundTruthUnits?: 'thousandths' | 'pixels';
  /** IoU for a hit (InternVL: 0.5). */
  threshold?: number;
}

/**
 * InternVL's refcoco hit: the first `[[x1, y1, x2, y2]]` (or single-bracket) match of the answer,
 * each value a Python float, else (0, 0, 0, 0); divided by 1000 when the values sum to >= 4, scaled
 * by width / height, and compared with torchvision's IoU. 1 when IoU >= threshold.
 */
export function refcocoScore(
  answer: string,
  groundTruth: Box,
  size: readonly [number, number],
  threshold = 0.5,
): number {
  const m = REFCOCO_BOX.exec(answer);
  const parsed = m === null ? null : m.slice(1, 5).map(pythonFloat);
  let pred = parsed === null || parsed.some((v) => v === null) ? [0, 0, 0, 0] : (parsed as number[]);
  if (pred.reduce((a, b) => a + b, 0) >= 4) pred = pred.map((v) => v / 1000);
  const [width, height] = size;
  const box: Box = [pred[0]! * width, pred[1]! * height, pred[2]! * width, pred[3]! * height];
  return torchvisionIou(box, groundTruth) >= threshold ? 1 : 0;
}

export function refcocoGrounding(options: RefcocoOptions = {}): RewardFunction {
  const units = options.groundTruthUnits ?? 'thousandths';
  return perRow((content, row) => {
    const gt = groundTruthBox(groundTruthOf(row));
    if (gt === null) {
      throw new TypeError(
        `refcoco reward: the ground truth must be 4 numbers, received ${JSON.stringify(groundTruthOf(row))}`,
      );
    }
    if (units === 'thousandths') return refcocoScore(content, gt, [1000, 1000], options.threshold);
    return refcocoScore(content, gt, refcocoSize(row), options.threshold);
  });
}

function refcocoSize(row: RewardColumns): [number, number] {
  const info = row.extra_info;
  const source = info !== null && typeof info === 'object' ? (info as Record<string, unknown>) : row;
  return imageSize({ width: source.width ?? row.width, height: source.height ?? row.height }, 'refcoco reward');
}
