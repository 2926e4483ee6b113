// The fused linear + log-softmax kernels (cpp/kernels/cpu/fused_linear_logprob.cc). For tokens x
// [N, H], a head (weight [V, H], optional bias [V]) and targets [N] int64 (negative: no target),
// z = (x Wᵀ + b) / temperature is formed a chunk of rows at a time, never as one [N, V] buffer, and
// each token gets log p(target) (0 without a target), the entropy, the log-sum-exp and the
// vocabulary-mean of the untempered logits. lib/losses builds its eager / two-pass / single-pass
// paths on these five calls. x, weight, bias and targets are checked again natively (shapes,
// dtypes, target range); what only this layer knows (scratch and gradient buffers) is checked here.
import { checkNumber, invalidArgument } from './args.js';
import { native as N } from './native.js';
import { handleOf, optionalHandle, wrap, type Tensor } from './tensor.js';

export interface LinearLogprobStats {
  logp: Tensor; // [N]
  entropy: Tensor; // [N]
  lse: Tensor; // [N] log-sum-exp of z
  meanLogit: Tensor; // [N]
}

export interface LinearLogprobOptions {
  temperature?: number;
  /** Rows per chunk of the [chunk, V] logits buffer. */
  chunkRows?: number;
  /** Backward only: logit gradients below this magnitude may be skipped (0: exact). */
  gradFilter?: number;
}

interface Operands {
  x: number;
  weight: number;
  bias: number;
  targets: number;
}

const operands = (x: Tensor, weight: Tensor, bias: Tensor | null | undefined, targets: Tensor): Operands => ({
  x: handleOf(x, 'x'),
  weight: handleOf(weight, 'weight'),
  bias: optionalHandle(bias, 'bias'),
  targets: handleOf(targets, 'targets'),
});

function temperatureOf(value: unknown): number {
  const t = checkNumber(value ?? 1, 'temperature');
  if (!(t > 0)) throw new RangeError(`fused linear log-softmax: temperature must be > 0, got ${t}`);
  return t;
}

function chunkRowsOf(value: unknown): number {
  const rows = value ?? 1024;
  if (!Number.isInteger(rows) || (rows as number) < 1) {
    throw new RangeError(`Expected a positive integer for chunkRows but received ${String(rows)}`);
  }
  return rows as number;
}

function gradFilterOf(value: unknown): number {
  const filter = checkNumber(value ?? 0, 'gradFilter');
  if (!(filter >= 0)) throw new RangeError(`Expected a number >= 0 for gradFilter but received ${filter}`);
  return filter;
}

function expectShape(t: Tensor, name: string, shape: readonly number[]): void {
  const actual = t.shape;
  if (actual.length !== shape.length || actual.some((d, k) => d !== shape[k])) {
    throw new RangeError(`Expected ${name} of shape [${shape.join(', ')}] but received [${actual.join(', ')}]`);
  }
}

function expectDtype(t: Tensor, name: string, like: Tensor): void {
  if (t.dtype !== like.dtype) {
    throw new TypeError(`Expected ${name} of dtype ${like.dtype} (the hidden states') but received ${t.dtype}`);
  }
}

// The [rows, V] logits buffer a chunk writes and its gradient call reads back.
function checkScratch(scratch: Tensor, x: Tensor, weight: Tensor): void {
  handleOf(scratch, 'scratch');
  const [rows, vocab] = scratch.shape;
  if (scratch.ndim !== 2 || rows! < x.shape[0]! || vocab !== weight.shape[0]) {
    const expected = `[>= ${x.shape[0]}, ${weight.shape[0]}]`;
    throw new RangeError(`Expected scratch of shape ${expected} but received [${scratch.shape.join(', ')}]`);
  }
  expectDtype(scratch, 'scratch', x);
}

/**
 * Per-token [logp, entropy, meanLogit] as an autograd Function: gradients flow to x, weight and
 * bias; the backward recomputes each chunk's logits (8NHV FLOPs in all, memory O(chunk x V)).
 */
export function linearLogprobs(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  targets: Tensor,
  options: LinearLogprobOptions = {},
): [Tensor, Tensor, Tensor] {
  const h = operands(x, weight, bias, targets);
  const temperature = temperatureOf(options.temperature);
  const rows = chunkRowsOf(options.chunkRows);
  const gradFilter = gradFilterOf(options.gradFilter);
  const out = N.linearLogprobs(h.x, h.weight, h.bias, h.targets, temperature, rows, gradFilter) as number[];
  return out.map(wrap) as [Tensor, Tensor, Tensor];
}

/** Forward only (no graph): the four per-token statistics. */
export function linearLogprobStats(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  targets: Tensor,
  options: Omit<LinearLogprobOptions, 'gradFilter'> = {},
): LinearLogprobStats {
  const h = operands(x, weight, bias, targets);
  const out = N.linearLogprobStats(h.x, h.weight, h.bias, h.targets, temperatureOf(options.temperature),
    chunkRowsOf(options.chunkRows)) as number[];
  return statsOf(out);
}

