// GRPO-family token losses (TRL GRPOTrainer, DAPO, Dr. GRPO, GSPO). Per completion token t of
// sequence i, with w the importance ratio pi_theta / pi_old and A_i the sequence's advantage:
//   l = -min(w A, clip(w, 1 - epsilon, 1 + epsilonHigh) A)   (+ beta k3, k3 = e^(ref - lp) - (ref - lp) - 1)
// w is per token, or per sequence for GSPO: w_i = exp(mean_t(lp - old)). Aggregation by lossType:
//   grpo mean_i(sum_t l / n_i); bnpo sum l / sum n; dr_grpo sum l / (S * maxCompletionLength);
//   dapo sum l / (tokens of the whole generation batch, numItemsInBatch when given).
// Every sequence's loss depends only on its own tokens, so chunks of whole sequences are exact.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { GrpoLossConfigSchema, parseConfig, type GrpoLossConfig, type GrpoLossConfigInput } from './config.js';
import { lossOverTokens, type LmHead, type TokenStats } from './fused_linear.js';
import type { LossResult } from './preference.js';
import { disposeLayout, layoutTokens, sumBySlot, type TokenChunk } from './token_layout.js';

export interface GrpoBatch {
  hidden: Tensor; // [S, T, H]
  labels: Tensor; // [S, T] int64 completion tokens, ignoreIndex elsewhere
  advantages: Tensor; // [S]
  /** [S, T] per-token log-probs of the sampling policy; omitted: the current policy, detached (on-policy). */
  oldLogps?: Tensor;
  /** [S, T] per-token reference log-probs; required when beta > 0. */
  refLogps?: Tensor;
  /** dapo's normaliser across ranks / accumulation steps; defaults to this batch's token count. */
  numItemsInBatch?: number;
}

interface Totals {
  sequences: number;
  tokens: number;
  rowTokens: Tensor; // [S] float
  clipLow: number;
  clipHigh: number;
  klSum: number;
  entropySum: number;
}

export class GrpoLoss {
  readonly config: GrpoLossConfig;

  constructor(config: GrpoLossConfigInput = {}) {
    this.config = parseConfig(GrpoLossConfigSchema, config, 'GRPO loss config');
  }

  compute(batch: GrpoBatch, head: LmHead): LossResult {
    const c = this.config;
    const sequences = batch.labels.shape[0]!;
    if (c.beta > 0 && !batch.refLogps) throw new TypeError('GRPO loss: beta > 0 needs refLogps');
    if (batch.advantages.numel() !== sequences) throw new RangeError(`advantages has ${batch.advantages.numel()} values for ${sequences} sequences`);
    const layout = layoutTokens(batch.labels, Array.from({ length: sequences }, (_, r) => [r]), c.chunkSize, c.ignoreIndex);
    try {
      return torch.tidy(() => {
        const tokens = layout.rowTokens.reduce((a, b) => a + b, 0);
        const pick = (t: Tensor | undefined): Tensor | null => (t ? t.detach().reshape(-1).indexSelect(0, layout.index) : null);
        const old = pick(batch.oldLogps);
        const ref = pick(batch.refLogps);
        const totals: Totals = {
          sequences,
          tokens,
          rowTokens: torch.tensor(Float64Array.from(layout.rowTokens)),
          clipLow: 0,
          clipHigh: 0,
          klSum: 0,
          entropySum: 0,
        };
        const lossOfChunk = (stats: TokenStats, chunk: TokenChunk): Tensor => {
          const slice = (t: Tensor | null): Tensor | null => (t ? t.narrow(0, chunk.start, chunk.end - chunk.start).to({ dtype: stats.logp.dtype }) : null);
          return this.chunkLoss(stats, chunk, batch, slice(old), slice(ref), totals);
        };
        const x = batch.hidden.reshape(-1, batch.hidden.shape[2]!).indexSelect(0, layout.index);
        const loss = lossOverTokens(x, head, layout, { ...c, coupled: false }, lossOfChunk);
        const perToken = (v: number): number => (tokens ? v / tokens : Number.NaN);
        return {
          loss,
          metrics: {
            loss: loss.item() as number,
            'clip_ratio/low_mean': perToken(totals.clipLow),
            'clip_ratio/high_mean': perToken(totals.clipHigh),
            'clip_ratio/region_mean': perToken(totals.clipLow + totals.clipHigh),
            kl: c.beta > 0 ? perToken(totals.klSum) : 0,
            entropy: perToken(totals.entropySum),
          },
        };
      });
    } finally {
      disposeLayout(layout);
    }
  }

  private chunkLoss(stats: TokenStats, chunk: TokenChunk, batch: GrpoBatch, old: Tensor | null, ref: Tensor | null, totals: Totals): Tensor {
    const c = this.config;
    const rowIds = torch.tensor(BigInt64Array.from(chunk.rows, BigInt));
    const lp = stats.logp;
    const logRatio = lp.sub(old ?? lp.detach());
    const n = totals.rowTokens.indexSelect(0, rowIds).to({ dtype: lp.dtype });
    const ratio =
      c.importanceSamplingLevel === 'sequence'
        ? sumBySlot(logRatio, chunk).div(n.clamp(1)).exp().indexSelect(0, chunk.slot)
        : logRatio.exp();
    const advantages = batch.advantages.detach().to({ dtype: lp.dtype }).indexSelect(0, rowIds).indexSelect(0, chunk.slot);
    const unclipped = (c.delta === null ? ratio : ratio.clamp(null, c.delta)).mul(advantages);
    const clipped = ratio.clamp(1 - c.epsilon, 1 + c.epsilonHigh).mul(advantages);
    let perToken = unclipped.minimum(clipped).neg();
    if (c.beta > 0 && ref) {
      const d = ref.sub(lp);
      const kl = d.exp().sub(d).sub(1);
      totals.klSum += kl.sum().item() as number;
      perToken = perToken.add(kl.mul(c.beta));
    }
    totals.clipLow += ratio.lt(1 - c.epsilon).logicalAnd(advantages.lt(0)).sum().item() as number;
    totals.clipHigh += ratio.gt(1 + c.epsilonHigh).logicalAnd(advantages.gt(0)).sum().item() as number;
    totals.entropySum += stats.entropy.detach().sum().item() as number;
    return this.aggregate(perToken, chunk, n, totals, batch.numItemsInBatch);
  }

  private aggregate(perToken: Tensor, chunk: TokenChunk, n: Tensor, totals: Totals, numItems?: number): Tensor {
    const sum = perToken.sum();
    switch (this.config.lossType) {
      case 'grpo':
        return sumBySlot(perToken, chunk).div(n.clamp(1)).sum().div(totals.sequences);
      case 'bnpo':
        return sum.div(Math.max(totals.tokens, 1));
      case 'dr_grpo':
        return sum.div(totals.sequences * this.config.maxCompletionLength);
      case 'dapo':
        return sum.div(Math.max(numItems ?? totals.tokens, 1));
    }
  }
}
