// groupAdvantages against values worked out by hand from TRL's formulas (GRPOTrainer's
// _generate_and_score_completions): nan-aware means, Bessel-corrected stds, eps 1e-4, NaN → 0.
import { describe, expect, it } from 'vitest';
import { groupAdvantages } from '../../../lib/train/grpo/advantages.js';

const EPS = 1e-4;
const close = (actual: number[], expected: number[]) =>
  actual.forEach((a, i) => expect(a, `entry ${i}`).toBeCloseTo(expected[i]!, 12));

describe('groupAdvantages: sum_then_normalize', () => {
  const base = { weights: [1], aggregation: 'sum_then_normalize' as const };

  it('scale_rewards group: (R - group mean) / (group std + 1e-4); a flat group gets 0 and counts as zero std', () => {
    // Group [1, 0]: mean 0.5, std sqrt((0.25 + 0.25) / 1). Group [2, 2]: std 0.
    const r = groupAdvantages([[1], [0], [2], [2]], { ...base, numGenerations: 2, scaleRewards: 'group' });
    const s = Math.SQRT1_2;
    close(r.advantages, [0.5 / (s + EPS), -0.5 / (s + EPS), 0, 0]);
    expect(r.zeroStd).toEqual([false, false, true, true]);
    close(r.rewards, [1, 0, 2, 2]);
  });

  it('scale_rewards batch: group means, one std over the whole batch', () => {
    // Batch [1, 0, 2, 2]: mean 1.25, squared deviations 0.0625 + 1.5625 + 0.5625 + 0.5625 = 2.75, / 3.
    const std = Math.sqrt(2.75 / 3);
    const r = groupAdvantages([[1], [0], [2], [2]], { ...base, numGenerations: 2, scaleRewards: 'batch' });
    close(r.advantages, [0.5 / (std + EPS), -0.5 / (std + EPS), 0, 0]);
    expect(r.zeroStd).toEqual([false, false, false, false]);
  });

  it('scale_rewards none: centred only', () => {
    const r = groupAdvantages([[1], [0], [3], [2]], { ...base, numGenerations: 2, scaleRewards: 'none' });
    close(r.advantages, [0.5, -0.5, 0.5, -0.5]);
  });

  it('weights, a null reward (NaN) skipped by nansum, an unscorable completion left out of the baseline and set to 0', () => {
    // Weights [1, 0.5]: R = [1 + 0.5·2, 0 + (NaN skipped), unscorable] = [2, 0, NaN].
    // Group mean over the scored two: 1; std sqrt((1 + 1) / 1) = sqrt(2).
    const r = groupAdvantages(
      [
        [1, 2],
        [0, Number.NaN],
        [Number.NaN, Number.NaN],
      ],
      { weights: [1, 0.5], aggregation: 'sum_then_normalize', numGenerations: 3, scaleRewards: 'group' },
    );
    close(r.advantages, [1 / (Math.SQRT2 + EPS), -1 / (Math.SQRT2 + EPS), 0]);
    expect(r.rewards[0]).toBe(2);
    expect(r.rewards[1]).toBe(0);
    expect(r.rewards[2]).toBeNaN();
  });

  it('one scored completion in a group: its std is NaN, so its advantage is 0', () => {
    const r = groupAdvantages([[4], [Number.NaN]], { ...base, numGenerations: 2, scaleRewards: 'group' });
    expect(r.advantages).toEqual([0, 0]);
    expect(r.zeroStd).toEqual([false, false]);
  });
});

describe('groupAdvantages: normalize_then_sum', () => {
  it('z-scores each function within its group, sums with the weights, then z-scores over the batch', () => {
    // f0 groups [1, 3] (mean 2, std sqrt 2) and [5, 5] (std 0); f1 groups [10, 10] and [0, 4] (mean 2, std sqrt 8).
    const a = 1 / (Math.SQRT2 + EPS);
    const c = 2 * (2 / (Math.sqrt(8) + EPS)); // weight 2 times f1's z-score
    const summed = [-a, a, -c, c]; // mean 0
    const std = Math.sqrt((2 * a * a + 2 * c * c) / 3);
    const r = groupAdvantages(
      [
        [1, 10],
        [3, 10],
        [5, 0],
        [5, 4],
      ],
      { weights: [1, 2], aggregation: 'normalize_then_sum', numGenerations: 2, scaleRewards: 'group' },
    );
    close(
      r.advantages,
      summed.map((s) => s / (std + EPS)),
    );
    // The logged reward is the plain weighted sum, whatever the aggregation.
    close(r.rewards, [21, 23, 5, 13]);
  });
});

describe('groupAdvantages: errors', () => {
  it('names the mismatch', () => {
    const options = { weights: [1], aggregation: 'sum_then_normalize' as const, scaleRewards: 'group' as const };
    expect(() => groupAdvantages([[1], [2], [3]], { ...options, numGenerations: 2 })).toThrow(/3 completions .* 2/);
    expect(() => groupAdvantages([[1, 2]], { ...options, numGenerations: 1 })).toThrow(/completion 0 has 2 rewards/);
  });
});
