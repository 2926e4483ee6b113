// What a reward function sees and returns (TRL's batch signature, `f(prompts, completions, ...,
// **columns) -> list[float | None]`), as one object so that new fields do not break old functions.
// Rewards are pure functions of text and dataset columns: no tensors, each testable alone.
import type { ChatMessage } from '../processing/messages.js';

/** A prompt or completion: raw text (TRL's standard format) or messages (its conversational format). */
export type RewardText = string | readonly ChatMessage[];

/** One row's dataset columns other than the prompt: `solution`, verl's `data_source` / `ground_truth` / `extra_info`. */
export type RewardColumns = Readonly<Record<string, unknown>>;

export interface RewardBatch {
  /** One entry per completion (a prompt with G completions appears G times, as in TRL). */
  readonly prompts: readonly RewardText[];
  readonly completions: readonly RewardText[];
  /** Per-row dataset columns, aligned with `completions`. */
  readonly columns: readonly RewardColumns[];
  /** Sampled token ids per completion, when the caller has them (TRL's `completion_ids`). */
  readonly completionIds?: readonly (readonly number[])[];
  /** The trainer's step counters, for schedules (TRL's `trainer_state`). */
  readonly trainerState?: Readonly<Record<string, unknown>>;
  /** Logs a per-row column next to the completions (TRL's `log_extra`, verl's `reward_extra_info`). */
  readonly logExtra?: (key: string, values: readonly unknown[]) => void;
  /** Logs one scalar for this batch (TRL's `log_metric`). */
  readonly logMetric?: (name: string, value: number) => void;
}

/** One value per completion; null = not applicable to this row (TRL's None, becomes NaN). */
export type RewardValues = readonly (number | null)[];

export type RewardFunction = (batch: RewardBatch) => RewardValues | Promise<RewardValues>;

/** A reward function with the name its metrics and failure reports use (`rewards/<name>/mean`). */
export interface NamedReward {
  readonly name: string;
  readonly fn: RewardFunction;
  /**
   * Decode this function's completions with special tokens kept (InternVL's `<box>`, `<ref>`).
   * Default false: verl's reward manager decodes with `skip_special_tokens=True`.
   */
  readonly keepSpecialTokens?: boolean;
}

/**
 * The text a reward scores: the string itself, or the content of the last message (TRL's
 * conversational completions are `[{role: 'assistant', content}]`; ViRFT reads `completion[0].content`).
 * Text parts of a list content are joined.
 */
export function textOf(value: RewardText): string {
  if (typeof value === 'string') return value;
  const last = value[value.length - 1];
  if (last === undefined) return '';
  if (typeof last.content === 'string') return last.content;
  return last.content.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

/** A column of the batch as a list (TRL passes columns this way); undefined where a row lacks it. */
export function columnOf(batch: RewardBatch, key: string): unknown[] {
  return batch.columns.map((row) => row[key]);
}

/**
 * A row's ground truth: the `ground_truth` column, else verl's nested `reward_model.ground_truth`,
 * else `solution` (TRL / ViRFT). Undefined when the row has none.
 */
export function groundTruthOf(row: RewardColumns): unknown {
  if (row.ground_truth !== undefined) return row.ground_truth;
  const model = row.reward_model;
  if (model !== null && typeof model === 'object' && 'ground_truth' in model) {
    return (model as Record<string, unknown>).ground_truth;
  }
  return row.solution;
}

/** Builds a batch reward from a per-row scorer of (completion text, row columns). */
export function perRow(
  score: (completion: string, row: RewardColumns, index: number) => number | null,
): RewardFunction {
  return (batch) => batch.completions.map((completion, i) => score(textOf(completion), batch.columns[i] ?? {}, i));
}
