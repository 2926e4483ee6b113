// DPO and its family (every TRL loss type; lists + weights = MPO; rpoAlpha; both bco_pair forms).
// A micro-batch is P pairs packed one sequence per pair (lib/data/pack_pairs.ts): the prompt and
// its images run once, then chosen and rejected. The reference's summed log-probs come from a
// frozen model, the policy with adapters disabled, or the precomputed cache.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { PreferenceLoss, sequenceLogps, type LossNormalisers, type LossResult } from '../../losses/index.js';
import { usesBcoShift } from '../../losses/pair_loss.js';
import type { TrainingGroup } from '../distributed.js';
import type { CausalLM } from '../../models/index.js';
import type { Processor } from '../../processing/index.js';
import type { DecodedRecord } from '../../data/images.js';
import type { PreferenceRecord } from '../../data/records.js';
import { packPairs, type PackedPairs } from '../../data/pack_pairs.js';
import { preferenceSamples } from '../../data/samples.js';
import { pairForward } from '../pair_forward.js';
import { inputKey, pixelsPerRecord, unpaddedTokens, type ReferenceCache, type ReferencePolicy } from '../reference.js';
import type { MicroBatch, TrainingMethod } from './method.js';
import { disposeTensors, rowTokenCounts } from './rows.js';

export interface DpoMethodOptions {
  model: CausalLM;
  processor: Processor;
  /** The PreferenceLoss config (TRL's DPOConfig loss fields). */
  loss: ConstructorParameters<typeof PreferenceLoss>[0];
  maxLength: number | null;
  ignoreIndex: number;
  /** Exactly one of the two gives the reference log-probs. */
  reference: ReferencePolicy | null;
  cache: ReferenceCache | null;
}

export interface PairMicroBatch extends MicroBatch {
  packed: PackedPairs;
  pairs: number;
  /** With a reference cache: each pair's key there (a digest of its packed tokens and its pixels). */
  referenceKeys: string[] | null;
}

export class DpoMethod implements TrainingMethod<PairMicroBatch> {
  readonly name = 'dpo';
  readonly objective: PreferenceLoss;
  readonly stateful;

  constructor(readonly options: DpoMethodOptions) {
    this.objective = new PreferenceLoss(options.loss);
    this.stateful = { loss: this.objective };
  }

  async collate(records: ReadonlyArray<DecodedRecord<PreferenceRecord>>): Promise<PairMicroBatch> {
    const { processor, maxLength, ignoreIndex } = this.options;
    const samples = records.map((r) => preferenceSamples(r, { eosToken: processor.tokenizer.eosToken }));
    const chosen = await processor.process(samples.map((s) => s.chosen));
    const rejected = await processor.process(samples.map((s) => s.rejected));
    const packed = torch.tidy(() => packPairs(processor, chosen, rejected, { ignoreIndex, maxLength }));
    for (const batch of [chosen, rejected]) disposeTensors(batch);
    const pairs = records.length;
    const rowTokens = rowTokenCounts(packed.targets, ignoreIndex);
    const chosenTokens = rowTokens.slice(0, pairs).reduce((a, b) => a + b, 0);
    const rejectedTokens = rowTokens.slice(pairs).reduce((a, b) => a + b, 0);
    return {
      ids: records.map((r) => r.record.id),
      packed,
      pairs,
      referenceKeys: this.options.cache === null ? null : pairKeys(packed, records),
      tokens: chosenTokens + rejectedTokens,
      counts: { pairs, chosenTokens: Math.max(chosenTokens, 1) },
      dispose: () => disposeTensors(packed),
    };
  }

  #group: TrainingGroup | null = null;

  joinGroup(group: TrainingGroup): void {
    this.#group = group;
  }

  loss(batch: PairMicroBatch, normalisers: LossNormalisers, mode: 'train' | 'eval'): LossResult | Promise<LossResult> {
    const group = this.#group;
    if (mode === 'train' && group?.distributed && usesBcoShift(this.objective.config)) {
      return this.lossWithGlobalShift(batch, normalisers, group);
    }
    const { model } = this.options;
    return torch.tidy(() => {
      const ref = this.referenceLogps(batch);
      const policy = pairForward(model, batch.packed);
      const p = batch.pairs;
      return this.objective.compute(
        {
          hidden: policy.hidden,
          targets: policy.targets,
          refChosenLogps: ref.narrow(0, 0, p),
          refRejectedLogps: ref.narrow(0, p, p),
        },
        model.lmHead(),
        { mode, normalisers },
      );
    });
  }

