// Trainer configs: TRL / transformers defaults, snake_case input, unknown keys with suggestions,
// cross-field checks with both values, and the loss schema's normalisation reused.
import { describe, expect, it } from 'vitest';
import {
  DpoConfigSchema,
  KtoConfigSchema,
  SftConfigSchema,
  dpoConfig,
  ktoConfig,
  sftConfig,
} from '../../lib/train/config.js';
import { PreferenceLossConfigSchema } from '../../lib/losses/config.js';
import { toCamelKeys } from '../../lib/util/case.js';
import type { ConfigError } from '../../lib/util/config_error.js';

const messageOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    return (error as ConfigError).message;
  }
  throw new Error('expected a throw');
};

describe('defaults', () => {
  it("are transformers' TrainingArguments with TRL's overrides", () => {
    const c = dpoConfig({ outputDir: 'out' });
    // Values from transformers' TrainingArguments and TRL's base_config / DPOConfig (trl_peft.md §1.1).
    expect(c).toMatchObject({
      overwriteOutputDir: false,
      perDeviceTrainBatchSize: 8,
      perDeviceEvalBatchSize: 8,
      gradientAccumulationSteps: 1,
      learningRate: 1e-6,
      weightDecay: 0,
      adamBeta1: 0.9,
      adamBeta2: 0.999,
      adamEpsilon: 1e-8,
      maxGradNorm: 1,
      numTrainEpochs: 3,
      maxSteps: -1,
      lrSchedulerType: 'linear',
      warmupRatio: 0,
      warmupSteps: 0,
      optim: 'adamw_torch',
      loggingSteps: 10,
      loggingFirstStep: false,
      loggingDir: null,
      reportTo: ['tensorboard'],
      saveStrategy: 'steps',
      saveSteps: 500,
      saveTotalLimit: null,
      evalStrategy: 'no',
      evalSteps: null,
      seed: 42,
      bf16: false,
      fp16: false,
      gradientCheckpointing: true,
      resumeFromCheckpoint: null,
      disableDropout: true,
      maxLength: 1024,
      beta: 0.1,
      lossType: ['sigmoid'],
      lossWeights: [1],
      labelSmoothing: 0,
      fDivergenceType: 'reverse_kl',
      fAlphaDivergenceCoef: 0.5,
      precomputeRefLogProbs: false,
      precomputeRefBatchSize: null,
      maxPromptLength: null,
      freezeVisionTower: false,
      freezeBackbone: false,
      freezeLlm: false,
      freezeMlp: false,
    });
    expect(sftConfig({ outputDir: 'o' })).toMatchObject({
      learningRate: 2e-5,
      maxLength: 1024,
      completionOnlyLoss: null,
    });
    expect(ktoConfig({ outputDir: 'o' })).toMatchObject({
      learningRate: 1e-6,
      lossType: 'kto',
      desirableWeight: 1,
      undesirableWeight: 1,
      maxLength: 1024,
    });
  });

  it('the loss fields come out as the loss schema makes them', () => {
    const loss = { lossType: 'sigmoid,bco_pair', lossWeights: [0.8, 0.2], trlVersion: 'legacy' as const, rpoAlpha: 1 };
    const full = dpoConfig({ outputDir: 'o', ...loss });
    const alone = PreferenceLossConfigSchema.parse(loss);
    for (const [key, value] of Object.entries(alone)) expect(full[key as keyof typeof full]).toEqual(value);
    expect(full.lossType).toEqual(['sigmoid', 'bco_pair']);
    expect(full.bcoRunningMean).toBe(true);
  });
});

describe('input', () => {
  it('snake_case keys map onto the camelCase fields', () => {
    const yaml = { output_dir: 'o', per_device_train_batch_size: 4, adam_beta2: 0.98, f_alpha_divergence_coef: 0.3 };
    const c = DpoConfigSchema.parse(toCamelKeys(yaml));
    expect([c.perDeviceTrainBatchSize, c.adamBeta2, c.fAlphaDivergenceCoef]).toEqual([4, 0.98, 0.3]);
    expect(SftConfigSchema.parse({ outputDir: 'o', reportTo: 'none' }).reportTo).toEqual(['none']);
  });

  it('unknown keys are errors naming the nearest valid key', () => {
    const input = toCamelKeys({ output_dir: 'o', learning_rat: 1e-5 }) as never;
    expect(messageOf(() => dpoConfig(input, { keyCase: 'snake' }))).toBe(
      "DpoConfig: invalid learning_rat: unknown key (did you mean 'learning_rate'?)",
    );
    expect(messageOf(() => sftConfig({ outputDir: 'o', beta: 0.1 } as never))).toMatch(/invalid beta: unknown key/);
  });

  it('cross-field checks name both values', () => {
    expect(messageOf(() => dpoConfig({ outputDir: 'o', warmupSteps: 10, warmupRatio: 0.1 }))).toContain(
      'give warmupSteps (10) or warmupRatio (0.1), not both',
    );
    expect(messageOf(() => dpoConfig({ outputDir: 'o', lossType: ['sigmoid', 'sft'], lossWeights: [1] }))).toContain(
      'lossWeights has 1 entries but lossType has 2',
    );
    expect(messageOf(() => dpoConfig({ outputDir: 'o', maxLength: 64, maxPromptLength: 64 }))).toContain(
      'maxPromptLength (64) must be below maxLength (64)',
    );
    expect(messageOf(() => ktoConfig({ outputDir: 'o', perDeviceTrainBatchSize: 1 }))).toContain(
      "lossType 'kto' needs perDeviceTrainBatchSize > 1",
    );
    expect(KtoConfigSchema.safeParse({ outputDir: 'o', perDeviceTrainBatchSize: 1, lossType: 'bco' }).success).toBe(
      true,
    );
    expect(messageOf(() => dpoConfig({ outputDir: 'o', saveSteps: 0 }))).toMatch(/invalid saveSteps: Too small/);
    expect(messageOf(() => dpoConfig({ outputDir: 'o', warmupRatio: 1.5 }))).toMatch(/invalid warmupRatio/);
    expect(messageOf(() => dpoConfig({} as never))).toMatch(/invalid outputDir/);
  });

  it('bf16 with fp16 is refused as transformers refuses it; fp16 alone says it is not supported', () => {
    expect(messageOf(() => dpoConfig({ outputDir: 'o', bf16: true, fp16: true }))).toContain(
      'invalid fp16: bf16 and fp16 are both true; at most one can be',
    );
    expect(messageOf(() => sftConfig({ outputDir: 'o', fp16: true }))).toContain(
      'fp16 mixed precision (float16 with loss scaling) is not supported; use bf16',
    );
    expect(dpoConfig({ outputDir: 'o', bf16: true }).bf16).toBe(true);
  });
});
