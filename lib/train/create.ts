// createTrainer: a policy, its processor, data and a method config in; the loop's parts out (the
// method with its reference, the optimizer over the trainable parameters, the schedule).
import os from 'node:os';
import path from 'node:path';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { CausalLM } from '../models/index.js';
import type { LoraModel } from '../adapters/index.js';
import { LayerNorm } from '../nn/index.js';
import { AdamW, LRScheduler, SGD, type GroupOptions, type Optimizer, type ScheduleName } from '../optim/index.js';
import type { Processor } from '../processing/index.js';
import { DataLoader } from '../data/loader.js';
import { describeSource, type DataRecord, type PromptRecord, type RecordDataset } from '../data/records.js';
import type { DpoConfig, KtoConfig, SftConfig } from './config.js';
import { trainingSteps, type LoopArgs } from './loop_args.js';
import { DpoMethod } from './methods/dpo.js';
import { KtoMethod } from './methods/kto.js';
import type { TrainingMethod } from './methods/method.js';
import { SftMethod } from './methods/sft.js';
import {
  ReferenceCache,
  adapterReference,
  frozenReference,
  policyReference,
  referenceModelKey,
  type ReferencePolicy,
} from './reference.js';
import { resolveRewards, type RewardSpec } from '../rewards/index.js';
import type { GrpoConfig } from './grpo/config.js';
import type { Sampler } from './grpo/generation.js';
import { GrpoMethod } from './grpo/method.js';
import { applyPrecision } from './precision.js';
import { Trainer } from './trainer.js';
import { accumulationFor, rankPlace } from './distributed.js';
import { evalHookOf } from './eval_hook.js';
import type { RecordSource } from '../eval/record_source.js';

export type TrainerMethod = 'sft' | 'dpo' | 'kto' | 'grpo';

export interface TrainerInit {
  method: TrainerMethod;
  args: SftConfig | DpoConfig | KtoConfig | GrpoConfig;
  /** grpo: reward functions (TRL's signature) or registered names; default: args.rewardFuncs by name. */
  rewards?: readonly RewardSpec[];
  /** grpo: where completions come from; default: the shared-prefill rollout. */
  sampler?: Sampler;
  /** The policy; with PEFT, adapters already injected (`adapter` is their LoraModel). */
  model: CausalLM;
  processor: Processor;
  /** Checkpoints then hold the adapter; the reference is the policy with adapters disabled. */
  adapter?: LoraModel;
  /** A separate frozen reference (TRL's ref_model). */
  refModel?: CausalLM | null;
  /** The policy's checkpoint folder: the reference cache key, and the tokenizer files of the final save. */
  modelPath?: string;
  trainDataset: RecordDataset;
  evalDataset?: RecordDataset | null;
  /** Prompts answered greedily at each evaluation and scored by args.evalMetric (eval_hook.ts). */
  evalGenerationDataset?: RecordSource<PromptRecord> | null;
}

/** Where precomputed reference log-probs live across runs (VLALIGN_CACHE, else ~/.cache/vlalign). */
export function referenceCacheDir(): string {
  return path.join(process.env.VLALIGN_CACHE ?? path.join(os.homedir(), '.cache', 'vlalign'), 'ref_logps');
}

export function createTrainer(init: TrainerInit): Trainer {
  const place = rankPlace();
  const args = withAccumulation(init, place.worldSize);
  init = { ...init, args: args as TrainerInit['args'] };
  // The same seed on every rank: the same initial weights (DDP also broadcasts rank 0's).
  torch.manualSeed(args.seed);
  // Precision first: the reference cache's key reads the dtypes the run computes in.
  const optimizer = applyPrecision(init, optimizerOf(args, init.model, trainableParameters(init)));
  const precompute = init.method !== 'sft' && args.precomputeRefLogProbs === true;
  const cache = precompute ? referenceCacheOf(init) : null;
  const method = methodOf(init, cache);
  // Before any data is read: a missing eval dataset or reference fails here, naming the key.
  const evalHook = evalHookOf(init);
  // This rank's share of an epoch: the schedule's length is the same on every rank.
  const samples = new DataLoader(init.trainDataset, { batchSize: args.perDeviceTrainBatchSize, seed: 0, ...place })
    .samplesPerEpoch;
  const totalSteps = trainingSteps(args, samples, method.rollouts);
  const scheduler = new LRScheduler(optimizer, {
    name: args.lrSchedulerType as ScheduleName,
    totalSteps,
    warmupSteps: args.warmupSteps,
    warmupRatio: args.warmupRatio,
  });
  return new Trainer({
    args,
    method,
    model: init.model,
    processor: init.processor,
    adapter: init.adapter,
    optimizer,
    scheduler,
    trainDataset: init.trainDataset,
    evalDataset: init.evalDataset ?? null,
    evalHook,
    modelPath: init.modelPath,
    beforeTraining:
      cache === null
        ? undefined
        : (trainer) => precomputeReference(trainer, method, cache, [init.trainDataset, init.evalDataset]),
  });
}

