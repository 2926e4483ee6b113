// What the one training loop asks of a method (SFT, DPO / MPO, KTO): turn decoded records into a
// micro-batch, say what its loss divides by, and compute its loss. The loop owns everything else:
// accumulation, clipping, the optimizer, logging, evaluation and checkpoints.
import type { LossNormalisers, LossResult } from '../../losses/index.js';
import type { DataRecord } from '../../data/index.js';
import type { DecodedRecord } from '../../data/images.js';

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
  readonly name: 'sft' | 'dpo' | 'kto';
  /** Records → processor → model inputs. Images are already decoded (the loader's prefetch). */
  collate(records: ReadonlyArray<DecodedRecord<DataRecord>>): Promise<B>;
  /** Forward and loss of one micro-batch; `normalisers` are the accumulated batch's divisors. */
  loss(batch: B, normalisers: LossNormalisers, mode: 'train' | 'eval'): LossResult;
  /** Fills the precomputed-reference cache for these records (methods with a reference); how many it computed. */
  precompute?(batch: B): number;
  /** Training state that must survive a resume (a loss's running moments), by name. */
  readonly stateful: Record<string, { stateDict(): unknown; loadStateDict(state: never): void }>;
}

/** The divisors of a window of micro-batches: each count summed. */
export function sumCounts(batches: readonly MicroBatch[]): LossNormalisers {
  const total: Record<string, number> = {};
  for (const b of batches) {
    for (const [key, value] of Object.entries(b.counts)) total[key] = (total[key] ?? 0) + (value ?? 0);
  }
  return total as LossNormalisers;
}
