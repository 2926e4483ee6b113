// GrpoConfig: TRL's GRPOConfig defaults (grpo_config.py) and its __post_init__ rules for the
// generation sizes, with errors that name the key.
import { describe, expect, it } from 'vitest';
import { grpoConfig } from '../../../lib/train/grpo/config.js';

const base = { outputDir: '/tmp/out' };

describe('grpoConfig', () => {
  it("has TRL's defaults", () => {
    const c = grpoConfig(base);
    expect(c).toMatchObject({
      learningRate: 1e-6,
      numGenerations: 8,
      maxCompletionLength: 512,
      temperature: 1,
      topP: 1,
      topK: 0,
      beta: 0,
      numIterations: 1,
      epsilon: 0.2,
      epsilonHigh: 0.2,
      delta: null,
      importanceSamplingLevel: 'token',
      lossType: 'dapo',
      scaleRewards: 'group',
      multiObjectiveAggregation: 'sum_then_normalize',
      maskTruncatedCompletions: false,
      disableDropout: false,
      // per_device_train_batch_size 8 x steps_per_generation = gradient_accumulation_steps 1.
      stepsPerGeneration: 1,
      generationBatchSize: 8,
    });
    expect('maxLength' in c).toBe(false);
  });

  it('derives generationBatchSize from stepsPerGeneration and back', () => {
    const a = grpoConfig({ ...base, perDeviceTrainBatchSize: 4, gradientAccumulationSteps: 2, numGenerations: 4 });
    expect([a.stepsPerGeneration, a.generationBatchSize]).toEqual([2, 8]);
    const b = grpoConfig({ ...base, perDeviceTrainBatchSize: 4, generationBatchSize: 16, numGenerations: 8 });
    expect([b.stepsPerGeneration, b.generationBatchSize]).toEqual([4, 16]);
    expect(grpoConfig({ ...base, scaleRewards: false }).scaleRewards).toBe('none');
    expect(grpoConfig({ ...base, scaleRewards: true }).scaleRewards).toBe('group');
    expect(grpoConfig({ ...base, epsilonHigh: 0.28 }).epsilonHigh).toBe(0.28);
  });

  it('refuses sizes TRL refuses, naming the key', () => {
    expect(() => grpoConfig({ ...base, generationBatchSize: 16, stepsPerGeneration: 2 })).toThrow(
      /generationBatchSize/,
    );
    expect(() => grpoConfig({ ...base, perDeviceTrainBatchSize: 4, generationBatchSize: 10 })).toThrow(
      /generationBatchSize \(10\) must be divisible by perDeviceTrainBatchSize \(4\)/,
    );
    expect(() => grpoConfig({ ...base, perDeviceTrainBatchSize: 6, numGenerations: 4 })).toThrow(
      /generationBatchSize \(6\) must be divisible by numGenerations \(4\)/,
    );
    expect(() => grpoConfig({ ...base, numGenerations: 1 })).toThrow(/numGenerations/);
    expect(() => grpoConfig({ ...base, rewardFuncs: ['a', 'b'], rewardWeights: [1] })).toThrow(/rewardWeights has 1/);
    expect(() => grpoConfig({ ...base, gradientAccumulationSteps: 2, stepsPerGeneration: 3 })).toThrow(
      /stepsPerGeneration \(3\) must be a multiple of gradientAccumulationSteps \(2\)/,
    );
    expect(() => grpoConfig({ ...base, numGeneration: 4 } as never)).toThrow(/numGenerations/);
  });
});
