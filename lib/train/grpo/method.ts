// GRPO / GSPO as an online method of the one training loop. Each generation: the prompts processed
// once each, numGenerations completions per prompt from one shared prefill, rewards, group
// advantages, then micro-batches of packed groups for stepsPerGeneration x numIterations / GA
// optimizer steps (TRL's buffering). The loss is GrpoLoss on a training-mode forward of the packed
// groups; the old policy's log-probs are the sampling pass's when the policy moves before their
// last use, else the current policy's, detached (ratio 1, as TRL); the reference's (beta > 0) are
// computed once per generation.
import * as torch from '../../torch/index.js';
import { GrpoLoss, tokenLogps, type LossNormalisers, type LossResult, type MetricTotals } from '../../losses/index.js';
import type { CausalLM } from '../../models/index.js';
import type { Processor } from '../../processing/index.js';
import type { DecodedRecord } from '../../data/images.js';
import { describeSource, type DataRecord, type PromptRecord } from '../../data/records.js';
import type { NamedReward, RewardFailure } from '../../rewards/index.js';
import { groupForward } from '../group_forward.js';
import type { Generation, RolloutPlan, TrainingMethod } from '../methods/method.js';
import type { ReferencePolicy } from '../reference.js';
import type { TrainingGroup } from '../distributed.js';
import type { GrpoConfig } from './config.js';
import { sampleAndScore, type Sampler, type ScoredGeneration } from './generation.js';
import { microBatches, type GrpoMicroBatch } from './micro_batches.js';
import { disposePrompts, encodePrompts, type EncodedPrompt } from './prompts.js';
import { validationTotals } from './validation.js';

export interface GrpoMethodOptions {
  model: CausalLM;
  processor: Processor;
  config: GrpoConfig;
  rewards: readonly NamedReward[];
  /** Needed when config.beta > 0: a frozen model, or the policy with its adapters disabled. */
  reference: ReferencePolicy | null;
  ignoreIndex: number;
  /** A reward that throws or returns NaN (scored 0; the step goes on). Default: a line on stderr. */
  onRewardFailure?: (failure: RewardFailure) => void;
  /** Completions from elsewhere (an external engine, fixed ones); default: the shared-prefill rollout. */
  sampler?: Sampler;
}

export class GrpoMethod implements TrainingMethod<GrpoMicroBatch> {
  readonly name = 'grpo';
  readonly objective: GrpoLoss;
  readonly stateful = {};
  readonly rollouts: RolloutPlan<GrpoMicroBatch>;
  readonly #options: GrpoMethodOptions;

  constructor(options: GrpoMethodOptions) {
    const c = options.config;
    if (c.beta > 0 && options.reference === null) {
      throw new TypeError(`grpo: beta ${c.beta} needs a reference (refModel, or adapters to disable)`);
    }
    if (options.rewards.length === 0) throw new TypeError('grpo: no reward functions (reward_funcs)');
    this.#options = options;
    this.objective = new GrpoLoss({
      lossType: c.lossType,
      beta: c.beta,
      epsilon: c.epsilon,
      epsilonHigh: c.epsilonHigh,
      delta: c.delta,
      importanceSamplingLevel: c.importanceSamplingLevel,
      temperature: c.temperature,
      maxCompletionLength: c.maxCompletionLength,
      ignoreIndex: options.ignoreIndex,
    });
    this.rollouts = {
      promptsPerGeneration: c.generationBatchSize / c.numGenerations,
      stepsPerGeneration: (c.numIterations * c.stepsPerGeneration) / c.gradientAccumulationSteps,
      generate: (records, step) => this.#generate(records, step),
      restore: (records, state) => this.#restore(records, state),
      evaluate: (records) => this.#evaluate(records),
    };
  }

  // Each rank generates for its own prompts (the loader's shard) and a prompt's whole group stays on
  // its rank, so group-relative advantages are those of one process. Batch-wide statistics (scale
  // over the batch, normalize_then_sum's batch z-score) would need the ranks' rewards gathered
  // first; they are refused rather than computed over one rank's share.
  joinGroup(group: TrainingGroup): void {
    const c = this.#options.config;
    if (!group.distributed) return;
    if (c.scaleRewards === 'batch' || c.multiObjectiveAggregation === 'normalize_then_sum') {
      throw new Error(
        `grpo: scale_rewards '${c.scaleRewards}' with multi_objective_aggregation '${c.multiObjectiveAggregation}' ` +
          `normalises over the whole batch, which distributed training (world size ${group.worldSize}) does not gather ` +
          "yet; use scale_rewards 'group' or 'none' with sum_then_normalize",
      );
    }
  }

  collate(): Promise<GrpoMicroBatch> {
    throw new Error('grpo: micro-batches come from generations (rollouts.generate), not from collate');
  }

  loss(batch: GrpoMicroBatch, normalisers: LossNormalisers, mode: 'train' | 'eval'): LossResult {
    const { model } = this.#options;
    return torch.tidy(() => {
      const { hidden, targets } = groupForward(model, batch.packed);
      return this.objective.compute(
        {
          hidden,
          targets,
          advantages: batch.advantages,
          ...(batch.oldLogps === null ? {} : { oldLogps: batch.oldLogps }),
          ...(batch.refLogps === null ? {} : { refLogps: batch.refLogps }),
        },
        model.lmHead(),
        { normalisers, mode },
      );
    });
  }

