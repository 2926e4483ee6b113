// Preference accuracy on a preference set: how often the policy's implicit DPO reward ranks the
// chosen answer above the rejected one. The reward of an answer y is r(y) = β·(log π(y|x) − log
// π_ref(y|x)), log-probs summed over the answer's tokens, as TRL's rewards/chosen and
// rewards/rejected. A pair scores 1 when r(chosen) > r(rejected), 0 when below, and 0.5 on a tie, so
// a policy equal to its reference scores exactly 0.5. TRL's rewards/accuracies counts a tie as 0
// (`(chosen_rewards > rejected_rewards).float()`), so an untrained policy reads 0 there.
//
// The log-probs come from one forward of the 2P rows (P chosen rows, then P rejected; data's
// collatePairs) through the model and the losses' sequenceLogps. The trainers' packed pair forward
// (lib/train/pair_forward.ts, prompt once per pair) lives in lib/train, which lib/eval does not
// import (train imports eval for its eval hook); the two agree within 1e-10 in float64
// (test/train/pair_forward.test.ts checks packed against separate rows).
import * as torch from '../torch/index.js';
import { LoraModel } from '../adapters/index.js';
import type { CausalLM } from '../models/index.js';
import type { Processor } from '../processing/index.js';
import { sequenceLogps } from '../losses/index.js';
import { collatePairs, type PairBatch, type ProcessorBatch } from '../data/collators.js';
import { decodeRecordImages } from '../data/images.js';
import type { PreferenceRecord } from '../data/records.js';
import { preferenceSamples } from '../data/samples.js';
import { inBatches, namingRecords, requireKind, streamRecords, type RecordSource } from './record_source.js';

/**
 * Reference log-probs known without a model (a trainer's precomputed cache): for a batch of P pairs,
 * 2P summed completion log-probs, the P chosen answers' then the P rejected answers'.
 */
export type ReferenceLogps = (records: readonly PreferenceRecord[]) => Promise<readonly number[]>;

export interface PreferenceAccuracyOptions {
  /**
   * The reference policy: a separate (frozen) model, or a LoraModel, meaning the model it wraps
   * with its adapters disabled (PEFT's reference; pass the policy's own LoraModel), or a function
   * giving the reference's log-probs of a batch (ReferenceLogps).
   */
  reference: CausalLM | LoraModel | ReferenceLogps;
  /** DPO's β (default 0.1, TRL's); scales the rewards, not the accuracy. */
  beta?: number;
  /** Pairs per forward (default 4). */
  batchSize?: number;
  /** TRL's max_length (keep_start truncation of each row); default none. */
  maxLength?: number | null;
  /** Called after each batch with the number of pairs scored so far. */
  onPairs?: (done: number) => void;
}

export interface PairReward {
  id: string;
  /** β·(log π − log π_ref) of the chosen / rejected answer. */
  chosen: number;
  rejected: number;
  /** 1, 0.5 (tie) or 0. */
  correct: number;
}

export interface PreferenceAccuracy {
  /** Mean of the pairs' `correct` (ties 0.5); NaN for no pairs. */
  accuracy: number;
  count: number;
  /** Means over pairs: TRL's rewards/chosen, rewards/rejected, rewards/margins. */
  rewardsChosen: number;
  rewardsRejected: number;
  margins: number;
  pairs: PairReward[];
}

/**
 * Preference accuracy of `policy` against `options.reference` over preference records:
 * `await evaluation.preferenceAccuracy(policy, processor, records, { reference })`.
 */
export async function preferenceAccuracy(
  policy: CausalLM,
  processor: Processor,
  records: RecordSource<PreferenceRecord>,
  options: PreferenceAccuracyOptions,
): Promise<PreferenceAccuracy> {
  const pairs: PairReward[] = [];
  for await (const batch of inBatches(streamRecords(records), options.batchSize ?? 4)) {
    pairs.push(...(await pairRewards(policy, processor, batch, options)));
    options.onPairs?.(pairs.length);
  }
  const mean = (f: (p: PairReward) => number) =>
    pairs.length === 0 ? Number.NaN : pairs.reduce((s, p) => s + f(p), 0) / pairs.length;
  return {
    accuracy: mean((p) => p.correct),
    count: pairs.length,
    rewardsChosen: mean((p) => p.chosen),
    rewardsRejected: mean((p) => p.rejected),
    margins: mean((p) => p.chosen - p.rejected),
    pairs,
  };
}

