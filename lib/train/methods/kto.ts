// KTO, APO-zero (unpaired) and BCO on unpaired rows {prompt, completion, label} (TRL KTOTrainer /
// BCOTrainer). KTO's reference point z0 comes from a KL batch built as TRL builds it: each row keeps
// its own prompt and images and takes the previous row's completion (the completions rolled by +1
// within the micro-batch, row 0 taking the last one's); the policy and the reference score it
// without a graph. Evaluation runs the same loss on the eval batches (TRL's eval_kl is each eval
// batch's own estimate, averaged), and rowLogps gives the eval hook each row's log-probs.
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
import { inputKey, pixelsPerRecord, unpaddedTokens, type ReferenceCache, type ReferencePolicy } from '../reference.js';
import type { MicroBatch, TrainingMethod } from './method.js';
import type { TrainingGroup } from '../distributed.js';
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
  /** With a reference cache: each row's key there (a digest of its tokens and its pixels). */
  referenceKeys: string[] | null;
}

export class KtoMethod implements TrainingMethod<UnpairedMicroBatch> {
  readonly name = 'kto';
  readonly objective: UnpairedPreferenceLoss;
  readonly stateful;

  // KTO's KL baseline z0 and BCO's running reward mean are batch statistics that TRL gathers over
  // the ranks; this version does not gather them, so a distributed KTO run would train on per-rank
  // values and is refused rather than silently different.
  joinGroup(group: TrainingGroup): void {
    if (group.distributed) {
      throw new Error(
        `kto: distributed training (world size ${group.worldSize}) is not supported yet: its KL baseline and BCO's ` +
          'running mean would need statistics gathered over the ranks; run kto in one process',
      );
    }
  }

  constructor(readonly options: KtoMethodOptions) {
    this.objective = new UnpairedPreferenceLoss(options.loss);
    this.stateful = { loss: this.objective };
  }

  async collate(records: ReadonlyArray<DecodedRecord<UnpairedRecord>>): Promise<UnpairedMicroBatch> {
    const { processor, ignoreIndex, maxLength } = this.options;
    const eos = { eosToken: processor.tokenizer.eosToken };
    const samples = records.map((r) => unpairedSample(r, eos));
    const rows = await collateRows(processor, samples, { ignoreIndex, maxLength });
    const n = samples.length;
    const rolled = samples.map((s, i) => ({ ...s, completion: samples[(i + n - 1) % n]!.completion }));
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
      referenceKeys: this.options.cache === null ? null : rowKeys(rows, klRows, records),
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

  precompute(batch: UnpairedMicroBatch): number {
    const { cache } = this.options;
    const keys = batch.referenceKeys;
    if (cache === null || keys === null) throw new Error('precompute: no reference cache');
    // Entries already cached keep their values: a batch holding a new record changes nothing else.
    const missing = keys.flatMap((key, i) => (cache.has(key, batch.klRows === null ? 1 : 2) ? [] : [i]));
    if (missing.length === 0) return 0;
    torch.tidy(() => {
      const [rows, kl] = this.referencePass(batch);
      const values = (t: Tensor): number[] => Array.from(t.to({ dtype: 'float64' }).data() as Float64Array);
      const [r, k] = [values(rows), kl === null ? null : values(kl)];
      for (const i of missing) cache.set(keys[i]!, k === null ? [r[i]!] : [r[i]!, k[i]!]);
    });
    return missing.length;
  }

  /**
   * Each row's summed completion log-probs under the policy (dropout off, no graph) and the
   * reference (its model, or the cache when the run precomputed them), in row order.
   */
  rowLogps(batch: UnpairedMicroBatch): { policy: number[]; reference: number[] } {
    const { model, cache, reference } = this.options;
    const values = (t: Tensor): number[] =>
      Array.from(t.to({ dtype: 'float64', device: 'cpu' }).data() as Float64Array);
    const training = model.training;
    model.eval();
    try {
      return torch.noGrad(() =>
        torch.tidy(() => {
          const policy = values(this.logps(model, model.lmHead(), batch.rows));
          if (cache !== null && batch.referenceKeys !== null) {
            const width = batch.klRows === null ? 1 : 2;
            return { policy, reference: values(cache.lookup(batch.referenceKeys, width, batch.ids).select(1, 0)) };
          }
          if (reference === null) throw new Error('KTO: no reference policy and no precomputed reference log-probs');
          return { policy, reference: values(reference.run((m, head) => this.logps(m, head, batch.rows))) };
        }),
      );
    } finally {
      model.train(training);
    }
  }

  // The rows' reference log-probs [R] and, for KTO, the KL rows' [R].
  private referenceLogps(batch: UnpairedMicroBatch): [Tensor, Tensor | null] {
    const { cache } = this.options;
    if (cache === null || batch.referenceKeys === null) return this.referencePass(batch);
    const width = batch.klRows === null ? 1 : 2;
    const values = cache.lookup(batch.referenceKeys, width, batch.ids);
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

// Row i's key: its tokens and pixels, and whether a KL value comes with it (and which neighbour's
// completion the KL row takes: the previous row's). The KL row is left out of the key: it rolls
// completions within a micro-batch, so the precompute pass pairs each row with another neighbour
// than a shuffled training batch does, and its cached KL value is the pass's.
function rowKeys(
  rows: CollatedBatch,
  klRows: CollatedBatch | null,
  records: ReadonlyArray<DecodedRecord<UnpairedRecord>>,
): string[] {
  const tokens = unpaddedTokens(rows);
  const pixels = pixelsPerRecord(
    rows,
    records.map((r) => r.pixels.length),
  );
  const layout = klRows === null ? { kl: false } : { kl: 'previous row' };
  return records.map((_, i) => inputKey([tokens[i]!], layout, pixels[i]!));
}
