// Shared helpers of the loss tests: deterministic data, plain-JS scalar math, tensor <-> array
// conversion, and the eager per-token log-probs written with the tensor API (the independent
// reference the loss modules are checked against).
import { expect } from 'vitest';
import { torch } from '../../lib/index.js';
import { rng } from '../torch/gradcheck.js';

export type Tensor = torch.Tensor;
export { rng };

export const IGNORE = -100;

/** n uniform values in [lo, hi). */
export function uniform(next: () => number, n: number, lo = -1, hi = 1): Float64Array {
  const out = new Float64Array(n);
  for (let k = 0; k < n; k++) out[k] = lo + (hi - lo) * next();
  return out;
}

export const f64 = (values: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor =>
  torch.tensor(Float64Array.from(values), { dtype: 'float64', shape, requiresGrad });

export const f32 = (values: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor =>
  torch.tensor(Float32Array.from(values), { dtype: 'float32', shape, requiresGrad });

export const long = (values: ArrayLike<number>, shape: readonly number[]): Tensor =>
  torch.tensor(
    BigInt64Array.from(Array.from(values), (v) => BigInt(v)),
    { shape },
  );

/** A tensor's elements as plain float64 numbers. */
export const arr = (t: Tensor): number[] =>
  Array.from(t.detach().to({ dtype: 'float64' }).contiguous().data() as Float64Array);

export const num = (t: Tensor): number => Number(t.item());

// ---- plain-JS scalar math ----------------------------------------------------------------------

export const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
export const logsig = (x: number): number => (x < 0 ? x - Math.log1p(Math.exp(x)) : -Math.log1p(Math.exp(-x)));
export const mean = (a: readonly number[]): number => a.reduce((s, v) => s + v, 0) / a.length;
export const sum = (a: readonly number[]): number => a.reduce((s, v) => s + v, 0);

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) {
    const d = Math.abs(a[k]! - b[k]!);
    if (Number.isNaN(d)) return Number.NaN;
    m = Math.max(m, d);
  }
  return m;
}

/** Elementwise |a - b| <= atol + rtol |b|, with the worst element in the failure message. */
export function expectAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol = 0,
  what = '',
): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let k = 0; k < actual.length; k++) {
    const a = actual[k]!;
    const e = expected[k]!;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (Number.isNaN(excess) || excess > worstExcess) {
      worst = k;
      worstExcess = Number.isNaN(excess) ? Infinity : excess;
    }
  }
  if (worst >= 0) {
    expect.fail(
      `${what} element ${worst}: got ${actual[worst]}, expected ${expected[worst]} (atol ${atol}, rtol ${rtol})`,
    );
  }
}

export function expectClose(actual: number, expected: number, atol: number, what = ''): void {
  expectAllClose([actual], [expected], atol, 0, what);
}

// ---- batches -------------------------------------------------------------------------------------

/**
 * Labels [rows, T]: row r's completion covers positions [start_r, start_r + len_r) with random
 * token ids in [0, vocab), IGNORE elsewhere.
 */
export function completionLabels(
  next: () => number,
  spans: ReadonlyArray<readonly [number, number]>,
  width: number,
  vocab: number,
): number[] {
  const out: number[] = [];
  for (const [start, length] of spans) {
    for (let t = 0; t < width; t++) out.push(t >= start && t < start + length ? Math.floor(next() * vocab) : IGNORE);
  }
  return out;
}

export interface Head {
  weight: Tensor;
  bias: Tensor | null;
}

/**
 * Per-token log-probs [R, T] with the tensor API: logits = hidden W^T + b, / temperature,
 * logSoftmax, gather at the labels, zero outside the completions. Differentiable.
 */
export function eagerTokenLogps(hidden: Tensor, head: Head, labels: Tensor, temperature = 1): Tensor {
  const logits = hidden.matmul(head.weight.t());
  const z = (head.bias ? logits.add(head.bias) : logits).div(temperature);
  const logprobs = z.logSoftmax(-1);
  const valid = labels.ne(IGNORE);
  const picked = logprobs.gather(2, labels.clamp(0).unsqueeze(2)).squeeze(2);
  return torch.where(valid, picked, 0);
}

/** Per-token entropy [R, T] and vocabulary-mean logit [R, T] (untempered) with the tensor API. */
export function eagerTokenExtras(hidden: Tensor, head: Head, temperature = 1): { entropy: Tensor; meanLogit: Tensor } {
  const logits0 = hidden.matmul(head.weight.t());
  const logits = head.bias ? logits0.add(head.bias) : logits0;
  const lp = logits.div(temperature).logSoftmax(-1);
  return { entropy: lp.exp().mul(lp).sum(-1).neg(), meanLogit: logits.mean(-1) };
}

/** Row sums of a [R, T] array given as a flat list. */
export function rowSums(values: readonly number[], rows: number, width: number): number[] {
  return Array.from({ length: rows }, (_, r) => sum(values.slice(r * width, (r + 1) * width)));
}

/** Completion-token count of each row of flat labels. */
export function rowCounts(labels: readonly number[], rows: number, width: number): number[] {
  return Array.from(
    { length: rows },
    (_, r) => labels.slice(r * width, (r + 1) * width).filter((y) => y !== IGNORE).length,
  );
}

/** RunningMoments of TRL, written out again (float64): returns the new state. */
export function runningUpdate(
  state: { mean: number; var: number; count: number },
  xs: readonly number[],
): { mean: number; var: number; count: number } {
  const n = xs.length;
  const m = mean(xs);
  const v = xs.reduce((s, x) => s + (x - m) ** 2, 0) / n;
  const delta = m - state.mean;
  const tot = state.count + n;
  const newVar = (state.var * state.count + (delta * delta * state.count * n) / tot + v * n) / tot;
  return { mean: state.mean + (delta * n) / tot, var: newVar, count: tot };
}

export const freshMoments = (): { mean: number; var: number; count: number } => ({ mean: 0, var: 1, count: 1e-24 });

/** Gradients of `loss` with respect to `inputs` as float64 arrays (zeros for unused inputs). */
export function gradsOf(loss: Tensor, inputs: readonly Tensor[]): number[][] {
  const grads = torch.autograd.grad(loss, inputs, { allowUnused: true });
  return grads.map((g, k) => (g === null ? new Array<number>(inputs[k]!.numel()).fill(0) : arr(g)));
}
