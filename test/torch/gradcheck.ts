// Finite-difference gradient checking in float64, written with the tensor API itself (PyTorch's
// torch.autograd.gradcheck idea): the analytic gradient of sum(fn(...inputs) * w), w fixed random
// weights so that symmetric errors cannot cancel, is compared element by element with central
// differences of the same scalar.
import { torch } from '../../lib/index.js';

type Tensor = torch.Tensor;

export interface GradcheckOptions {
  /** Central-difference step. */
  eps?: number;
  /** An element passes when |analytic - numeric| <= atol + rtol * |numeric|. */
  atol?: number;
  rtol?: number;
  /** Indices of the inputs to differentiate; defaults to every float64 input. */
  wrt?: readonly number[];
  /** Seed of the output weights w. */
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  /** Largest |analytic - numeric| over every checked element. */
  maxAbsError: number;
  /** Number of checked elements. */
  checked: number;
  /** Up to ten descriptions of failing elements. */
  failures: string[];
}

/** Deterministic uniform [0, 1) numbers (mulberry32), so tests do not depend on libtorch's RNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface InputOptions {
  /** Values uniform in [min, max). */
  min?: number;
  max?: number;
  /** Values with magnitude in [awayFromZero, max) and random sign: keeps |x|, relu, ... smooth. */
  awayFromZero?: number;
  seed?: number;
}

let inputSeed = 1;

/** A float64 tensor of deterministic pseudo-random values. */
export function input(shape: readonly number[], options: InputOptions = {}): Tensor {
  const next = rng(options.seed ?? inputSeed++);
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float64Array(n);
  if (options.awayFromZero !== undefined) {
    const lo = options.awayFromZero;
    const hi = options.max ?? lo + 1;
    for (let k = 0; k < n; k++) values[k] = (next() < 0.5 ? -1 : 1) * (lo + (hi - lo) * next());
  } else {
    const lo = options.min ?? -1;
    const hi = options.max ?? 1;
    for (let k = 0; k < n; k++) values[k] = lo + (hi - lo) * next();
  }
  return torch.tensor(values, { dtype: 'float64', shape });
}

function weightsFor(out: Tensor, seed: number): Tensor {
  const next = rng(seed);
  const w = new Float64Array(out.numel());
  for (let k = 0; k < w.length; k++) w[k] = 0.5 + next(); // in [0.5, 1.5): no element is ignored
  return torch.tensor(w, { dtype: 'float64', shape: out.shape });
}

/** The scalar whose gradient is checked: sum(fn(...) * w), accumulated in float64. */
function objective(out: Tensor, w: Tensor): Tensor {
  if (!out.dtype.startsWith('float')) throw new TypeError(`gradcheck: fn returned a ${out.dtype} tensor`);
  return out.to('float64').mul(w).sum();
}

/**
 * Compares autograd's gradient of sum(fn(...inputs) * w) with central differences, for every
 * element of every checked input. Inputs that are not checked (index tensors, masks, ...) are
 * passed through unchanged. Every tensor made here is freed before returning.
 */
export function gradcheck(
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options: GradcheckOptions = {},
): GradcheckResult {
  const eps = options.eps ?? 1e-6;
  const atol = options.atol ?? 1e-5;
  const rtol = options.rtol ?? 1e-4;
  const wrt = options.wrt ?? inputs.flatMap((t, k) => (t.dtype === 'float64' ? [k] : []));
  if (wrt.length === 0) throw new Error('gradcheck: nothing to differentiate (no float64 input)');
  for (const k of wrt) {
    if (inputs[k]?.dtype !== 'float64')
      throw new TypeError(`gradcheck: input ${k} must be float64, got ${inputs[k]?.dtype}`);
  }

  return torch.tidy(() => {
    // Fresh leaves for the checked inputs; the others go through as they are.
    const leaves = inputs.map((t, k) => (wrt.includes(k) ? t.detach().clone().requiresGrad_(true) : t));

    // Analytic: one backward pass through torch.autograd.grad.
    const out = fn(...leaves);
    const w = weightsFor(out, options.seed ?? 12345);
    const checkedLeaves = wrt.map((k) => leaves[k]!);
    const grads = torch.autograd.grad(objective(out, w), checkedLeaves, { allowUnused: true });
    const analytic = grads.map((g, i) =>
      g === null ? new Float64Array(checkedLeaves[i]!.numel()) : (g.to('float64').data() as Float64Array),
    );

    // Numeric: perturb one element at a time through a copy of the input's data. The perturbed
    // inputs require grad too, so fn may itself call autograd (gradients of gradients).
    const evaluate = (k: number, values: Float64Array): number =>
      torch.tidy(() => {
        const args = leaves.map((t, j) =>
          j === k ? torch.tensor(values, { dtype: 'float64', shape: inputs[k]!.shape, requiresGrad: true }) : t,
        );
        return objective(fn(...args), w).item() as number;
      });

    let maxAbsError = 0;
    let checked = 0;
    let failed = 0;
    let sawNaN = false;
    const failures: string[] = [];
    wrt.forEach((k, i) => {
      const base = inputs[k]!.contiguous().data() as Float64Array;
      const shape = inputs[k]!.shape;
      for (let e = 0; e < base.length; e++) {
        const values = base.slice();
        values[e] = base[e]! + eps;
        const plus = evaluate(k, values);
        values[e] = base[e]! - eps;
        const minus = evaluate(k, values);
        const numeric = (plus - minus) / (2 * eps);
        const a = analytic[i]![e]!;
        const error = Math.abs(a - numeric);
        checked++;
        if (Number.isNaN(error)) sawNaN = true;
        else maxAbsError = Math.max(maxAbsError, error);
        if (!(error <= atol + rtol * Math.abs(numeric))) {
          failed++;
          if (failures.length < 10)
            failures.push(`input ${k} ${JSON.stringify(shape)} element ${e}: analytic ${a}, numeric ${numeric}`);
        }
      }
    });
    if (failed > failures.length) failures.push(`... ${failed - failures.length} more`);
    return { ok: failed === 0 && !sawNaN, maxAbsError: sawNaN ? Number.NaN : maxAbsError, checked, failures };
  });
}

/** gradcheck that throws, with the failing elements in the message, when the gradients disagree. */
export function assertGradcheck(
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  options: GradcheckOptions = {},
): number {
  const result = gradcheck(fn, inputs, options);
  if (!result.ok) {
    throw new Error(
      `gradcheck failed (max abs error ${result.maxAbsError} over ${result.checked} elements):\n  ${result.failures.join('\n  ')}`,
    );
  }
  return result.maxAbsError;
}
