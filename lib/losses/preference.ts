// DPO-family and MPO losses from a model's last hidden states in one call: select completion
// tokens, run the LM head through the fused kernel, reduce to sequence log-probs, mix the loss
// types, and report TRL's metrics. A step is then: forward, `loss.compute(...)`, backward.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { parseConfig, PreferenceLossConfigSchema, type PreferenceLossConfig, type PreferenceLossConfigInput } from './config.js';
import { BATCH_COUPLED_LOSSES, DPO_LOSSES, scoresOf, type DpoLossOptions, type DpoLossType, type PairLogps } from './dpo.js';
import { lossOverTokens, type LmHead, type TokenStats } from './fused_linear.js';
import { sequenceLogps } from './reference.js';
import { MetricSums } from './metrics.js';
import { WithRunningMoments } from './running_moments.js';
import { disposeLayout, layoutTokens, sumBySlot, type TokenChunk } from './token_layout.js';

export interface PreferenceBatch {
  /** [2P, T, H] last hidden states: P chosen rows, then the P rejected rows in the same order. */
  hidden: Tensor;
  /** [2P, T] int64: the token each position predicts, ignoreIndex outside the completions. */
  labels: Tensor;
  /** Reference log-probs: precomputed sums [P] each ... */
  refChosenLogps?: Tensor;
  refRejectedLogps?: Tensor;
  /** ... or the reference model's hidden states [2P, T, H] (e.g. the policy with adapters disabled). */
  refHidden?: Tensor;
}

export interface LossResult {
  loss: Tensor;
  metrics: Record<string, number>;
}

export class PreferenceLoss extends WithRunningMoments {
  readonly config: PreferenceLossConfig;

  constructor(config: PreferenceLossConfigInput = {}) {
    super();
    this.config = parseConfig(PreferenceLossConfigSchema, config, 'preference loss config');
  }

  compute(batch: PreferenceBatch, head: LmHead): LossResult {
    const [rows, , width] = checkBatch(batch);
    const pairs = rows / 2;
    const c = this.config;
    const layout = layoutTokens(batch.labels, Array.from({ length: pairs }, (_, i) => [i, pairs + i]), c.chunkSize, c.ignoreIndex);
    const metrics = new MetricSums();
    try {
      return torch.tidy(() => {
        const [refChosen, refRejected] = this.referenceLogps(batch, head, pairs);
        const tokens = torch.tensor(Float64Array.from(layout.rowTokens, (n) => Math.max(n, 1)), { dtype: batch.hidden.dtype });
        const counts = { pairs, chosenTokens: layout.rowTokens.slice(0, pairs).reduce((a, b) => a + b, 0) };
        const lossOfChunk = (stats: TokenStats, chunk: TokenChunk): Tensor =>
          this.chunkLoss(stats, chunk, { refChosen, refRejected, tokens }, counts, metrics);
        const x = batch.hidden.reshape(-1, width).indexSelect(0, layout.index);
        const coupled = c.bcoRunningMean || c.lossType.some((t) => BATCH_COUPLED_LOSSES.has(t));
        const loss = lossOverTokens(x, head, layout, { ...c, coupled }, lossOfChunk);
        return { loss, metrics: metrics.summary(loss) };
      });
    } finally {
      disposeLayout(layout);
    }
  }

  private referenceLogps(batch: PreferenceBatch, head: LmHead, pairs: number): [Tensor, Tensor] {
    if (batch.refChosenLogps && batch.refRejectedLogps) {
      for (const [name, t] of [['refChosenLogps', batch.refChosenLogps], ['refRejectedLogps', batch.refRejectedLogps]] as const) {
        if (t.shape.length !== 1 || t.shape[0] !== pairs) throw new RangeError(`${name} must have shape [${pairs}], got [${t.shape}]`);
      }
      return [batch.refChosenLogps.detach().to({ dtype: batch.hidden.dtype }), batch.refRejectedLogps.detach().to({ dtype: batch.hidden.dtype })];
    }
    if (!batch.refHidden) throw new TypeError('preference loss: give refChosenLogps/refRejectedLogps or refHidden');
    const sums = sequenceLogps(batch.refHidden, head, batch.labels, this.config);
    return [sums.narrow(0, 0, pairs), sums.narrow(0, pairs, pairs)];
  }

