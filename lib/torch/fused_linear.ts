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

type Bias = Tensor | null | undefined;

const operands = (op: string, x: Tensor, weight: Tensor, bias: Bias, targets: Tensor): Operands => ({
  x: handleOf(x, 'x', op),
  weight: handleOf(weight, 'weight', op),
  bias: optionalHandle(bias, 'bias', op),
  targets: handleOf(targets, 'targets', op),
});

function temperatureOf(value: unknown, op: string): number {
  const t = checkNumber(value ?? 1, 'temperature', op);
  if (!(t > 0)) throw new RangeError(`${op}: temperature must be > 0, got ${t}`);
  return t;
}

function chunkRowsOf(value: unknown, op: string): number {
  const rows = value ?? 1024;
  if (!Number.isInteger(rows) || (rows as number) < 1) {
    throw new RangeError(`${op}: expected a positive integer for chunkRows but received ${String(rows)}`);
  }
  return rows as number;
}

function gradFilterOf(value: unknown, op: string): number {
  const filter = checkNumber(value ?? 0, 'gradFilter', op);
  if (!(filter >= 0)) throw new RangeError(`${op}: expected a number >= 0 for gradFilter but received ${filter}`);
  return filter;
}

function expectShape(t: Tensor, name: string, shape: readonly number[], op: string): void {
  const actual = t.shape;
  if (actual.length !== shape.length || actual.some((d, k) => d !== shape[k])) {
    throw new RangeError(`${op}: expected ${name} of shape [${shape.join(', ')}] but received [${actual.join(', ')}]`);
  }
}

function expectDtype(t: Tensor, name: string, like: Tensor, op: string): void {
  if (t.dtype !== like.dtype) {
    throw new TypeError(`${op}: expected ${name} of dtype ${like.dtype} (the hidden states') but received ${t.dtype}`);
  }
}

// The [rows, V] logits buffer a chunk writes and its gradient call reads back.
function checkScratch(scratch: Tensor, x: Tensor, weight: Tensor, op: string): void {
  handleOf(scratch, 'scratch', op);
  const [rows, vocab] = scratch.shape;
  if (scratch.ndim !== 2 || rows! < x.shape[0]! || vocab !== weight.shape[0]) {
    const expected = `[>= ${x.shape[0]}, ${weight.shape[0]}]`;
    throw new RangeError(`${op}: expected scratch of shape ${expected} but received [${scratch.shape.join(', ')}]`);
  }
  expectDtype(scratch, 'scratch', x, op);
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
  const op = 'linearLogprobs';
  const h = operands(op, x, weight, bias, targets);
  const temperature = temperatureOf(options.temperature, op);
  const rows = chunkRowsOf(options.chunkRows, op);
  const gradFilter = gradFilterOf(options.gradFilter, op);
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
  const op = 'linearLogprobStats';
  const h = operands(op, x, weight, bias, targets);
  const out = N.linearLogprobStats(
    h.x,
    h.weight,
    h.bias,
    h.targets,
    temperatureOf(options.temperature, op),
    chunkRowsOf(options.chunkRows, op),
  ) as number[];
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
  const op = 'linearLogprobStatsChunk';
  const h = operands(op, x, weight, bias, targets);
  checkScratch(scratch, x, weight, op);
  const t = temperatureOf(temperature, op);
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
  const op = 'linearLogprobGradChunk';
  const h = operands(op, x, weight, null, targets);
  checkScratch(scratch, x, weight, op);
  const [rows, width] = x.shape as [number, number];
  const vocab = weight.shape[0]!;
  const buffer = (t: Tensor | null | undefined, name: string, shape: number[]): number => {
    const handle = optionalHandle(t, name, op);
    if (t) {
      expectShape(t, name, shape, op);
      expectDtype(t, name, x, op);
    }
    return handle;
  };
  const perToken = (t: Tensor | null | undefined, name: string): number => buffer(t, name, [rows]);
  expectShape(targets, 'targets', [rows], op);
  const [lse, entropy] = [perToken(stats.lse, 'stats.lse'), perToken(stats.entropy, 'stats.entropy')];
  if (!lse || !entropy) throw invalidArgument('stats', 'the lse and entropy of linearLogprobStatsChunk', stats, op);
  const gradWeight = handleOf(into.weight, 'into.weight', op);
  buffer(into.weight, 'into.weight', [vocab, width]);
  const gradBias = buffer(into.bias, 'into.bias', [vocab]);
  const upstream = [
    perToken(grads.logp, 'grads.logp'),
    perToken(grads.entropy, 'grads.entropy'),
    perToken(grads.meanLogit, 'grads.meanLogit'),
  ];
  const t = temperatureOf(temperature, op);
  return wrap(
    N.linearLogprobGradChunk(
      scratch.handle,
      h.x,
      h.weight,
      h.targets,
      t,
      lse,
      entropy,
      ...upstream,
      gradWeight,
      gradBias,
      gradFilterOf(gradFilter, op),
    ),
  );
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
  const op = 'attachGradients';
  const valueHandle = handleOf(value, 'value', op);
  if (value.numel() !== 1) {
    throw new RangeError(`${op}: expected a one-element value but received shape [${value.shape}]`);
  }
  const x = handleOf(inputs.x, 'inputs.x', op);
  const weight = handleOf(inputs.weight, 'inputs.weight', op);
  const bias = optionalHandle(inputs.bias, 'inputs.bias', op);
  const gradX = handleOf(grads.x, 'grads.x', op);
  const gradWeight = handleOf(grads.weight, 'grads.weight', op);
  const gradBias = optionalHandle(grads.bias, 'grads.bias', op);
  if (!bias !== !gradBias) throw new TypeError(`${op}: inputs.bias and grads.bias must be given together`);
  expectShape(grads.x, 'grads.x', inputs.x.shape, op);
  expectShape(grads.weight, 'grads.weight', inputs.weight.shape, op);
  if (inputs.bias && grads.bias) expectShape(grads.bias, 'grads.bias', inputs.bias.shape, op);
  return wrap(N.attachGradients(valueHandle, x, weight, bias, gradX, gradWeight, gradBias));
}
