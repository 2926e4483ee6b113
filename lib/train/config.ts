// Trainer configs: Hugging Face TrainingArguments and TRL's DPOConfig / KTOConfig / SFTConfig names
// and defaults in camelCase (snake_case in YAML and on the command line). As TRL's base_config.py,
// every default that differs from transformers' says why. The method configs spread the loss
// schemas' fields (lib/losses/config.ts) instead of declaring them again.
import { z } from 'zod';
import {
  KtoLossConfigSchema,
  normalizePreferenceLoss,
  PreferenceLossFields,
  SftLossConfigSchema,
} from '../losses/config.js';
import { parseConfig, type IssueFormat } from '../util/config_error.js';
import { METRICS } from '../eval/metrics.js';

const positiveInt = () => z.number().int().positive();

/**
 * Not transformers names (its Seq2Seq `predict_with_generate` has no VQA metrics): a generation
 * evaluation at each eval hook, greedy answers to the recipe's eval_generation_dataset scored by
 * evalMetric (lib/eval's metrics), logged as eval_<metric> and eval_<metric>/<data_source>.
 */
const generationEvalArguments = {
  /** null (default): no generation evaluation. */
  evalMetric: z.enum(METRICS).nullable().default(null),
  /** The longest answer in tokens (`vlalign eval`'s default). */
  evalMaxNewTokens: positiveInt().default(128),
  /** Prompts decoded together; null: perDeviceEvalBatchSize. */
  evalGenerationBatchSize: positiveInt().nullable().default(null),
  /** Keep special tokens in the answers (InternVL's `<box>` for refcoco_iou). */
  evalKeepSpecialTokens: z.boolean().default(false),
  /**
   * Each evaluation writes every answer (id, prediction, score, reference, data_source) to
   * outputDir/eval_predictions-<step>.jsonl, atomically, rank 0 alone.
   */
  evalSavePredictions: z.boolean().default(false),
};

/**
 * Not a TRL name (DPO / MPO and the KTO family): at each eval hook, the preference accuracy of the
 * policy against the reference on the eval dataset (ties 0.5; TRL's rewards/accuracies counts them
 * 0), as eval_preference_accuracy. KTO's unpaired rows pair up by prompt (lib/eval/unpaired_preference.ts).
 */
const preferenceEvalArguments = { evalPreferenceAccuracy: z.boolean().default(false) };

