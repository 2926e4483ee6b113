// GrpoConfig: TRL's GRPOConfig names and defaults in camelCase (snake_case in YAML and on the command
// line), over the shared TrainingArguments. Where TRL's value is not transformers', it says why.
// Batches count completions, as in TRL: one optimizer step reads perDeviceTrainBatchSize x
// gradientAccumulationSteps completions; one generation makes generationBatchSize of them
// (generationBatchSize / numGenerations prompts), used for stepsPerGeneration micro-batches and
// numIterations passes.
import { z } from 'zod';
import { parseConfig, type IssueFormat } from '../../util/config_error.js';
import { checkTrainingArguments, trainingArguments } from '../config.js';

const positiveInt = () => z.number().int().positive();

const { maxLength: _, ...loopFields } = trainingArguments(1e-6);

export const GrpoFields = z.strictObject({
  ...loopFields,
  /** TRL: false for GRPO (transformers' dropout stays on unless asked). */
  disableDropout: z.boolean().default(false),
  numGenerations: z.number().int().min(2).default(8),
  /** Completions per prompt in evaluation; null: numGenerations. */
  numGenerationsEval: positiveInt().nullable().default(null),
  maxCompletionLength: positiveInt().default(512),
  /**
   * Longest prompt in tokens (image tokens included); a longer one is an error naming its row, as
   * verl's truncation: error (cutting a prompt would cut its image). null: no limit (TRL now).
   */
  maxPromptLength: positiveInt().nullable().default(null),
  /** Completions per generation; null: perDeviceTrainBatchSize x stepsPerGeneration. */
  generationBatchSize: positiveInt().nullable().default(null),
  /** Micro-batches per generation; null: gradientAccumulationSteps (one generation per optimizer step). */
  stepsPerGeneration: positiveInt().nullable().default(null),
  temperature: z.number().positive().default(1),
  topP: z.number().gt(0).max(1).default(1),
  /** 0: off. */
  topK: z.number().int().min(0).default(0),
  /** KL coefficient; 0 loads no reference model (TRL). */
  beta: z.number().min(0).default(0),
  /** Passes over each generation (PPO epochs); above 1 the old policy's log-probs come from the sampling pass. */
  numIterations: positiveInt().default(1),
  epsilon: z.number().positive().default(0.2),
  /** null: epsilon (DAPO uses 0.28). */
  epsilonHigh: z.number().positive().nullable().default(null),
  delta: z.number().positive().nullable().default(null),
  /** 'sequence' is GSPO. */
  importanceSamplingLevel: z.enum(['token', 'sequence']).default('token'),
  /** TRL's default since v0.22. */
  lossType: z.enum(['grpo', 'bnpo', 'dr_grpo', 'dapo']).default('dapo'),
  /** true = 'group', false = 'none' (TRL's older boolean). */
  scaleRewards: z
    .union([z.enum(['group', 'batch', 'none']), z.boolean()])
    .default('group')
    .transform((s) => (s === true ? 'group' : s === false ? 'none' : s)),
  multiObjectiveAggregation: z.enum(['sum_then_normalize', 'normalize_then_sum']).default('sum_then_normalize'),
  maskTruncatedCompletions: z.boolean().default(false),
  /** Reward functions by registered name, or {name, options} (lib/rewards); the TypeScript API also takes functions. */
  rewardFuncs: z
    .array(
      z.union([
        z.string().min(1),
        z.strictObject({ name: z.string().min(1), options: z.record(z.string(), z.unknown()).default({}) }),
      ]),
    )
    .default([]),
  /** One per reward function; null: all 1. */
  rewardWeights: z.array(z.number()).nullable().default(null),
  /** Sampled completions to the completions jsonl and TensorBoard text at each log. */
  logCompletions: z.boolean().default(false),
  /** null: all of them. */
  numCompletionsToPrint: positiveInt().nullable().default(null),
});

type Fields = z.output<typeof GrpoFields>;

export const GrpoConfigSchema = GrpoFields.transform((c, ctx) => {
  checkTrainingArguments({ ...c, maxLength: null }, ctx);
  const issue = (key: string, message: string) => ctx.addIssue({ code: 'custom', path: [key], message });
  const sizes = generationSizes(c, issue);
  if (c.rewardWeights !== null && c.rewardFuncs.length > 0 && c.rewardWeights.length !== c.rewardFuncs.length) {
    issue(
      'rewardWeights',
      `rewardWeights has ${c.rewardWeights.length} entries but rewardFuncs has ${c.rewardFuncs.length}`,
    );
  }
  if (c.delta !== null && c.delta <= 1 + (c.epsilonHigh ?? c.epsilon)) {
    issue('delta', `delta (${c.delta}) must exceed 1 + epsilonHigh (${1 + (c.epsilonHigh ?? c.epsilon)})`);
  }
  return { ...c, ...sizes, epsilonHigh: c.epsilonHigh ?? c.epsilon };
});

// TRL's GRPOConfig.__post_init__: generationBatchSize and stepsPerGeneration, one from the other;
// a generation holds whole groups.
function generationSizes(
  c: Fields,
  issue: (key: string, message: string) => void,
): { generationBatchSize: number; stepsPerGeneration: number } {
  const micro = c.perDeviceTrainBatchSize;
  let steps = c.stepsPerGeneration;
  let size = c.generationBatchSize;
  if (size !== null && steps !== null) {
    issue('generationBatchSize', 'give generationBatchSize or stepsPerGeneration, not both');
  } else if (size !== null) {
    if (size % micro !== 0) {
      issue(
        'generationBatchSize',
        `generationBatchSize (${size}) must be divisible by perDeviceTrainBatchSize (${micro})`,
      );
    }
    steps = Math.max(1, Math.floor(size / micro));
  } else {
    steps ??= c.gradientAccumulationSteps;
    size = micro * steps;
  }
  if (steps! % c.gradientAccumulationSteps !== 0) {
    issue(
      'stepsPerGeneration',
      `stepsPerGeneration (${steps}) must be a multiple of gradientAccumulationSteps (${c.gradientAccumulationSteps}): a generation feeds whole optimizer steps`,
    );
  }
  if (size % c.numGenerations !== 0) {
    issue(
      'generationBatchSize',
      `generationBatchSize (${size}) must be divisible by numGenerations (${c.numGenerations}): a generation holds whole groups`,
    );
  }
  return { generationBatchSize: size, stepsPerGeneration: steps! };
}

export type GrpoConfig = z.output<typeof GrpoConfigSchema>;
export type GrpoConfigInput = z.input<typeof GrpoConfigSchema>;

export const grpoConfig = (input: GrpoConfigInput, format?: IssueFormat): GrpoConfig =>
  parseConfig(GrpoConfigSchema, input, 'GrpoConfig', format);