  async #generate(
    records: ReadonlyArray<DecodedRecord<DataRecord>>,
    step: number,
  ): Promise<Generation<GrpoMicroBatch>> {
    const { model, processor, config, rewards } = this.#options;
    const prompts = await encodePrompts(processor, promptRecords(records), config.maxPromptLength);
    try {
      const scored = await sampleAndScore(
        {
          model,
          processor,
          config,
          rewards,
          ...(config.rewardWeights === null ? {} : { rewardWeights: config.rewardWeights }),
          trainerState: { global_step: step },
          onRewardFailure: this.#options.onRewardFailure ?? reportFailure,
        },
        prompts,
        this.#options.sampler,
      );
      return this.#build(prompts, scored);
    } catch (error) {
      disposePrompts(prompts);
      throw error;
    }
  }

  async #restore(
    records: ReadonlyArray<DecodedRecord<DataRecord>>,
    state: unknown,
  ): Promise<Generation<GrpoMicroBatch>> {
    const { processor, config } = this.#options;
    const scored = checkState(state, records.length * config.numGenerations);
    const prompts = await encodePrompts(processor, promptRecords(records), config.maxPromptLength);
    return this.#build(prompts, scored);
  }

  // numGenerationsEval completions per prompt with the training sampling settings, scored (no loss).
  async #evaluate(records: ReadonlyArray<DecodedRecord<DataRecord>>): Promise<MetricTotals> {
    const { model, processor, config, rewards } = this.#options;
    const prompts = await encodePrompts(processor, promptRecords(records), config.maxPromptLength);
    try {
      const numGenerations = config.numGenerationsEval ?? config.numGenerations;
      return await validationTotals(
        {
          model,
          processor,
          config: { ...config, numGenerations },
          rewards,
          ...(config.rewardWeights === null ? {} : { rewardWeights: config.rewardWeights }),
          onRewardFailure: this.#options.onRewardFailure ?? reportFailure,
        },
        prompts,
        this.#options.sampler,
      );
    } finally {
      disposePrompts(prompts);
    }
  }

  // Micro-batches (reference log-probs filled when beta > 0) and the optimizer steps' windows: the
  // generation's stepsPerGeneration micro-batches in groups of GA, numIterations times over.
  #build(prompts: EncodedPrompt[], scored: ScoredGeneration): Generation<GrpoMicroBatch> {
    const { processor, config, ignoreIndex } = this.#options;
    const ga = config.gradientAccumulationSteps;
    const batches = microBatches(processor, prompts, scored, {
      size: config.perDeviceTrainBatchSize,
      keepOldLogps: config.numIterations > 1 || config.stepsPerGeneration > ga,
      maskTruncated: config.maskTruncatedCompletions,
      ignoreIndex,
    });
    try {
      if (config.beta > 0) for (const batch of batches) this.#referenceLogps(batch);
    } catch (error) {
      for (const b of batches) b.release();
      disposePrompts(prompts);
      throw error;
    }
    const windows: GrpoMicroBatch[][] = [];
    for (let iteration = 0; iteration < config.numIterations; iteration++) {
      for (let start = 0; start < batches.length; start += ga) windows.push(batches.slice(start, start + ga));
    }
    const shown = config.numCompletionsToPrint ?? scored.table.length;
    return {
      windows,
      metrics: scored.metrics,
      table: scored.table.slice(0, shown),
      state: () => scored,
      release: () => {
        for (const b of batches) b.release();
        disposePrompts(prompts);
      },
    };
  }

  #referenceLogps(batch: GrpoMicroBatch): void {
    const { reference, config } = this.#options;
    batch.refLogps = reference!.run((model, head) =>
      torch
        .tidy(() =>
          tokenLogps(groupForward(model, batch.packed).hidden, head, batch.packed.targets, {
            temperature: config.temperature,
          }),
        )
        .keep(),
    );
  }
}

function promptRecords(records: ReadonlyArray<DecodedRecord<DataRecord>>): Array<DecodedRecord<PromptRecord>> {
  for (const r of records) {
    if (r.record.kind !== 'prompt') {
      throw new TypeError(
        `${describeSource(r.record.source)}: grpo samples its completions and needs prompt-only rows (formats verl, hf_disk, trl_prompt), not ${r.record.kind} rows`,
      );
    }
  }
  return records as Array<DecodedRecord<PromptRecord>>;
}

function reportFailure(failure: RewardFailure): void {
  process.stderr.write(
    `vlalign: reward ${failure.name} failed on completion ${failure.index} (scored 0): ${failure.message}\n`,
  );
}

// A generation saved in a checkpoint: the completions and advantages must be there, one per sample.
function checkState(state: unknown, completions: number): ScoredGeneration {
  const s = state as Partial<ScoredGeneration> | null;
  if (!Array.isArray(s?.completions) || !Array.isArray(s.advantages) || s.completions.length !== completions) {
    throw new TypeError(
      `grpo: the checkpoint's open generation does not match its prompts (expected ${completions} completions)`,
    );
  }
  return { metrics: {}, table: [], ...s } as ScoredGeneration;
}
