// What the one training loop asks of a method (SFT, DPO / MPO, KTO): turn decoded records into a
// micro-batch, say what its loss divides by, and compute its loss. The loop owns everything else:
// accumulation, clipping, the optimizer, logging, evaluation and checkpoints.
import type { LossNormalisers, LossResult, MetricTotals } from '../../losses/index.js';
import type { DataRecord } from '../../data/index.js';
import type { DecodedRecord } from '../../data/images.js';
import type { TrainingGroup } from '../distributed.js';

export interface MicroBatch {
  /** The records' ids, in row order (named in errors). */
  ids: string[];
  /** Loss-bearing tokens (completion tokens), counted into num_tokens. */
  tokens: number;
  /** This micro-batch's share of the accumulated batch's divisors (summed over the window). */
  counts: LossNormalisers;
  dispose(): void;
}

export interface TrainingMethod<B extends MicroBatch = MicroBatch> {
  readonly name: 'sft' | 'dpo' | 'kto' | 'grpo';
  /** Records → processor → model inputs. Images are already decoded (the loader's prefetch). */
  collate(records: ReadonlyArray<DecodedRecord<DataRecord>>): Promise<B>;
  /**
   * Forward and loss of one micro-batch; `normalisers` are the accumulated batch's divisors (over
   * every rank's window when distributed). A Promise when the loss needs the other ranks first.
   */
  loss(batch: B, normalisers: LossNormalisers, mode: 'train' | 'eval'): LossResult | Promise<LossResult>;
  /**
   * Called once train() has its process group: a method whose state couples the ranks (a running
   * reward mean) gathers through it, and one that cannot run distributed refuses here.
   */
  joinGroup?(group: TrainingGroup): void;
  /** Fills the precomputed-reference cache for these records (methods with a reference); how many it computed. */
  precompute?(batch: B): number;
  /** Training state that must survive a resume (a loss's running moments), by name. */
  readonly stateful: Record<string, { stateDict(): unknown; loadStateDict(state: never): void }>;
  /** Online methods (GRPO): the loader yields one generation's prompts at a time; see RolloutPlan. */
  readonly rollouts?: RolloutPlan<B>;
}

/**
 * How an online method feeds the loop: each batch the loader reads is one generation's prompts,
 * which the method samples completions for, scores and cuts into the micro-batches of several
 * optimizer steps (TRL's steps_per_generation x num_iterations).
 */
export interface RolloutPlan<B extends MicroBatch> {
  /** Prompts per generation: the loader's batch size. */
  readonly promptsPerGeneration: number;
  /** Optimizer steps each generation feeds. */
  readonly stepsPerGeneration: number;
  generate(records: ReadonlyArray<DecodedRecord<DataRecord>>, step: number): Promise<Generation<B>>;
  /** The same generation again from `Generation.state()` (a resume inside its steps): no sampling. */
  restore(records: ReadonlyArray<DecodedRecord<DataRecord>>, state: unknown): Promise<Generation<B>>;
  /** Validation metrics (sums and counts) of a batch of evaluation prompts. */
  evaluate(records: ReadonlyArray<DecodedRecord<DataRecord>>): Promise<MetricTotals>;
}

export interface Generation<B extends MicroBatch> {
  /** Per optimizer step, its window of micro-batches. */
  readonly windows: B[][];
  /** Metrics logged once per generation (rewards, completion lengths), TRL's names. */
  readonly metrics: Record<string, number>;
  /** Sampled completions for log_completions. */
  readonly table: ReadonlyArray<Record<string, unknown>>;
  /** Plain data that `restore` rebuilds the generation from. */
  state(): unknown;
  /** Frees the micro-batches' tensors once the generation's steps are done. */
  release(): void;
}

/** The divisors of a window of micro-batches: each count summed. */
export function sumCounts(batches: readonly MicroBatch[]): LossNormalisers {
  const total: Record<string, number> = {};
  for (const b of batches) {
    for (const [key, value] of Object.entries(b.counts)) total[key] = (total[key] ?? 0) + (value ?? 0);
  }
  return total as LossNormalisers;
}
