// LR schedules at chosen steps against transformers' formulas, and global-norm clipping against
// the norm computed by hand.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { LRScheduler, clipGradNorm_, lrMultiplier, Optimizer, type GroupOptions } from '../../lib/optim/index.js';

class Plain extends Optimizer<GroupOptions> {
  protected validate(): void {}
  step(): void {}
}

describe('schedules', () => {
  it('linear warmup then linear decay to 0 (get_linear_schedule_with_warmup)', () => {
    const o = { name: 'linear' as const, totalSteps: 100, warmupSteps: 10 };
    expect([0, 5, 10, 55, 100, 120].map((s) => lrMultiplier(o, s))).toEqual([0, 0.5, 1, 0.5, 0, 0]);
  });

  it('cosine after warmup follows 0.5 (1 + cos(π progress))', () => {
    const o = { name: 'cosine' as const, totalSteps: 110, warmupSteps: 10 };
    expect(lrMultiplier(o, 60)).toBeCloseTo(0.5, 12);
    expect(lrMultiplier(o, 35)).toBeCloseTo(0.5 * (1 + Math.cos(Math.PI * 0.25)), 12);
    expect(lrMultiplier(o, 110)).toBeCloseTo(0, 12);
  });

  it('warmup ratio rounds up as transformers does; constant stays 1 after warmup', () => {
    const o = { name: 'constant' as const, totalSteps: 95, warmupRatio: 0.1 }; // ceil(9.5) = 10
    expect([0, 9, 10, 94].map((s) => lrMultiplier(o, s))).toEqual([0, 0.9, 1, 1]);
    expect(() => lrMultiplier({ name: 'constant', totalSteps: 10, warmupSteps: 2, warmupRatio: 0.1 }, 0)).toThrow(
      /not both/,
    );
  });

  it('the scheduler drives each group from its base lr and resumes from its state', () => {
    const [a, b] = [torch.zeros([2]), torch.zeros([3])];
    const opt = new Plain(
      [
        { params: [a], lr: 1 },
        { params: [b], lr: 0.1 },
      ],
      { lr: 1 },
    );
    const sched = new LRScheduler(opt, { name: 'linear', totalSteps: 10, warmupSteps: 2 });
    expect(sched.lastLr).toEqual([0, 0]);
    sched.step();
    expect(sched.lastLr).toEqual([0.5, 0.05]);
    for (let i = 0; i < 4; i++) sched.step();
    const saved = sched.stateDict();
    const opt2 = new Plain(
      [
        { params: [a], lr: 1 },
        { params: [b], lr: 0.1 },
      ],
      { lr: 1 },
    );
    const resumed = new LRScheduler(opt2, { name: 'linear', totalSteps: 10, warmupSteps: 2 });
    resumed.loadStateDict(saved);
    expect(resumed.lastLr).toEqual(sched.lastLr);
    sched.step();
    resumed.step();
    expect(resumed.lastLr).toEqual(sched.lastLr);
    expect(sched.lastLr[0]).toBeCloseTo((10 - 6) / 8, 12);
  });
});

describe('clipGradNorm_', () => {
  it('scales every gradient by maxNorm / (norm + 1e-6) when the global norm exceeds maxNorm', () => {
    torch.tidy(() => {
      const p = [torch.zeros([2], { requiresGrad: true }), torch.zeros([2], { requiresGrad: true })];
      p[0]!.grad = torch.tensor([3, 0], { dtype: 'float32' });
      p[1]!.grad = torch.tensor([0, 4], { dtype: 'float32' });
      const total = clipGradNorm_(p, 1);
      expect(total).toBeCloseTo(5, 6);
      const scale = 1 / (5 + 1e-6);
      expect(p[0]!.grad!.toArray()[0]).toBeCloseTo(3 * scale, 6);
      expect(p[1]!.grad!.toArray()[1]).toBeCloseTo(4 * scale, 6);
      expect(clipGradNorm_(p, 10)).toBeCloseTo(1, 5); // below the limit: unchanged
      expect(p[1]!.grad!.toArray()[1]).toBeCloseTo(4 * scale, 6);
    });
  });

  it('supports the infinity norm and rejects a non-positive limit', () => {
    torch.tidy(() => {
      const p = torch.zeros([3], { requiresGrad: true });
      p.grad = torch.tensor([1, -6, 2], { dtype: 'float32' });
      expect(clipGradNorm_([p], 3, Infinity)).toBe(6);
      expect(p.grad!.toArray()[1]).toBeCloseTo(-3, 5);
      expect(() => clipGradNorm_([p], 0)).toThrow(/positive maxNorm/);
    });
  });
});