/** The fields every method shares; learningRate's default is the method's (see trainingArguments). */
export function trainingArguments(learningRate: number) {
  return {
    outputDir: z.string().min(1),
    overwriteOutputDir: z.boolean().default(false),
    perDeviceTrainBatchSize: positiveInt().default(8),
    perDeviceEvalBatchSize: positiveInt().default(8),
    gradientAccumulationSteps: positiveInt().default(1),
    /**
     * Not a transformers name: samples per optimizer step over all ranks. Set, it fixes the global
     * batch for any world size: gradientAccumulationSteps becomes global / (perDeviceTrainBatchSize x
     * world size), which must divide. null (default): TRL's semantics, the global batch is
     * perDeviceTrainBatchSize x gradientAccumulationSteps x world size and grows with the world size.
     */
    globalBatchSize: positiveInt().nullable().default(null),
    /**
     * transformers' name: DDP looks for parameters a step did not reach. null (default) means true
     * here, because a micro-batch without images never reaches the vision tower. false skips the
     * extra graph walk when every step reaches every trainable parameter (libtorch then warns only
     * if that assumption breaks).
     */
    ddpFindUnusedParameters: z.boolean().nullable().default(null),
    /**
     * DeepSpeed's name, read with several ranks: 0 (default) DDP; 1 shards the optimizer state, 2 the
     * gradients too, 3 the parameters too, each block gathered inside its forward (lib/train/zero_step.ts,
     * lib/distributed/zero.ts; the ranks run in lockstep: docs/training.md).
     */
    zeroStage: z.number().int().min(0).max(3, 'zero_stage: DeepSpeed has stages 0 to 3').default(0),
    /** TRL: 1e-6 for DPO / KTO, 2e-5 for SFT (transformers: 5e-5). */
    learningRate: z.number().positive().default(learningRate),
    weightDecay: z.number().min(0).default(0),
    adamBeta1: z.number().min(0).lt(1).default(0.9),
    adamBeta2: z.number().min(0).lt(1).default(0.999),
    adamEpsilon: z.number().positive().default(1e-8),
    maxGradNorm: z.number().min(0).default(1),
    numTrainEpochs: z.number().positive().default(3),
    /** > 0 overrides numTrainEpochs. */
    maxSteps: z.number().int().min(-1).default(-1),
    /** The schedules lib/optim/schedule.ts implements. */
    lrSchedulerType: z.enum(['linear', 'cosine', 'constant']).default('linear'),
    warmupRatio: z.number().min(0).max(1).default(0),
    warmupSteps: z.number().int().min(0).default(0),
    optim: z.enum(['adamw_torch', 'adamw_torch_fused', 'sgd']).default('adamw_torch'),
    /** TRL: 10 (transformers: 500), so short preference runs show their curves. */
    loggingSteps: positiveInt().default(10),
    loggingFirstStep: z.boolean().default(false),
    /** TensorBoard event folder; null: outputDir/runs. */
    loggingDir: z.string().nullable().default(null),
    /**
     * transformers' default 'all' means every installed integration; TensorBoard is the only one here.
     * The metrics jsonl is written whatever this says.
     */
    reportTo: z
      .union([z.enum(['tensorboard', 'none']), z.array(z.enum(['tensorboard', 'none']))])
      .default(['tensorboard'])
      .transform((r) => (typeof r === 'string' ? [r] : r)),
    saveStrategy: z.enum(['steps', 'epoch', 'no']).default('steps'),
    saveSteps: positiveInt().default(500),
    saveTotalLimit: positiveInt().nullable().default(null),
    saveOnlyModel: z.boolean().default(false),
    evalStrategy: z.enum(['no', 'steps', 'epoch']).default('no'),
    /** null: loggingSteps (transformers). */
    evalSteps: positiveInt().nullable().default(null),
    ...generationEvalArguments,
    seed: z.number().int().min(0).default(42),
    /** The data order's seed; null: seed. */
    dataSeed: z.number().int().min(0).nullable().default(null),
    /**
     * Mixed precision: compute in bfloat16, float32 master weights and optimizer state (DeepSpeed
     * bf16; lib/train/precision.ts has the table against torch_dtype). TRL: true. Here false:
     * training is CPU-first, where bfloat16 matmuls are slow without AMX and lose the float32
     * precision the checks rely on; without it the weights train in the recipe's torch_dtype.
     */
    bf16: z.boolean().default(false),
    /** transformers' float16 AMP; not supported (no loss scaling): true is an error that says so. */
    fp16: z.boolean().default(false),
    /** TRL: true (transformers: false): activations of long image prompts dominate memory. */
    gradientCheckpointing: z.boolean().default(true),
    /** A checkpoint folder, or true for the latest checkpoint-N of outputDir. */
    resumeFromCheckpoint: z.union([z.string(), z.boolean()]).nullable().default(null),
    /** TRL: dropout off in the policy (and reference), so log-ratios are deterministic. */
    disableDropout: z.boolean().default(true),
    /** Not a transformers name: records read and decoded ahead of the step; null: 2 x batch size. */
    dataloaderPrefetch: positiveInt().nullable().default(null),
    /** Not a transformers name: the final save writes the merged model instead of the adapter. */
    saveMerged: z.boolean().default(false),
    /** VL-RLHF's freeze_vision_tower (Qwen2-VL visual.* but the merger; InternVL vision_model.*). */
    freezeVisionTower: z.boolean().default(false),
    /** InternVL's freeze_backbone: the vision backbone (InternVL vision_model.*; Qwen2-VL visual.* but the merger). */
    freezeBackbone: z.boolean().default(false),
    /** InternVL's freeze_llm: the language model including lm_head. */
    freezeLlm: z.boolean().default(false),
    /** InternVL's freeze_mlp: the projector (InternVL mlp1.*; Qwen2-VL visual.merger.*). */
    freezeMlp: z.boolean().default(false),
    /** TRL: 1024 tokens per sequence; null: no truncation. */
    maxLength: positiveInt().nullable().default(1024),
  };
}

/** The shared fields with DPO / KTO's learning rate (TRL's base_config). */
export const TrainingArgumentsSchema = z.strictObject(trainingArguments(1e-6));
export type TrainingArguments = z.output<typeof TrainingArgumentsSchema>;

type Ctx = z.RefinementCtx;
const issue = (ctx: Ctx, key: string, message: string): void => ctx.addIssue({ code: 'custom', path: [key], message });

