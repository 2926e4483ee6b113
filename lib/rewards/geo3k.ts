// verl's geo3k reward (verl/utils/reward_score/geo3k.py; trainers_anchor.md 3.3), the scorer the
// InternVL3.5 online stage validates with: 0.9 * accuracy + 0.1 * format, where accuracy is
// mathruler's grade_answer on the last \boxed{} and format is a think block followed by a box.
import { extractBoxedContent, gradeAnswer } from './math_grader.js';
import { groundTruthOf, perRow, type RewardFunction } from './types.js';
import type { ComputeScore } from './verl.js';

/** `re.fullmatch(r"<think>.*</think>.*\\boxed\{.*\}.*", s, re.DOTALL)`. */
export const THINK_BOXED_FORMAT = /^<think>[\s\S]*<\/think>[\s\S]*\\boxed\{[\s\S]*\}[\s\S]*$/;

export interface Geo3kOptions {
  /** Weight of the format term (verl's `format_score`, 0.1); accuracy gets 1 - formatScore. */
  formatScore?: number;
  /** Grade the last \boxed{} (default) or the whole response (verl's `use_boxed=False`). */
  useBoxed?: boolean;
}

export function geo3kScore(response: string, groundTruth: string, options: Geo3kOptions = {}): number {
  const formatScore = options.formatScore ?? 0.1;
  const answer = (options.useBoxed ?? true) ? extractBoxedContent(response) : response;
  const accuracy = gradeAnswer(answer, groundTruth) ? 1 : 0;
  const format = THINK_BOXED_FORMAT.test(response) ? 1 : 0;
  return (1 - formatScore) * accuracy + formatScore * format;
}

/** verl form, for `dispatchOnDataSource({ scorers: { 'hiyouga/geometry3k': geo3kComputeScore() } })`. */
export function geo3kComputeScore(options: Geo3kOptions = {}): ComputeScore {
  return (_source, solution, groundTruth) => geo3kScore(solution, String(groundTruth ?? ''), options);
}

/** Batch form, reading the row's ground truth (`ground_truth`, `reward_model.ground_truth` or `solution`). */
export function geo3k(options: Geo3kOptions = {}): RewardFunction {
  return perRow((content, row) => geo3kScore(content, String(groundTruthOf(row) ?? ''), options));
}
