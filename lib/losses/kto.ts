// Unpaired preference losses (KTOTrainer, BCOTrainer): each row is a prompt + completion with a
// desirable / undesirable label; r is the row's policy-minus-reference log-prob.
//   kto                desirable: wD (1 - sigma(beta (r - z0)))   undesirable: wU (1 - sigma(beta (z0 - r)))
//   apo_zero_unpaired  desirable: 1 - sigma(beta r)               undesirable: sigma(beta r)
//   bco                desirable: -log sigma(R - D)               undesirable: -log sigma(-(R - D)),  R = beta r
// z0 = max(0, mean(policy - reference) over mismatched KL completions), detached; D is the running
// mean of every R seen in training (its state is checkpointed). The loss is the mean over rows.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { KtoLossConfigSchema, parseConfig, type KtoLossConfig, type KtoLossConfigInput } from './config.js';
import type { LmHead } from './fused_linear.js';
import type { MetricSums } from './metrics.js';
import { sequenceLogps, type ReferenceHidden } from './reference.js';
import { WithRunningMoments } from './running_moments.js';
import { sumBySlot } from './token_layout.js';
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

export interface UnpairedBatch {
  hidden: Tensor; // [R, T, H]
  targets: Tensor; // [R, T] int64, ignoreIndex outside completions
  desirable: readonly boolean[]; // [R]
  refLogps?: Tensor; // [R] summed reference log-probs ...
  ref?: ReferenceHidden; // ... or the reference model's hidden states [R, T, H] and its own head
  /** KTO's KL estimate inputs: policy and reference log-probs [R'] of mismatched completions. */
  kl?: { policyLogps: Tensor; refLogps: Tensor };
}

const F = torch.nn.functional;

// What a chunk reads of the whole batch.
interface BatchSide {
  ref: Tensor; // [R] reference log-probs
  z0: Tensor; // [] KTO's reference point
  desirable: Tensor; // [R] bool
  flags: readonly boolean[]; // the same on the host, for the metrics' counts
  rows: number; // the divisor of the row mean (the accumulated batch's rows under accumulation)
}

export class UnpairedPreferenceLoss extends WithRunningMoments {
  readonly config: KtoLossConfig;

  constructor(config: KtoLossConfigInput = {}) {
    super();
    this.config = parseConfig(KtoLossConfigSchema, config, 'KTO loss config');
  }

  compute(batch: UnpairedBatch, head: LmHead, options: ComputeOptions = {}): LossResult {
    const mode = modeOf(options);
    const c = this.config;
    const targets = targetsOf(batch, 'KTO loss');
    const [rows] = checkTokenBatch(batch.hidden, targets);
    if (batch.desirable.length !== rows) {
      throw new RangeError(`desirable has ${batch.desirable.length} labels for ${rows} rows`);
    }
    const groups = Array.from({ length: rows }, (_, r) => [r]);
    const input = { hidden: batch.hidden, targets, groups, head, config: c, coupled: c.lossType === 'bco' };
    return tokenLoss(input, (_, metrics) => {
      const dtype = batch.hidden.dtype;
      const ref = this.referenceLogps(batch, targets).to({ dtype });
      const kl = batch.kl;
      const z0 = kl ? kl.policyLogps.sub(kl.refLogps).detach().mean().clamp(0) : torch.zeros([]);
      metrics.add('kl', z0, 1);
      const flags = batch.desirable.map(Boolean);
      const divisor = normaliserOf(options, 'rows', rows);
      const side: BatchSide = { ref, z0: z0.to({ dtype }), desirable: torch.tensor(flags), flags, rows: divisor };
      return (input) => this.chunkLoss(input, side, mode);
    });
  }

  private referenceLogps(batch: UnpairedBatch, targets: Tensor): Tensor {
    if ('refHidden' in batch) {
      throw new TypeError("KTO loss: refHidden is now ref: { hidden, head } (the reference's own LM head)");
    }
    if (batch.refLogps) {
      const rows = targets.shape[0]!;
      if (batch.refLogps.ndim !== 1 || batch.refLogps.shape[0] !== rows) {
        throw new RangeError(`refLogps must have shape [${rows}], got [${batch.refLogps.shape}]`);
      }
      return batch.refLogps.detach();
    }
    if (!batch.ref) throw new TypeError('KTO loss: give refLogps or ref: { hidden, head }');
    return sequenceLogps(batch.ref.hidden, batch.ref.head, targets, this.config);
  }

  private chunkLoss({ stats, chunk, metrics }: ChunkInput, side: BatchSide, mode: 'train' | 'eval'): Tensor {
    const logps = sumBySlot(stats.logp, chunk);
    const r = logps.sub(side.ref.indexSelect(0, chunk.rowIds));
    const desirable = side.desirable.indexSelect(0, chunk.rowIds);
    const goodRows = chunk.rows.filter((row) => side.flags[row]).length;
    this.addRowMetrics(metrics, [goodRows, chunk.rows.length - goodRows], desirable, r, logps);
    return this.rowLosses(r, desirable, side.z0, mode).sum().div(side.rows);
  }

  private rowLosses(r: Tensor, desirable: Tensor, z0: Tensor, mode: 'train' | 'eval'): Tensor {
    const { beta, desirableWeight: wD, undesirableWeight: wU } = this.config;
    switch (this.config.lossType) {
      case 'kto':
        return torch.where(
          desirable,
          r.sub(z0).mul(beta).sigmoid().rsub(1).mul(wD),
          z0.sub(r).mul(beta).sigmoid().rsub(1).mul(wU),
        );
      case 'apo_zero_unpaired':
        return torch.where(desirable, r.mul(beta).sigmoid().rsub(1), r.mul(beta).sigmoid());
      case 'bco': {
        // BCO is coupled: this is the whole batch, so D moves once per training batch.
        const rewards = r.mul(beta);
        if (mode === 'train') this.running.update(rewards.detach().to({ dtype: 'float64' }).data() as Float64Array);
        const shifted = rewards.sub(this.running.mean);
        return torch.where(desirable, F.logsigmoid(shifted).neg(), F.logsigmoid(shifted.neg()).neg());
      }
    }
  }

  // rewards/* (beta r) and logps/* per side; chosen = desirable rows, rejected = undesirable ones.
  private addRowMetrics(
    metrics: MetricSums,
    [goodRows, badRows]: [number, number],
    desirable: Tensor,
    r: Tensor,
    logps: Tensor,
  ): void {
    const beta = this.config.beta;
    const good = desirable.to({ dtype: r.dtype });
    const bad = good.rsub(1);
    metrics.add('rewards/chosen', r.mul(good).mul(beta), goodRows);
    metrics.add('rewards/rejected', r.mul(bad).mul(beta), badRows);
    metrics.add('logps/chosen', logps.mul(good), goodRows);
    metrics.add('logps/rejected', logps.mul(bad), badRows);
  }
}