const statsOf = (handles: number[]): LinearLogprobStats => {
  const [logp, entropy, lse, meanLogit] = handles.map(wrap) as [Tensor, Tensor, Tensor, Tensor];
  return { logp, entropy, lse, meanLogit };
};

/**
 * One chunk's statistics with its logits kept in `scratch` ([>= N, V], x's dtype) for the matching
 * linearLogprobGradChunk call. No graph.
 */
export function linearLogprobStatsChunk(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  targets: Tensor,
  temperature: number,
  scratch: Tensor,
): LinearLogprobStats {
  const h = operands(x, weight, bias, targets);
  checkScratch(scratch, x, weight);
  const t = temperatureOf(temperature);
  return statsOf(N.linearLogprobStatsChunk(h.x, h.weight, h.bias, h.targets, t, scratch.handle) as number[]);
}

/** Upstream gradients of a chunk's per-token outputs, each [N] or absent (zero). */
export interface StatsGradients {
  logp?: Tensor | null;
  entropy?: Tensor | null;
  meanLogit?: Tensor | null;
}

/** The weight and bias gradient buffers a chunk's backward adds into. */
export interface HeadGradients {
  weight: Tensor; // [V, H]
  bias?: Tensor | null; // [V]
}

/**
 * The backward of one chunk after linearLogprobStatsChunk: overwrites `scratch` with dL/dlogits,
 * adds the weight and bias gradients into `into` and returns dL/dx [N, H].
 */
export function linearLogprobGradChunk(
  scratch: Tensor,
  x: Tensor,
  weight: Tensor,
  targets: Tensor,
  temperature: number,
  stats: Pick<LinearLogprobStats, 'lse' | 'entropy'>,
  grads: StatsGradients,
  into: HeadGradients,
  gradFilter = 0,
): Tensor {
  const h = operands(x, weight, null, targets);
  checkScratch(scratch, x, weight);
  const [rows, width] = x.shape as [number, number];
  const vocab = weight.shape[0]!;
  const perToken = (t: Tensor | null | undefined, name: string): number => {
    const handle = optionalHandle(t, name);
    if (t) {
      expectShape(t, name, [rows]);
      expectDtype(t, name, x);
    }
    return handle;
  };
  expectShape(targets, 'targets', [rows]);
  const [lse, entropy] = [perToken(stats.lse, 'stats.lse'), perToken(stats.entropy, 'stats.entropy')];
  if (!lse || !entropy) throw invalidArgument('stats', 'the lse and entropy of linearLogprobStatsChunk', stats);
  const gradWeight = handleOf(into.weight, 'into.weight');
  expectShape(into.weight, 'into.weight', [vocab, width]);
  expectDtype(into.weight, 'into.weight', x);
  const gradBias = optionalHandle(into.bias, 'into.bias');
  if (into.bias) {
    expectShape(into.bias, 'into.bias', [vocab]);
    expectDtype(into.bias, 'into.bias', x);
  }
  const upstream = [perToken(grads.logp, 'grads.logp'), perToken(grads.entropy, 'grads.entropy'),
    perToken(grads.meanLogit, 'grads.meanLogit')];
  const t = temperatureOf(temperature);
  return wrap(N.linearLogprobGradChunk(scratch.handle, h.x, h.weight, h.targets, t, lse, entropy, ...upstream,
    gradWeight, gradBias, gradFilterOf(gradFilter)));
}

/**
 * A scalar equal to `value` whose backward hands the given gradients (scaled by the upstream one)
 * to x, weight and bias: how a loss whose gradients were computed during its forward joins the
 * graph. bias and its gradient come together or not at all.
 */
export function attachGradients(
  value: Tensor,
  inputs: { x: Tensor; weight: Tensor; bias?: Tensor | null },
  grads: { x: Tensor; weight: Tensor; bias?: Tensor | null },
): Tensor {
  const valueHandle = handleOf(value, 'value');
  if (value.numel() !== 1) throw new RangeError(`Expected a one-element value but received shape [${value.shape}]`);
  const x = handleOf(inputs.x, 'inputs.x');
  const weight = handleOf(inputs.weight, 'inputs.weight');
  const bias = optionalHandle(inputs.bias, 'inputs.bias');
  const gradX = handleOf(grads.x, 'grads.x');
  const gradWeight = handleOf(grads.weight, 'grads.weight');
  const gradBias = optionalHandle(grads.bias, 'grads.bias');
  if (!bias !== !gradBias) throw new TypeError('attachGradients: inputs.bias and grads.bias must be given together');
  expectShape(grads.x, 'grads.x', inputs.x.shape);
  expectShape(grads.weight, 'grads.weight', inputs.weight.shape);
  if (inputs.bias && grads.bias) expectShape(grads.bias, 'grads.bias', inputs.bias.shape);
  return wrap(N.attachGradients(valueHandle, x, weight, bias, gradX, gradWeight, gradBias));
}