// global_batch_size: the accumulation that keeps it at this world size (GRPO sizes its steps by
// generations, so there it must stay unset).
function withAccumulation(init: TrainerInit, worldSize: number): LoopArgs & Partial<DpoConfig & KtoConfig> {
  const args = init.args as LoopArgs & Partial<DpoConfig & KtoConfig> & { globalBatchSize?: number | null };
  if ((args.globalBatchSize ?? null) === null) return args;
  if (init.method === 'grpo') {
    throw new TypeError(
      'global_batch_size: not for grpo, whose steps are sized by generation_batch_size / steps_per_generation',
    );
  }
  return { ...args, gradientAccumulationSteps: accumulationFor(args, worldSize) };
}

function methodOf(init: TrainerInit, cache: ReferenceCache | null): TrainingMethod {
  const { model, processor } = init;
  const args = init.args as SftConfig & DpoConfig & KtoConfig;
  const common = { model, processor, maxLength: args.maxLength, ignoreIndex: args.ignoreIndex };
  switch (init.method) {
    case 'sft':
      return new SftMethod({ ...common, loss: args as SftConfig });
    case 'dpo':
      return new DpoMethod({ ...common, loss: args as DpoConfig, reference: referenceOf(init), cache });
    case 'kto':
      return new KtoMethod({ ...common, loss: args as KtoConfig, reference: referenceOf(init), cache });
    case 'grpo': {
      const config = init.args as GrpoConfig;
      return new GrpoMethod({
        model,
        processor,
        config,
        rewards: resolveRewards(init.rewards ?? config.rewardFuncs),
        reference: config.beta > 0 ? referenceOf(init) : null,
        ignoreIndex: -100,
        ...(init.sampler ? { sampler: init.sampler } : {}),
      }) as unknown as TrainingMethod;
    }
  }
}

// A separate model, else the policy with adapters disabled, else (a full fine-tune whose reference
// is precomputed) the policy itself before its first step.
function referenceOf(init: TrainerInit): ReferencePolicy {
  if (init.refModel) return frozenReference(init.refModel);
  if (init.adapter) return adapterReference(init.model, init.adapter);
  if ((init.args as DpoConfig).precomputeRefLogProbs) return policyReference(init.model);
  throw new TypeError(
    `${init.method}: a full fine-tune needs a reference: give refModel (a frozen copy), train adapters ` +
      '(the reference is the policy with adapters disabled), or set precompute_ref_log_probs',
  );
}

function referenceCacheOf(init: TrainerInit): ReferenceCache {
  const args = init.args as DpoConfig;
  const source = init.refModel ?? init.model;
  const settings = {
    method: init.method,
    maxLength: args.maxLength,
    adapters: init.refModel ? null : 'disabled',
    bf16: args.bf16,
  };
  const modelPath = init.refModel ? undefined : init.modelPath;
  return new ReferenceCache(referenceCacheDir(), referenceModelKey(source, modelPath, settings));
}