// Checks that span fields, each naming both values.
export function checkTrainingArguments(c: TrainingArguments, ctx: z.RefinementCtx): void {
  if (c.warmupSteps > 0 && c.warmupRatio > 0) {
    issue(ctx, 'warmupSteps', `give warmupSteps (${c.warmupSteps}) or warmupRatio (${c.warmupRatio}), not both`);
  }
  if (c.fp16) {
    const message = c.bf16
      ? 'bf16 and fp16 are both true; at most one can be (transformers refuses it too)'
      : 'fp16 mixed precision (float16 with loss scaling) is not supported; use bf16';
    issue(ctx, 'fp16', message);
  }
  if (c.resumeFromCheckpoint === '') issue(ctx, 'resumeFromCheckpoint', 'expected a folder or true but received ""');
  if (c.evalSavePredictions && c.evalMetric === null) {
    const message = 'writes the answers eval_metric scores: set eval_metric and eval_generation_dataset';
    issue(ctx, 'evalSavePredictions', message);
  }
}

const reference = {
  precomputeRefLogProbs: z.boolean().default(false),
  /** null: perDeviceTrainBatchSize. */
  precomputeRefBatchSize: positiveInt().nullable().default(null),
  maxPromptLength: positiveInt().nullable().default(null),
  maxCompletionLength: positiveInt().nullable().default(null),
};

function checkLengths(c: { maxLength: number | null; maxPromptLength: number | null }, ctx: Ctx): void {
  if (c.maxLength !== null && c.maxPromptLength !== null && c.maxPromptLength >= c.maxLength) {
    issue(ctx, 'maxPromptLength', `maxPromptLength (${c.maxPromptLength}) must be below maxLength (${c.maxLength})`);
  }
}

const DpoFields = z.strictObject({
  ...trainingArguments(1e-6),
  ...PreferenceLossFields.shape,
  ...reference,
  ...preferenceEvalArguments,
});

export const DpoConfigSchema = DpoFields.transform((c, ctx) => {
  checkTrainingArguments(c, ctx);
  checkLengths(c, ctx);
  return normalizePreferenceLoss(c, ctx);
});

const KtoFields = z.strictObject({
  ...trainingArguments(1e-6),
  ...KtoLossConfigSchema.shape,
  ...reference,
  ...preferenceEvalArguments,
});

export const KtoConfigSchema = KtoFields.transform((c, ctx) => {
  checkTrainingArguments(c, ctx);
  checkLengths(c, ctx);
  // The KL reference point pairs each prompt with another row's completion in the same batch.
  if (c.lossType === 'kto' && c.perDeviceTrainBatchSize < 2) {
    issue(
      ctx,
      'perDeviceTrainBatchSize',
      `lossType 'kto' needs perDeviceTrainBatchSize > 1 (the KL term rolls completions within the batch) but it is ${c.perDeviceTrainBatchSize}`,
    );
  }
  return c;
});

const SftFields = z.strictObject({
  ...trainingArguments(2e-5),
  ...SftLossConfigSchema.shape,
  /** null: completion-only for prompt-completion rows, the whole sequence for language-modelling rows (TRL). */
  completionOnlyLoss: z.boolean().nullable().default(null),
});

export const SftConfigSchema = SftFields.transform((c, ctx) => {
  checkTrainingArguments(c, ctx);
  return c;
});

export type DpoConfig = z.output<typeof DpoConfigSchema>;
export type DpoConfigInput = z.input<typeof DpoConfigSchema>;
export type KtoConfig = z.output<typeof KtoConfigSchema>;
export type KtoConfigInput = z.input<typeof KtoConfigSchema>;
export type SftConfig = z.output<typeof SftConfigSchema>;
export type SftConfigInput = z.input<typeof SftConfigSchema>;

export const CONFIG_SCHEMAS = { sft: SftConfigSchema, dpo: DpoConfigSchema, kto: KtoConfigSchema } as const;
/** The object schemas before their checks: their `.shape` lists each method's keys and defaults. */
export const CONFIG_FIELDS = { sft: SftFields, dpo: DpoFields, kto: KtoFields } as const;

export const dpoConfig = (input: DpoConfigInput, format?: IssueFormat): DpoConfig =>
  parseConfig(DpoConfigSchema, input, 'DpoConfig', format);
export const ktoConfig = (input: KtoConfigInput, format?: IssueFormat): KtoConfig =>
  parseConfig(KtoConfigSchema, input, 'KtoConfig', format);
export const sftConfig = (input: SftConfigInput, format?: IssueFormat): SftConfig =>
  parseConfig(SftConfigSchema, input, 'SftConfig', format);
