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
import { lossOverTokens, type LmHead, type TokenStats } from './fused_linear.js';
import { WithRunningMoments } from './running_moments.js';
import { disposeLayout, layoutTokens, sumBySlot, type TokenChunk } from './token_layout.js';
import type { LossResult } from './preference.js';
import { sequenceLogps } from './reference.js';

export interface UnpairedBatch {
  hidden: Tensor; // [R, T, H]
  labels: Tensor; // [R, T] int64, ignoreIndex outside completions
  desirable: readonly boolean[]; // [R]
  refLogps?: Tensor; // [R] summed reference log-probs ...
  refHidden?: Tensor; // ... or the reference model's hidden states [R, T, H]
  /** KTO's KL estimate inputs: policy and reference log-probs [R'] of mismatched completions. */
  kl?: { policyLogps: Tensor; refLogps: Tensor };
}

const F = torch.nn.functional;

export class UnpairedPreferenceLoss extends WithRunningMoments {
  readonly config: KtoLossConfig;

  constructor(config: KtoLossConfigInput = {}) {
    super();
    this.config = parseConfig(KtoLossConfigSchema, config, 'KTO loss config');
  }

  compute(batch: UnpairedBatch, head: LmHead, options: { training?: boolean } = {}): LossResult {
    const c = this.config;
    const rows = batch.labels.shape[0]!;
    if (batch.desirable.length !== rows) throw new RangeError(`desirable has ${batch.desirable.length} labels for ${rows} rows`);
    const layout = layoutTokens(batch.labels, Array.from({ length: rows }, (_, r) => [r]), c.chunkSize, c.ignoreIndex);
    try {
      return torch.tidy(() => {
        const ref = batch.refLogps?.detach() ?? (batch.refHidden ? sequenceLogps(batch.refHidden, head, batch.labels, c) : null);
        if (!ref) throw new TypeError('KTO loss: give refLogps or refHidden');
        const z0 = batch.kl ? Math.max(0, batch.kl.policyLogps.sub(batch.kl.refLogps).mean().item() as number) : 0;
        const desirable = torch.tensor(batch.desirable.map(Boolean));
        const policy: number[] = []; // per-row policy log-probs, for the metrics
        const lossOfChunk = (stats: TokenStats, chunk: TokenChunk): Tensor => {
          const rowIds = torch.tensor(BigInt64Array.from(chunk.rows, BigInt));
          const logps = sumBySlot(stats.logp, chunk);
          // Chunks hold ascending single rows, so appending keeps row order.
          policy.push(...(logps.detach().to({ dtype: 'float64' }).data() as Float64Array));
          const r = logps.sub(ref.indexSelect(0, rowIds).to({ dtype: logps.dtype }));
          return this.rowLosses(r, desirable.indexSelect(0, rowIds), z0, options.training ?? true).sum().div(rows);
        };
        const x = batch.hidden.reshape(-1, batch.hidden.shape[2]!).indexSelect(0, layout.index);
        const loss = lossOverTokens(x, head, layout, { ...c, coupled: c.lossType === 'bco' }, lossOfChunk);
        return { loss, metrics: this.metrics(loss, policy, ref, batch.desirable, z0) };
      });
    } finally {
      disposeLayout(layout);
    }
  }

  private rowLosses(r: Tensor, desirable: Tensor, z0: number, training: boolean): Tensor {
    const { beta, desirableWeight: wD, undesirableWeight: wU } = this.config;
    switch (this.config.lossType) {
      case 'kto':
        return torch.where(desirable, r.sub(z0).mul(beta).sigmoid().rsub(1).mul(wD), r.rsub(z0).mul(beta).sigmoid().rsub(1).mul(wU));
      case 'apo_zero_unpaired':
        return torch.where(desirable, r.mul(beta).sigmoid().rsub(1), r.mul(beta).sigmoid());
      case 'bco': {
        const rewards = r.mul(beta);
        if (training) this.running.update(rewards.detach().to({ dtype: 'float64' }).data() as Float64Array);
        const shifted = rewards.sub(this.running.mean);
        return torch.where(desirable, F.logsigmoid(shifted).neg(), F.logsigmoid(shifted.neg()).neg());
      }
    }
  }

  private metrics(loss: Tensor, p: number[], ref: Tensor, desirable: readonly boolean[], z0: number): Record<string, number> {
    const beta = this.config.beta;
    const q = ref.to({ dtype: 'float64' }).data() as Float64Array;
    const mean = (pick: (k: number) => number, want: boolean): number => {
      const ks = desirable.flatMap((d, k) => (d === want ? [k] : []));
      return ks.length ? ks.reduce((s, k) => s + pick(k), 0) / ks.length : Number.NaN;
    };
    const chosen = mean((k) => beta * (p[k]! - q[k]!), true);
    const rejected = mean((k) => beta * (p[k]! - q[k]!), false);
    return {
      loss: loss.item() as number,
      kl: z0,
      'rewards/chosen': chosen,
      'rewards/rejected': rejected,
      'rewards/margins': chosen - rejected,
      'logps/chosen': mean((k) => p[k]!, true),
      'logps/rejected': mean((k) => p[k]!, false),
    };
  }
}