  // The chunk's contribution: sum over its pairs of each loss type's per-pair loss / P, weighted,
  // plus the SFT / RPO NLL over its chosen tokens / all chosen tokens of the batch.
  private chunkLoss(
    stats: TokenStats,
    chunk: TokenChunk,
    batch: { refChosen: Tensor; refRejected: Tensor; tokens: Tensor },
    counts: { pairs: number; chosenTokens: number },
    metrics: MetricSums,
  ): Tensor {
    const c = this.config;
    const k = chunk.rows.length / 2;
    const pairIds = torch.tensor(BigInt64Array.from(chunk.rows.slice(0, k), BigInt));
    const rowIds = torch.tensor(BigInt64Array.from(chunk.rows, BigInt));
    const sums = sumBySlot(stats.logp, chunk);
    const tokens = batch.tokens.indexSelect(0, rowIds);
    const p: PairLogps = {
      chosen: sums.narrow(0, 0, k),
      rejected: sums.narrow(0, k, k),
      refChosen: batch.refChosen.indexSelect(0, pairIds),
      refRejected: batch.refRejected.indexSelect(0, pairIds),
      chosenTokens: tokens.narrow(0, 0, k),
      rejectedTokens: tokens.narrow(0, k, k),
    };
    const options: DpoLossOptions = { ...c, bcoShift: this.bcoShift(p) };
    const scores = scoresOf(p, options);
    const chosenNll = p.chosen.sum().neg().div(Math.max(counts.chosenTokens, 1));
    let loss = torch.zeros([], { dtype: sums.dtype });
    c.lossType.forEach((type, i) => {
      const term = type === 'sft' ? chosenNll : DPO_LOSSES[type as DpoLossType](p, scores, options).sum().div(counts.pairs);
      loss = loss.add(term.mul(c.lossWeights[i]!));
    });
    if (c.rpoAlpha) loss = loss.add(chosenNll.mul(c.rpoAlpha));
    metrics.addPairs(scores.rc.mul(c.beta), scores.rr.mul(c.beta), p.chosen, p.rejected);
    metrics.addTokens(stats, chunk, k, chosenNll.mul(Math.max(counts.chosenTokens, 1)));
    return loss;
  }

  // Legacy bco_pair's D: the running mean of the batch's mean implicit reward, updated with this
  // batch first (as TRL <= 0.28 does on every loss call). Needs the whole batch: a coupled loss.
  private bcoShift(p: PairLogps): Tensor | null {
    if (!this.config.bcoRunningMean || !this.config.lossType.includes('bco_pair')) return null;
    const beta = this.config.beta;
    const rewards = torch.cat([p.chosen.sub(p.refChosen), p.rejected.sub(p.refRejected)]).mul(beta);
    this.running.update([rewards.mean().item() as number]);
    return torch.full([], this.running.mean, { dtype: p.chosen.dtype });
  }
}

function checkBatch(batch: PreferenceBatch): [number, number, number] {
  const { hidden, labels } = batch;
  if (hidden.ndim !== 3) throw new RangeError(`hidden must be [rows, tokens, hidden], got [${hidden.shape}]`);
  const [rows, length, width] = hidden.shape as [number, number, number];
  if (rows % 2 !== 0) throw new RangeError(`hidden holds ${rows} rows; a preference batch needs chosen and rejected rows (an even count)`);
  if (labels.ndim !== 2 || labels.shape[0] !== rows || labels.shape[1] !== length) {
    throw new RangeError(`labels must be [${rows}, ${length}] to match hidden [${hidden.shape}], got [${labels.shape}]`);
  }
  return [rows, length, width];
}
