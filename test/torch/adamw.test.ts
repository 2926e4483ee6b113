// The fused AdamW step against the textbook update in plain JS float64 and against Python's
// torch.optim.AdamW (same initial values and gradients over 5 steps).
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
import { runPython } from '../peers/python.js';
import { rng } from './gradcheck.js';
import { EPS32 } from '../tolerance.js';

const options = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };

function series(n: number, seed: number, scale = 1): number[] {
  const next = rng(seed);
  return Array.from({ length: n }, () => Math.fround((next() * 2 - 1) * scale));
}

// Gradients for step s of tensor k, the same in JS and Python.
const gradsAt = (sizes: number[], step: number): number[][] => sizes.map((n, k) => series(n, 1000 * step + k, 0.5));

function textbook(p0: number[][], sizes: number[], steps: number, o = options): number[][] {
  const p = p0.map((t) => [...t]);
  const m = sizes.map((n) => new Array<number>(n).fill(0));
  const v = sizes.map((n) => new Array<number>(n).fill(0));
  for (let t = 1; t <= steps; t++) {
    const g = gradsAt(sizes, t);
    p.forEach((pk, k) =>
      pk.forEach((_, i) => {
        const gi = g[k]![i]!;
        pk[i]! *= 1 - o.lr * o.weightDecay;
        m[k]![i] = o.beta1 * m[k]![i]! + (1 - o.beta1) * gi;
        v[k]![i] = o.beta2 * v[k]![i]! + (1 - o.beta2) * gi * gi;
        const mHat = m[k]![i]! / (1 - o.beta1 ** t);
        const vHat = v[k]![i]! / (1 - o.beta2 ** t);
        pk[i] = pk[i]! - (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
      }),
    );
  }
  return p;
}

function fused(p0: number[][], sizes: number[], steps: number, dtype: 'float32' | 'bfloat16' = 'float32'): number[][] {
  return torch.tidy(() => {
    const params = p0.map((t) => torch.tensor(Float32Array.from(t)).to(dtype).requiresGrad_(true));
    const m = sizes.map((n) => torch.zeros(n));
    const v = sizes.map((n) => torch.zeros(n));
    for (let t = 1; t <= steps; t++) {
      const grads = gradsAt(sizes, t).map((g) => torch.tensor(Float32Array.from(g)).to(dtype));
      torch.adamwStep_(params, grads, m, v, { ...options, step: t });
    }
    return params.map((p) => Array.from(p.to('float32').data() as Float32Array));
  });
}

const maxRel = (a: number[][], b: number[][]): number =>
  Math.max(...a.flatMap((t, k) => t.map((x, i) => Math.abs(x - b[k]![i]!) / Math.max(1e-3, Math.abs(b[k]![i]!)))));

describe('adamwStep_', () => {
  const sizes = [1, 15, 16, 1000, 70001];
  const p0 = sizes.map((n, k) => series(n, k + 1));

  it('follows the textbook AdamW update (float64 in JS) over 5 steps', () => {
    // Elementwise, no reductions: a step rounds p a few times (<= ~1.5·eps·|p|) and the update
    // (|update| <= ~lr) ~10 times through m and v (<= ~5·eps·lr); allow about twice that.
    const steps = 5;
    const [got, ref] = [fused(p0, sizes, steps), textbook(p0, sizes, steps)];
    got.forEach((t, k) =>
      t.forEach((x, i) =>
        expect(Math.abs(x - ref[k]![i]!)).toBeLessThanOrEqual(
          4 * steps * EPS32 * (Math.abs(ref[k]![i]!) + 2 * options.lr),
        ),
      ),
    );
  });

  it('updates bfloat16 parameters with float32 state', () => {
    // From the bf16-rounded start; each step rounds p to bf16 (8 bits of mantissa: within 2^-8·|p_t|),
    // |p_t| <= |p_3| + (3 - t)·lr, and bf16 gradients move each update by ~2^-8·lr: 3·2^-8·(|p_3| + 3·lr).
    const start = torch.tidy(() =>
      p0.map((t) => Array.from(torch.tensor(Float32Array.from(t)).to('bfloat16').to('float32').data() as Float32Array)),
    );
    const ref = textbook(start, sizes, 3);
    const got = fused(p0, sizes, 3, 'bfloat16');
    got.forEach((t, k) =>
      t.forEach((x, i) =>
        expect(Math.abs(x - ref[k]![i]!)).toBeLessThanOrEqual(3 * 2 ** -8 * (Math.abs(ref[k]![i]!) + 3 * options.lr)),
      ),
    );
  });

  it('skips parameters without a gradient and validates its arguments', () => {
    torch.tidy(() => {
      const p = torch.ones(4);
      const other = torch.ones(3);
      torch.adamwStep_(
        [p, other],
        [null, torch.ones(3)],
        [torch.zeros(4), torch.zeros(3)],
        [torch.zeros(4), torch.zeros(3)],
        { ...options, step: 1 },
      );
      expect(Array.from(p.data() as Float32Array)).toEqual([1, 1, 1, 1]);
      expect((other.data() as Float32Array)[0]).toBeLessThan(1);
      expect(() =>
        torch.adamwStep_([p], [torch.ones(5)], [torch.zeros(4)], [torch.zeros(4)], { ...options, step: 1 }),
      ).toThrow(/must have one shape/);
      expect(() =>
        torch.adamwStep_([p], [torch.ones(4)], [torch.zeros(4)], [torch.zeros(4)], { ...options, step: 0 }),
      ).toThrow(/options.step/);
      expect(() => torch.adamwStep_([p], [], [], [], { ...options, step: 1 })).toThrow(/1 params need as many grads/);
    });
  });

  it('matches torch.optim.AdamW in Python over 5 steps', () => {
    const steps = 5;
    const grads = Array.from({ length: steps }, (_, s) => gradsAt(sizes, s + 1));
    const script = `
import json, sys, torch
data = json.load(sys.stdin)
params = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in data['p0']]
opt = torch.optim.AdamW(params, lr=${options.lr}, betas=(${options.beta1}, ${options.beta2}), eps=${options.eps}, weight_decay=${options.weightDecay})
for step in data['grads']:
    for p, g in zip(params, step):
        p.grad = torch.tensor(g, dtype=torch.float32)
    opt.step()
print(json.dumps([p.detach().tolist() for p in params]))
`;
    const out = runPython(script, { input: JSON.stringify({ p0, grads }) });
    const expected = JSON.parse(out.toString()) as number[][];
    const got = fused(p0, sizes, steps);
    expect(maxRel(got, expected)).toBeLessThan(1e-6);
    // In fact bit for bit: the kernel keeps ATen's roundings (optim_rows.h).
    expect(got).toEqual(expected);
  });
});