/** The rewards of one batch of pairs, in order (one forward of the policy and one of the reference). */
export async function pairRewards(
  policy: CausalLM,
  processor: Processor,
  records: readonly PreferenceRecord[],
  options: Pick<PreferenceAccuracyOptions, 'reference' | 'beta' | 'maxLength'>,
): Promise<PairReward[]> {
  const beta = options.beta ?? 0.1;
  if (!(beta > 0)) throw new RangeError(`Expected a positive number for beta but received ${beta}`);
  for (const record of records) requireKind(record, 'preference', 'preference accuracy');
  const collated = await collate(processor, records, options.maxLength ?? null);
  try {
    const logps = summedLogps(policy, collated);
    const p = records.length;
    const { reference } = options;
    const refLogps = typeof reference === 'function' ? await reference(records) : referenceLogps(reference, collated);
    if (refLogps.length !== 2 * p) {
      throw new RangeError(
        `reference log-probs: expected ${2 * p} values (chosen, then rejected) but received ${refLogps.length}`,
      );
    }
    return records.map((record, i) => {
      const chosen = beta * (logps[i]! - refLogps[i]!);
      const rejected = beta * (logps[p + i]! - refLogps[p + i]!);
      return { id: record.id, chosen, rejected, correct: chosen > rejected ? 1 : chosen === rejected ? 0.5 : 0 };
    });
  } finally {
    for (const t of [collated.inputIds, collated.attentionMask, collated.targets, collated.pixelValues]) t?.dispose();
    collated.imageGridThw?.dispose();
    collated.imageFlags?.dispose();
  }
}

async function collate(
  processor: Processor,
  records: readonly PreferenceRecord[],
  maxLength: number | null,
): Promise<PairBatch> {
  const decoded = await Promise.all(
    records.map(async (record, index) => ({ index, record, pixels: await decodeRecordImages(record) })),
  );
  const samples = decoded.map((d) => preferenceSamples(d, { eosToken: processor.tokenizer.eosToken }));
  const chosen = await namingRecords<ProcessorBatch>(records, () => processor.process(samples.map((s) => s.chosen)));
  const rejected = await namingRecords<ProcessorBatch>(records, () =>
    processor.process(samples.map((s) => s.rejected)),
  );
  try {
    return collatePairs(processor, chosen, rejected, { maxLength });
  } finally {
    for (const b of [chosen, rejected]) {
      const extras = b as { imageGridThw?: torch.Tensor | null; imageFlags?: torch.Tensor | null };
      for (const t of [b.inputIds, b.attentionMask, b.labels, b.pixelValues, extras.imageGridThw, extras.imageFlags]) {
        t?.dispose();
      }
    }
  }
}

// The reference's log-probs: its own forward, or the adapted model's with the adapters disabled.
function referenceLogps(reference: CausalLM | LoraModel, batch: PairBatch): number[] {
  if (!(reference instanceof LoraModel)) return summedLogps(reference, batch);
  return reference.withAdaptersDisabled(() => summedLogps(reference.model as CausalLM, batch));
}

// [2P] summed completion log-probs, in float64, without a graph and with dropout off.
function summedLogps(model: CausalLM, batch: PairBatch): number[] {
  const training = model.training;
  model.eval();
  try {
    return torch.noGrad(() =>
      torch.tidy(() => {
        // On the model's device (tidy disposes the copies).
        const device = model.lmHead().weight.device;
        const on = (t: torch.Tensor | null) => (t === null || t.device === device ? t : t.to({ device }));
        const { hidden } = model.forward(
          {
            inputIds: on(batch.inputIds)!,
            attentionMask: on(batch.attentionMask),
            pixelValues: on(batch.pixelValues),
            imageGridThw: on(batch.imageGridThw),
            imageFlags: on(batch.imageFlags),
          },
          { logits: false },
        );
        const logps = sequenceLogps(hidden, model.lmHead(), on(batch.targets)!);
        return Array.from(logps.to({ dtype: 'float64', device: 'cpu' }).data() as Float64Array);
      }),
    );
  } finally {
    model.train(training);
  }
}
