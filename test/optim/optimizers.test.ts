// AdamW and SGD against their textbook updates written out in float64 JS, parameter groups and
// per-parameter step counts, and exact resumption from a saved optimizer + scheduler file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { AdamW, LRScheduler, SGD, loadOptimizer, saveOptimizer } from '../../lib/optim/index.js';

const dir = mkdtempSync(join(tmpdir(), 'vlalign-optim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const param = (values: number[]): Tensor => torch.tensor(values, { dtype: 'float32' }).requiresGrad_(true).keep();
const setGrad = (p: Tensor, values: number[]): void => {
  p.grad = torch.tensor(values, { dtype: 'float32' });
};
const values = (p: Tensor): number[] => p.detach().toArray() as number[];

// AdamW in float64 for one scalar: returns the new (p, m, v).
function adamw(
  p: number,
  g: number,
  m: number,
  v: number,
  t: number,
  o: { lr: number; b1: number; b2: number; eps: number; wd: number },
) {
  p *= 1 - o.lr * o.wd;
  m = o.b1 * m + (1 - o.b1) * g;
  v = o.b2 * v + (1 - o.b2) * g * g;
  const mh = m / (1 - o.b1 ** t);
  const vh = v / (1 - o.b2 ** t);
  return { p: p - (o.lr * mh) / (Math.sqrt(vh) + o.eps), m, v };
}

describe('AdamW', () => {
  it('follows the decoupled-weight-decay update over several steps, per group, with per-parameter step counts', () => {
    const a = param([0.5, -1.25, 2]);
    const b = param([3, -0.75]);
    const opt = new AdamW(
      [
        { params: [a], lr: 0.1 },
        { params: [b], lr: 0.01, weightDecay: 0 },
      ],
      { weightDecay: 0.1 },
    );
    const ref = { a: [0.5, -1.25, 2].map((p) => ({ p, m: 0, v: 0 })), b: [3, -0.75].map((p) => ({ p, m: 0, v: 0 })) };
    let bSteps = 0;
    for (let step = 1; step <= 5; step++) {
      const ga = [0.3 * step, -0.2, 0.05 * step * step];
      setGrad(a, ga);
      ref.a = ref.a.map((s, i) =>
        adamw(s.p, ga[i]!, s.m, s.v, step, { lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 }),
      );
      if (step % 2 === 1) {
        // b only has a gradient on odd steps: its own count runs 1, 2, 3
        const gb = [1 - step, 0.5];
        setGrad(b, gb);
        bSteps++;
        ref.b = ref.b.map((s, i) =>
          adamw(s.p, gb[i]!, s.m, s.v, bSteps, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0 }),
        );
      } else b.grad = null;
      opt.step();
    }
    values(a).forEach((x, i) => expect(x).toBeCloseTo(ref.a[i]!.p, 5));
    values(b).forEach((x, i) => expect(x).toBeCloseTo(ref.b[i]!.p, 5));
    expect(opt.state.get(b)!.step).toBe(3);
    opt.disposeState();
  });

  it('rejects bad hyper-parameters naming the group and option, and shared parameters', () => {
    const p = param([1]);
    expect(() => new AdamW([p], { beta1: 1 })).toThrow(/parameter group 0: expected a number in \[0, 1\) for beta1/);
    expect(() => new AdamW([{ params: [p] }, { params: [p] }])).toThrow(/more than one group/);
  });
});

describe('SGD', () => {
  it('momentum, dampening and weight decay follow torch.optim.SGD; Nesterov too', () => {
    for (const nesterov of [false, true]) {
      const p = param([1, -2]);
      const o = { lr: 0.1, momentum: 0.9, dampening: nesterov ? 0 : 0.1, weightDecay: 0.01, nesterov };
      const opt = new SGD([p], o);
      let ref = [1, -2];
      let buf: number[] | null = null;
      for (let step = 1; step <= 4; step++) {
        const g = [0.5 * step, -1 / step];
        setGrad(p, g);
        const d = g.map((x, i) => x + o.weightDecay * ref[i]!);
        buf = buf === null ? d : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * d[i]!);
        const dir = nesterov ? d.map((x, i) => x + o.momentum * buf![i]!) : buf;
        ref = ref.map((x, i) => x - o.lr * dir[i]!);
        opt.step();
      }
      values(p).forEach((x, i) => expect(x).toBeCloseTo(ref[i]!, 5));
      opt.disposeState();
    }
  });
});

