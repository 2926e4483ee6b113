// KTO, APO-zero (unpaired) and BCO on unpaired rows {prompt, completion, label} (TRL KTOTrainer /
// BCOTrainer). KTO's reference point z0 comes from a KL batch built as TRL builds it: each row keeps
// its own prompt and images and takes the next row's completion (rolled by one within the
// micro-batch); the policy and the reference score it without a graph.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import {
  UnpairedPreferenceLoss,
  sequenceLogps,
  type KtoLossConfigInput,
  type LossNormalisers,
  type LossResult,
} from '../../losses/index.js';
import type { CausalLM } from '../../models/index.js';
import type { Processor } from '../../processing/index.js';
import type { CollatedBatch } from '../../data/collators.js';
import type { DecodedRecord } from '../../data/images.js';
import type { UnpairedRecord } from '../../data/records.js';
import { unpairedSample } from '../../data/samples.js';
import type { ReferenceCache, ReferencePolicy } from '../reference.js';
import type { MicroBatch, TrainingMethod } from './method.js';
import { collateRows, disposeTensors, rowsForward, rowTokenCounts } from './rows.js';

export interface KtoMethodOptions {
  model: CausalLM;
  processor: Processor;
  loss: KtoLossConfigInput;
  maxLength: number | null;
  ignoreIndex: number;
  reference: ReferencePolicy | null;
  cache: ReferenceCache | null;
}

export interface UnpairedMicroBatch extends MicroBatch {
  rows: CollatedBatch;
  desirable: boolean[];
  /** KTO only: the rows with rolled completions. */
  klRows: CollatedBatch | null;
}

export class KtoMethod implements TrainingMethod<UnpairedMicroBatch> {
  readonly name = 'kto';
  readonly objective: UnpairedPreferenceLoss;
  readonly stateful;

  constructor(readonly options: KtoMethodOptions) {
    this.objective = new UnpairedPreferenceLoss(options.loss);
    this.stateful = { loss: this.objective };
  }

  async collate(records: ReadonlyArray<DecodedRecord<UnpairedRecord>>): Promise<UnpairedMicroBatch> {
    const { processor, ignoreIndex, maxLength } = this.options;
    const eos = { eosToken: processor.tokenizer.eosToken };
    const samples = records.map((r) => unpairedSample(r, eos));
    const rows = await collateRows(processor, samples, { ignoreIndex, maxLength });
    const rolled = samples.map((s, i) => ({ ...s, completion: samples[(i + 1) % samples.length]!.completion }));
    const klRows =
      this.objective.config.lossType === 'kto'
        ? await collateRows(processor, rolled, { ignoreIndex, maxLength })
        : null;
    const tokens = rowTokenCounts(rows.targets, ignoreIndex).reduce((a, b) => a + b, 0);
    return {
      ids: records.map((r) => r.record.id),
      rows,
      desirable: records.map((r) => r.record.label),
      klRows,
      tokens,
      counts: { rows: records.length },
      dispose: () => {
        disposeTensors(rows);
        if (klRows !== null) disposeTensors(klRows);
      },
    };
  }

  loss(batch: UnpairedMicroBatch, normalisers: LossNormalisers, mode: 'train' | 'eval'): LossResult {
    const { model } = this.options;
    return torch.tidy(() => {
      const [refLogps, refKl] = this.referenceLogps(batch);
      const kl = batch.klRows === null ? undefined : { policyLogps: this.policyKl(batch.klRows), refLogps: refKl! };
      const hidden = rowsForward(model, batch.rows);
      const input = { hidden, targets: batch.rows.targets, desirable: batch.desirable, refLogps, kl };
      return this.objective.compute(input, model.lmHead(), { mode, normalisers });
    });
  }

  precompute(batch: UnpairedMicroBatch): void {
    const cache = this.options.cache;
    if (cache === null) throw new Error('precompute: no reference cache');
    torch.tidy(() => {
      const [rows, kl] = this.referencePass(batch);
      const values = (t: Tensor): number[] => Array.from(t.to({ dtype: 'float64' }).data() as Float64Array);
      const [r, k] = [values(rows), kl === null ? null : values(kl)];
      batch.ids.forEach((id, i) => cache.set(id, k === null ? [r[i]!] : [r[i]!, k[i]!]));
    });
  }

  // The rows' reference log-probs [R] and, for KTO, the KL rows' [R].
  private referenceLogps(batch: UnpairedMicroBatch): [Tensor, Tensor | null] {
    const cache = this.options.cache;
    if (cache === null) return this.referencePass(batch);
    const width = batch.klRows === null ? 1 : 2;
    const values = cache.lookup(batch.ids, width);
    return [values.select(1, 0), width === 2 ? values.select(1, 1) : null];
  }

  private referencePass(batch: UnpairedMicroBatch): [Tensor, Tensor | null] {
    const reference = this.options.reference;
    if (reference === null) throw new Error('KTO: no reference policy and no precomputed reference log-probs');
    return reference.run((model, head) => [
      this.logps(model, head, batch.rows),
      batch.klRows === null ? null : this.logps(model, head, batch.klRows),
    ]);
  }

  // The policy's KL-row log-probs, without a graph (TRL computes them under no_grad).
  private policyKl(klRows: CollatedBatch): Tensor {
    const { model } = this.options;
    return torch.noGrad(() => this.logps(model, model.lmHead(), klRows));
  }

  private logps(model: CausalLM, head: Parameters<typeof sequenceLogps>[1], rows: CollatedBatch): Tensor {
    const { ignoreIndex } = this.options;
    return sequenceLogps(rowsForward(model, rows), head, rows.targets, {
      ignoreIndex,
      chunkSize: this.objective.config.chunkSize,
    });
  }
}