// Every record's reference log-probs not yet cached, batch by batch, appended to the cache file as it
// goes (every few seconds, and at the end). Augmented records are refused before any forward. With
// several ranks each computes every entry (the same values) and rank 0 alone writes the file.
async function precomputeReference(
  trainer: Trainer,
  method: TrainingMethod,
  cache: ReferenceCache,
  datasets: ReadonlyArray<RecordDataset | null | undefined>,
): Promise<void> {
  const batchSize = (trainer.args as Partial<DpoConfig>).precomputeRefBatchSize ?? trainer.args.perDeviceTrainBatchSize;
  const present = datasets.filter((d): d is RecordDataset => d !== null && d !== undefined);
  for (const dataset of present) await uncounted(dataset, () => refuseAugmented(dataset));
  let saved = Date.now();
  try {
    for (const dataset of present) {
      const loader = new DataLoader<DataRecord>(dataset, { batchSize, seed: 0, shuffle: false });
      await uncounted(dataset, async () => {
        for await (const loaded of loader.epoch(0)) {
          const batch = await method.collate(loaded.records);
          try {
            method.precompute!(batch);
          } finally {
            batch.dispose();
          }
          if (trainer.isMainProcess && Date.now() - saved > SAVE_EVERY_MS) {
            cache.save();
            saved = Date.now();
          }
        }
      });
    }
  } finally {
    if (trainer.isMainProcess) cache.save();
  }
}

// Runs a pass over `dataset` before training without adding to its bad-row count: training reads the
// same rows again and counts each bad one once.
async function uncounted(dataset: RecordDataset, pass: () => Promise<void>): Promise<void> {
  const { count, examples } = dataset.badRows;
  const kept = examples.length;
  try {
    await pass();
  } finally {
    dataset.badRows.count = count;
    examples.length = kept;
  }
}

const SAVE_EVERY_MS = 10_000;

// InternVL's data_augment re-encodes images at a random quality per epoch: the reference would score
// other images than training sees.
async function refuseAugmented(dataset: RecordDataset): Promise<void> {
  for (let i = 0; i < dataset.length; i++) {
    const record = await dataset.get(i);
    if (record?.augment !== true) continue;
    throw new Error(
      `${describeSource(record.source)}: precompute_ref_log_probs with data_augment: the reference would ` +
        'score other images than training sees; turn one of them off',
    );
  }
}

// Adapter weights with PEFT, else every parameter left trainable (freezing happens before).
function trainableParameters(init: TrainerInit): Array<[string, Tensor]> {
  if (init.adapter) return init.adapter.trainableParameters();
  return [...init.model.namedParameters()].filter(([, p]) => p.requiresGrad);
}

// transformers' two groups (Trainer.get_decay_parameter_names): the parameters of LayerNorm modules,
// and those whose lower-cased name says bias, layernorm, rmsnorm, a `norm` path component or a
// `_norm` suffix, are not decayed. An RMSNorm named `norm1` or `ln_q` (Qwen2.5-VL's vision blocks
// and merger) is decayed, as in transformers.
const NO_DECAY_NAMES = [/bias/, /layernorm/, /rmsnorm/, /(?:^|\.)norm(?:$|\.)/, /_norm(?:$|\.)/];

function parameterGroups(model: CausalLM, named: Array<[string, Tensor]>, weightDecay: number) {
  const inLayerNorm = new Set<Tensor>();
  for (const [, module] of model.namedModules()) {
    if (module instanceof LayerNorm) for (const p of module.parameters()) inLayerNorm.add(p);
  }
  const decayed = ([name, p]: [string, Tensor]): boolean =>
    !inLayerNorm.has(p) && !NO_DECAY_NAMES.some((pattern) => pattern.test(name.toLowerCase()));
  return [
    { params: named.filter(decayed), weightDecay },
    { params: named.filter((n) => !decayed(n)), weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}

function optimizerOf(args: LoopArgs, model: CausalLM, named: Array<[string, Tensor]>): Optimizer<GroupOptions> {
  if (named.length === 0) throw new Error('nothing to train: every parameter is frozen');
  const groups = parameterGroups(model, named, args.weightDecay);
  const lr = args.learningRate;
  switch (args.optim) {
    case 'adamw_torch':
    case 'adamw_torch_fused':
      return new AdamW(groups, { lr, beta1: args.adamBeta1, beta2: args.adamBeta2, eps: args.adamEpsilon });
    case 'sgd':
      return new SGD(groups, { lr });
    default:
      throw new TypeError(`optim: expected adamw_torch, adamw_torch_fused or sgd but received ${args.optim}`);
  }
}
