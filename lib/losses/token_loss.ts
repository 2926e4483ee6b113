// The one skeleton every token loss runs in: lay out the completion tokens by group, select their
// hidden states, run the LM head by the configured path, hand each chunk its stats, targets and
// rows to the loss's formula, and read the metrics once. Each loss file keeps only its formula.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { lossOverTokens, type HeadOptions, type LmHead, type TokenStats } from './fused_linear.js';
import { MetricSums, metricMeans, type MetricTotals } from './metrics.js';
import { disposeLayout, layoutTokens, type TokenChunk, type TokenLayout } from './token_layout.js';

export interface LossResult {
  /** Scalar loss; its backward reaches the hidden states and the head. */
  loss: Tensor;
  /** TRL's metric names and this batch's values. */
  metrics: Record<string, number>;
  /** The same metrics as sums and counts, to add across accumulation steps and ranks (metricMeans). */
  totals: MetricTotals;
}

export interface ComputeOptions {
  /**
   * 'train' (default) or 'eval': an evaluation batch leaves the loss's running state (the reward
   * shift of legacy bco_pair and BCO) untouched and uses it as it stands.
   */
  mode?: 'train' | 'eval';
  /**
   * Divisors of the whole accumulated batch when this batch is one of its micro-batches: the
   * micro-batch losses then sum to the accumulated batch's loss (TRL's num_items_in_batch). Absent:
   * this batch's own counts.
   */
  normalisers?: LossNormalisers;
}

/** Counts a loss divides by; each loss reads the ones its formula uses. */
export interface LossNormalisers {
  /** Preference pairs (DPO-family means). */
  pairs?: number;
  /** Chosen completion tokens (the sft / rpo NLL). */
  chosenTokens?: number;
  /** Rows (KTO / BCO means). */
  rows?: number;
  /** Completion tokens (SFT's token mean, DAPO's num_items_in_batch). */
  tokens?: number;
  /** Micro-batches of the window (TRL divides BNPO's per-micro-batch token mean by the accumulation steps). */
  microBatches?: number;
}

/** The divisor `key` of `options`, else `own`; a given divisor must be a positive integer. */
export function normaliserOf(options: ComputeOptions | undefined, key: keyof LossNormalisers, own: number): number {
  const given = options?.normalisers?.[key];
  if (given === undefined) return own;
  if (!Number.isInteger(given) || given < 1) {
    throw new RangeError(`Expected a positive integer for normalisers.${key} but received ${String(given)}`);
  }
  return given;
}

export function modeOf(options: ComputeOptions | undefined): 'train' | 'eval' {
  const mode = options?.mode ?? 'train';
  if (mode !== 'train' && mode !== 'eval') {
    throw new TypeError(`Expected 'train' or 'eval' for options.mode but received ${String(mode)}`);
  }
  return mode;
}

/** The engine fields every loss config shares. */
export interface EngineConfig extends HeadOptions {
  implementation: 'fused' | 'eager';
  chunkSize: number;
  ignoreIndex: number;
}

export interface TokenLossInput {
  hidden: Tensor; // [R, T, H]
  targets: Tensor; // [R, T] int64, ignoreIndex outside the completions
  /** Rows whose loss terms depend on each other (a pair; a row alone); chunks hold whole groups. */
  groups: number[][];
  head: LmHead;
  config: EngineConfig;
  /** The loss couples the whole batch (a sort, a batch mean): one chunk, the two-pass kernel. */
  coupled: boolean;
}

/** What a loss's formula sees of one chunk. */
export interface ChunkInput {
  stats: TokenStats; // per token of the chunk
  chunk: TokenChunk; // rows in slot order, each token's slot, rowIds
  targets: Tensor; // [n] the tokens' targets
  metrics: MetricSums; // detached sums for the metrics
}

export type ChunkLossFn = (input: ChunkInput) => Tensor;

/** Checks hidden [R, T, H] against targets [R, T] and returns [R, T, H]. */
export function checkTokenBatch(hidden: Tensor, targets: Tensor): [number, number, number] {
  if (hidden.ndim !== 3) throw new RangeError(`hidden must be [rows, tokens, hidden], got [${hidden.shape}]`);
  const [rows, length, width] = hidden.shape as [number, number, number];
  if (targets.ndim !== 2 || targets.shape[0] !== rows || targets.shape[1] !== length) {
    const expected = `[${rows}, ${length}] to match hidden [${hidden.shape}]`;
    throw new RangeError(`targets must be ${expected}, got [${targets.shape}]`);
  }
  return [rows, length, width];
}

/**
 * The batch's `targets`, with a pointer to the rename for a batch that still says `labels`
 * (Hugging Face's labels are unshifted: losses.targetsFromLabels shifts them).
 */
export function targetsOf(batch: { targets?: Tensor }, what: string): Tensor {
  if (batch.targets) return batch.targets;
  if ('labels' in batch) {
    throw new TypeError(
      `${what}: batch.labels is now batch.targets (the token each position predicts); ` +
        'losses.targetsFromLabels(labels) shifts Hugging Face-style labels',
    );
  }
  throw new TypeError(`${what}: batch.targets is required ([rows, tokens] int64)`);
}

/** Runs `fn` with the token layout of `targets` inside a tidy scope, and frees the layout after. */
export function withTokenLayout<T>(
  targets: Tensor,
  groups: number[][],
  chunkTokens: number,
  ignoreIndex: number,
  fn: (layout: TokenLayout) => T,
): T {
  const layout = layoutTokens(targets, groups, chunkTokens, ignoreIndex);
  try {
    return torch.tidy(() => fn(layout));
  } finally {
    disposeLayout(layout);
  }
}

/** The hidden states [N, H] of the layout's tokens, in layout order. */
export const selectTokens = (hidden: Tensor, layout: TokenLayout): Tensor =>
  hidden.reshape(-1, hidden.shape[2]!).indexSelect(0, layout.index);

/**
 * A loss over the completion tokens: `prepare` sees the layout (row token counts, token order)
 * and returns the formula run on each chunk; the chunk losses sum to the loss. The metrics added
 * come back as means (TRL's names, with `loss`) and as sums and counts, read in one host sync.
 */
export function tokenLoss(
  input: TokenLossInput,
  prepare: (layout: TokenLayout, metrics: MetricSums) => ChunkLossFn,
): LossResult {
  checkTokenBatch(input.hidden, input.targets);
  const { config } = input;
  const metrics = new MetricSums();
  try {
    return withTokenLayout(input.targets, input.groups, config.chunkSize, config.ignoreIndex, (layout) => {
      const lossOfChunk = prepare(layout, metrics);
      const x = selectTokens(input.hidden, layout);
      const loss = lossOverTokens(x, input.head, layout, { ...config, coupled: input.coupled }, (stats, chunk) =>
        lossOfChunk({ stats, chunk, targets: layout.targets.narrow(0, chunk.start, chunk.end - chunk.start), metrics }),
      );
      metrics.add('loss', loss, 1);
      const totals = metrics.read();
      return { loss, metrics: metricMeans(totals), totals };
    });
  } finally {
    metrics.dispose();
  }
}
