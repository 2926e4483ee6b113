// Supervised fine-tuning (TRL SFTTrainer with chunked_nll): whole conversations (loss on every
// assistant turn) or prompt + completion (loss on the completion), a token-mean NLL normalised over
// the whole accumulated batch.
import * as torch from '../../torch/index.js';
import { SftLoss, type LossNormalisers, type LossResult, type SftLossConfigInput } from '../../losses/index.js';
import type { CausalLM } from '../../models/index.js';
import type { Processor } from '../../processing/index.js';
import type { CollatedBatch } from '../../data/collators.js';
import type { DecodedRecord } from '../../data/images.js';
import type { DataRecord, SftRecord } from '../../data/records.js';
import { sftSample } from '../../data/samples.js';
import type { MicroBatch, TrainingMethod } from './method.js';
import { collateRows, disposeTensors, rowsForward, rowTokenCounts } from './rows.js';

export interface SftMethodOptions {
  model: CausalLM;
  processor: Processor;
  loss: SftLossConfigInput;
  maxLength: number | null;
  ignoreIndex: number;
}

export interface SftMicroBatch extends MicroBatch {
  rows: CollatedBatch;
}

export class SftMethod implements TrainingMethod<SftMicroBatch> {
  readonly name = 'sft';
  readonly objective: SftLoss;
  readonly stateful = {};

  constructor(readonly options: SftMethodOptions) {
    this.objective = new SftLoss(options.loss);
  }

  async collate(records: ReadonlyArray<DecodedRecord<DataRecord>>): Promise<SftMicroBatch> {
    const { processor, ignoreIndex, maxLength } = this.options;
    const rows = await collateRows(
      processor,
      records.map((r) => sftSample(r as DecodedRecord<SftRecord>)),
      { ignoreIndex, maxLength },
    );
    const tokens = rowTokenCounts(rows.targets, ignoreIndex).reduce((a, b) => a + b, 0);
    return {
      ids: records.map((r) => r.record.id),
      rows,
      tokens,
      counts: { tokens: Math.max(tokens, 1) },
      dispose: () => disposeTensors(rows),
    };
  }

  loss(batch: SftMicroBatch, normalisers: LossNormalisers, mode: 'train' | 'eval'): LossResult {
    const { model } = this.options;
    return torch.tidy(() =>
      this.objective.compute({ hidden: rowsForward(model, batch.rows), targets: batch.rows.targets }, model.lmHead(), {
        mode,
        normalisers,
      }),
    );
  }
}