describe('saveOptimizer / loadOptimizer', () => {
  it('resuming from the file continues exactly as the uninterrupted run', async () => {
    const grads = (step: number) => [[Math.sin(step), 0.1 * step], [Math.cos(step)]];
    const run = (opt: AdamW, sched: LRScheduler, ps: Tensor[], from: number, to: number) => {
      for (let s = from; s < to; s++) {
        ps.forEach((p, i) => setGrad(p, grads(s)[i]!));
        opt.step();
        sched.step();
      }
    };
    const make = () => {
      const ps = [param([1, 2]), param([-3])];
      const groups = [{ params: [['w', ps[0]!] as const] }, { params: [['b', ps[1]!] as const], lr: 0.05 }];
      const opt = new AdamW(groups, { lr: 0.1 });
      return { ps, opt, sched: new LRScheduler(opt, { name: 'cosine', totalSteps: 10, warmupSteps: 2 }) };
    };
    const whole = make();
    run(whole.opt, whole.sched, whole.ps, 0, 6);
    const first = make();
    run(first.opt, first.sched, first.ps, 0, 3);
    const file = join(dir, 'optimizer.safetensors');
    await saveOptimizer(file, first.opt, first.sched);
    const resumed = make();
    resumed.ps.forEach((p, i) => torch.noGrad(() => p.copy_(first.ps[i]!)));
    await loadOptimizer(file, resumed.opt, resumed.sched);
    run(resumed.opt, resumed.sched, resumed.ps, 3, 6);
    resumed.ps.forEach((p, i) => expect(p.equal(whole.ps[i]!)).toBe(true));
    expect(resumed.sched.lastLr).toEqual(whole.sched.lastLr);
    const sgd = new SGD([['w', param([0])]]);
    await expect(loadOptimizer(file, sgd as never)).rejects.toThrow(/holds AdamW state, not SGD/);
  });

  // Three LoRA-like parameters, two of one shape, so a positional load would misplace state silently.
  const loraGrads = (step: number): Record<string, number[]> => ({
    'q.lora_A': [Math.sin(step), 0.3],
    'v.lora_A': [0.2 * step, -Math.cos(step)],
    'q.lora_B': [0.1 * step, 1, -0.5],
  });
  const loraParams = (): Record<string, Tensor> => ({
    'q.lora_A': param([1, 2]),
    'v.lora_A': param([-1, 0.5]),
    'q.lora_B': param([0, 0, 3]),
  });
  const stepAll = (opt: AdamW, ps: Record<string, Tensor>, from: number, to: number): void => {
    for (let s = from; s < to; s++) {
      for (const [name, p] of Object.entries(ps)) setGrad(p, loraGrads(s)[name]!);
      opt.step();
    }
  };

  it('state follows the parameter names when the trainable parameters come in another order', async () => {
    const whole = loraParams();
    const wholeOpt = new AdamW(Object.entries(whole), { lr: 0.1 });
    stepAll(wholeOpt, whole, 0, 6);
    const first = loraParams();
    const firstOpt = new AdamW(Object.entries(first), { lr: 0.1 });
    stepAll(firstOpt, first, 0, 3);
    const file = join(dir, 'reordered.safetensors');
    await saveOptimizer(file, firstOpt);
    // Resumed with the order reversed, as when disabling an adapter changes which parameters come first.
    const resumed = loraParams();
    for (const [name, p] of Object.entries(resumed)) torch.noGrad(() => p.copy_(first[name]!));
    const resumedOpt = new AdamW(Object.entries(resumed).reverse(), { lr: 0.1 });
    await loadOptimizer(file, resumedOpt);
    for (const name of Object.keys(first)) {
      const moment = (opt: AdamW, p: Tensor): Tensor => opt.state.get(p)!.expAvg as Tensor;
      expect(moment(resumedOpt, resumed[name]!).equal(moment(firstOpt, first[name]!))).toBe(true);
    }
    stepAll(resumedOpt, resumed, 3, 6);
    for (const name of Object.keys(whole)) expect(resumed[name]!.equal(whole[name]!)).toBe(true);
    for (const o of [wholeOpt, firstOpt, resumedOpt]) o.disposeState();
  });

  it('lists every missing, unexpected and misshapen name in one error naming the file; nothing changes', async () => {
    const saved = loraParams();
    const savedOpt = new AdamW(Object.entries(saved), { lr: 0.1 });
    stepAll(savedOpt, saved, 0, 1);
    const file = join(dir, 'mismatch.safetensors');
    await saveOptimizer(file, savedOpt);
    const other = { 'q.lora_A': param([1, 2, 3]), 'q.lora_B': param([0, 0, 3]), 'k.lora_A': param([1, 2]) };
    const otherOpt = new AdamW(Object.entries(other), { lr: 0.5 });
    stepAll(otherOpt, { 'q.lora_B': other['q.lora_B'] }, 0, 1);
    const before = (otherOpt.state.get(other['q.lora_B'])!.expAvg as Tensor).toArray();
    const error = await loadOptimizer(file, otherOpt).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(new RegExp(`^${file}: the saved state does not fit this optimizer:\n`));
    expect(
      error?.message
        .split('\n')
        .slice(1)
        .map((line) => line.trim())
        .sort(),
    ).toEqual([
      "missing parameter 'k.lora_A' [2]",
      "parameter 'q.lora_A' [3]: state 'expAvg' has shape [2]",
      "parameter 'q.lora_A' [3]: state 'expAvgSq' has shape [2]",
      "unexpected parameter 'v.lora_A'",
    ]);
    expect((otherOpt.state.get(other['q.lora_B'])!.expAvg as Tensor).toArray()).toEqual(before);
    expect(otherOpt.paramGroups[0]!.lr).toBe(0.5);
    for (const o of [savedOpt, otherOpt]) o.disposeState();
  });

  it('refuses an optimizer built from unnamed tensors, naming the file', async () => {
    const file = join(dir, 'unnamed.safetensors');
    const unnamed = new AdamW([param([1])]);
    const keyedByName = new RegExp(`^${file}: optimizer files are keyed by parameter name`);
    await expect(saveOptimizer(file, unnamed)).rejects.toThrow(keyedByName);
    expect(() => new AdamW([['a', param([1])], param([2])] as never)).toThrow(/mixes named and unnamed/);
    expect(
      () =>
        new AdamW([
          ['a', param([1])],
          ['a', param([2])],
        ]),
    ).toThrow(/parameter name 'a' appears twice/);
  });
});