  // Legacy bco_pair across ranks (TRL's RunningMoments over accelerator-gathered statistics): each
  // rank's batch-mean reward is gathered, the running mean takes all of them (one value per rank,
  // so every rank holds the same delta), and the loss then reads that delta without updating it
  // again ('eval' mode changes nothing else in PreferenceLoss). The policy forward keeps its graph
  // across the gather; its rewards come from a gradient-free pass of the LM head over it.
  private async lossWithGlobalShift(
    batch: PairMicroBatch,
    normalisers: LossNormalisers,
    group: TrainingGroup,
  ): Promise<LossResult> {
    const { model, ignoreIndex } = this.options;
    const { beta, chunkSize } = this.objective.config;
    const forward = torch.tidy(() => {
      const ref = this.referenceLogps(batch).detach();
      const policy = pairForward(model, batch.packed);
      const logps = torch.noGrad(() =>
        sequenceLogps(policy.hidden.detach(), model.lmHead(), policy.targets, { ignoreIndex, chunkSize }),
      );
      const meanReward = logps
        .sub(ref.to({ dtype: logps.dtype }))
        .mean()
        .item() as number;
      return { ref: ref.keep(), hidden: policy.hidden.keep(), targets: policy.targets.keep(), meanReward };
    });
    try {
      const means = (await group.gather([beta * forward.meanReward])).map((m) => m[0]!);
      this.objective.running.update(means);
      const p = batch.pairs;
      return torch.tidy(() =>
        this.objective.compute(
          {
            hidden: forward.hidden,
            targets: forward.targets,
            refChosenLogps: forward.ref.narrow(0, 0, p),
            refRejectedLogps: forward.ref.narrow(0, p, p),
          },
          model.lmHead(),
          { mode: 'eval', normalisers },
        ),
      );
    } finally {
      for (const t of [forward.ref, forward.hidden, forward.targets]) t.dispose();
    }
  }

  precompute(batch: PairMicroBatch): number {
    const { cache } = this.options;
    const keys = batch.referenceKeys;
    if (cache === null || keys === null) throw new Error('precompute: no reference cache');
    // Entries already cached keep their values: a batch holding a new record changes nothing else.
    const missing = keys.flatMap((key, i) => (cache.has(key, 2) ? [] : [i]));
    if (missing.length === 0) return 0;
    torch.tidy(() => {
      const logps = Array.from(this.referencePass(batch).to({ dtype: 'float64' }).data() as Float64Array);
      for (const i of missing) cache.set(keys[i]!, [logps[i]!, logps[batch.pairs + i]!]);
    });
    return missing.length;
  }

  // [2P]: the chosen rows' summed log-probs, then the rejected rows'.
  private referenceLogps(batch: PairMicroBatch): Tensor {
    const { cache } = this.options;
    if (cache === null || batch.referenceKeys === null) return this.referencePass(batch);
    const values = cache.lookup(batch.referenceKeys, 2, batch.ids);
    return torch.cat([values.select(1, 0), values.select(1, 1)]);
  }

  private referencePass(batch: PairMicroBatch): Tensor {
    const reference = this.options.reference;
    if (reference === null) throw new Error('DPO: no reference policy and no precomputed reference log-probs');
    const { ignoreIndex } = this.options;
    const chunkSize = this.objective.config.chunkSize;
    return reference.run((model, head) => {
      const { hidden, targets } = pairForward(model, batch.packed);
      return sequenceLogps(hidden, head, targets, { ignoreIndex, chunkSize });
    });
  }
}

// Pair i's key: its packed tokens (prompt, chosen, rejected after truncation), their lengths, its pixels.
function pairKeys(packed: PackedPairs, records: ReadonlyArray<DecodedRecord<PreferenceRecord>>): string[] {
  const tokens = unpaddedTokens(packed);
  const pixels = pixelsPerRecord(
    packed,
    records.map((r) => r.pixels.length),
  );
  return records.map((_, i) => {
    const layout = [packed.promptLength[i], packed.chosenLength[i], packed.rejectedLength[i]];
    return inputKey([tokens[i]!], layout, pixels[i]!);
  });
}
