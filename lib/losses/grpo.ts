// GRPO-family token losses (TRL GRPOTrainer, DAPO, Dr. GRPO, GSPO). Per completion token t of
// sequence i, with w the importance ratio pi_theta / pi_old and A_i the sequence's advantage:
//   l = -min(w A, clip(w, 1 - epsilon, 1 + epsilonHigh) A)   (+ beta k3, k3 = e^(ref - lp) - (ref - lp) - 1)
// w is per token, or per sequence for GSPO: w_i = exp(mean_t(lp - old)). Aggregation by lossType:
//   grpo mean_i(sum_t l / n_i); bnpo sum l / sum n; dr_grpo sum l / (S * maxCompletionLength);
//   dapo sum l / (tokens of the whole generation batch, numItemsInBatch when given).
// As one micro-batch of an accumulated window (ComputeOptions.normalisers), the means are the
// window's, as TRL's with equal micro-batches: grpo and dr_grpo divide by the window's sequences
// (normalisers.rows), dapo by its tokens, and bnpo's own token mean by the micro-batch count.
// Every sequence's loss depends only on its own tokens, so chunks of whole sequences are exact.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { GrpoLossConfigSchema, parseConfig, type GrpoLossConfig, type GrpoLossConfigInput } from './config.js';
import type { LmHead } from './fused_linear.js';
import { sumBySlot, type TokenChunk, type TokenLayout } from './token_layout.js';
import {
  checkTokenBatch,
  modeOf,
  normaliserOf,
  targetsOf,
  tokenLoss,
  type ChunkInput,
  type ComputeOptions,
  type LossResult,
} from './token_loss.js';

export interface GrpoBatch {
  hidden: Tensor; // [S, T, H]
  targets: Tensor; // [S, T] int64 completion tokens, ignoreIndex elsewhere
  advantages: Tensor; // [S]
  /** [S, T] per-token log-probs of the sampling policy; omitted: the current policy, detached (on-policy). */
  oldLogps?: Tensor;
  /** [S, T] per-token reference log-probs; required when beta > 0. */
  refLogps?: Tensor;
  /** dapo's normaliser across ranks / accumulation steps; defaults to this batch's token count. */
  numItemsInBatch?: number;
}

// What a chunk reads of the whole batch: per-token inputs in layout order, per-row counts.
interface BatchSide {
  sequences: number;
  tokens: number;
  rowTokens: Tensor; // [S] float
  advantages: Tensor; // [S]
  old: Tensor | null; // [N]
  ref: Tensor | null; // [N]
  numItems: number | undefined;
  /** Divisors of the accumulated window (its own counts outside one). */
  windowSequences: number;
  microBatches: number;
}

export class GrpoLoss {
  readonly config: GrpoLossConfig;

  constructor(config: GrpoLossConfigInput = {}) {
    this.config = parseConfig(GrpoLossConfigSchema, config, 'GRPO loss config');
  }

  /** `options.mode` is accepted for a uniform API: GRPO keeps no state. */
  compute(batch: GrpoBatch, head: LmHead, options: ComputeOptions = {}): LossResult {
    modeOf(options);
    const c = this.config;
    const targets = targetsOf(batch, 'GRPO loss');
    const [sequences] = checkTokenBatch(batch.hidden, targets);
    if (c.beta > 0 && !batch.refLogps) throw new TypeError('GRPO loss: beta > 0 needs refLogps');
    if (batch.advantages.numel() !== sequences) {
      throw new RangeError(`advantages has ${batch.advantages.numel()} values for ${sequences} sequences`);
    }
    const groups = Array.from({ length: sequences }, (_, r) => [r]);
    return tokenLoss({ hidden: batch.hidden, targets, groups, head, config: c, coupled: false }, (layout) => {
      const side = batchSide(batch, layout, sequences, options);
      return (input) => this.chunkLoss(input, side);
    });
  }

  private chunkLoss({ stats, chunk, metrics }: ChunkInput, side: BatchSide): Tensor {
    const c = this.config;
    const lp = stats.logp;
    const slice = (t: Tensor | null): Tensor | null =>
      t ? t.narrow(0, chunk.start, chunk.end - chunk.start).to({ dtype: lp.dtype }) : null;
    const [old, ref] = [slice(side.old), slice(side.ref)];
    const logRatio = lp.sub(old ?? lp.detach());
    const n = side.rowTokens.indexSelect(0, chunk.rowIds).to({ dtype: lp.dtype });
    const ratio =
      c.importanceSamplingLevel === 'sequence'
        ? sumBySlot(logRatio, chunk).div(n.clamp(1)).exp().indexSelect(0, chunk.slot)
        : logRatio.exp();
    const advantages = side.advantages.to({ dtype: lp.dtype }).indexSelect(0, chunk.rowIds).indexSelect(0, chunk.slot);
    const unclipped = (c.delta === null ? ratio : ratio.clamp(null, c.delta)).mul(advantages);
    const clipped = ratio.clamp(1 - c.epsilon, 1 + c.epsilonHigh).mul(advantages);
    let perToken = unclipped.minimum(clipped).neg();
    const tokens = chunk.end - chunk.start;
    if (c.beta > 0 && ref) {
      const d = ref.sub(lp);
      const kl = d.exp().sub(d).sub(1);
      metrics.add('kl', kl, tokens);
      perToken = perToken.add(kl.mul(c.beta));
    } else {
      metrics.add('kl', 0, tokens);
    }
    const low = ratio.lt(1 - c.epsilon).logicalAnd(advantages.lt(0));
    const high = ratio.gt(1 + c.epsilonHigh).logicalAnd(advantages.gt(0));
    metrics.add('clip_ratio/low_mean', low, tokens);
    metrics.add('clip_ratio/high_mean', high, tokens);
    metrics.add('clip_ratio/region_mean', low.logicalOr(high), tokens);
    metrics.add('entropy', stats.entropy, tokens);
    return this.aggregate(perToken, chunk, n, side);
  }

  private aggregate(perToken: Tensor, chunk: TokenChunk, n: Tensor, side: BatchSide): Tensor {
    const sum = perToken.sum();
    switch (this.config.lossType) {
      case 'grpo':
        return sumBySlot(perToken, chunk).div(n.clamp(1)).sum().div(side.windowSequences);
      case 'bnpo':
        return sum.div(Math.max(side.tokens, 1) * side.microBatches);
      case 'dr_grpo':
        return sum.div(side.windowSequences * this.config.maxCompletionLength);
      case 'dapo':
        return sum.div(Math.max(side.numItems ?? side.tokens, 1));
    }
  }
}

function batchSide(batch: GrpoBatch, layout: TokenLayout, sequences: number, options: ComputeOptions): BatchSide {
  const tokens = layout.rowTokens.reduce((a, b) => a + b, 0);
  const pick = (t: Tensor | undefined): Tensor | null =>
    t ? t.detach().reshape(-1).indexSelect(0, layout.index) : null;
  return {
    sequences,
    tokens,
    rowTokens: torch.tensor(Float64Array.from(layout.rowTokens)),
    advantages: batch.advantages.detach().reshape(-1),
    old: pick(batch.oldLogps),
    ref: pick(batch.refLogps),
    numItems:
      batch.numItemsInBatch ??
      (options.normalisers?.tokens === undefined ? undefined : normaliserOf(options, 'tokens', tokens)),
    windowSequences: normaliserOf(options, 'rows', sequences),
    microBatches: normaliserOf(options, 'microBatches', 1),
  };
}
