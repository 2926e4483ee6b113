// torch.nn.functional: the layers' math as functions, with PyTorch's argument names and defaults.
import { checkIntegers, checkNumber, invalidArgument } from './args.js';
import { native as N } from './native.js';
import { handleOf, optionalHandle, type Tensor, tensorArg, wrap } from './tensor.js';

type Pair = number | readonly number[];
const expandTo = (value: Pair, n: number, name: string, op: string): number[] => {
  const list = typeof value === 'number' ? Array<number>(n).fill(value) : Array.isArray(value) ? [...value] : [];
  if (list.length !== n || !list.every(Number.isInteger))
    throw invalidArgument(name, `an integer or ${n} integers`, value, op);
  return list;
};

/** x @ weight^T + bias */
export const linear = (input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor =>
  wrap(
    N.linear(
      handleOf(input, 'input', 'linear'),
      handleOf(weight, 'weight', 'linear'),
      optionalHandle(bias, 'bias', 'linear'),
    ),
  );

/** beta * input + alpha * (mat1 @ mat2) */
export const addmm = (
  input: Tensor,
  mat1: Tensor,
  mat2: Tensor,
  options: { beta?: number; alpha?: number } = {},
): Tensor =>
  wrap(
    N.addmm(
      handleOf(input, 'input', 'addmm'),
      handleOf(mat1, 'mat1', 'addmm'),
      handleOf(mat2, 'mat2', 'addmm'),
      options.beta ?? 1,
      options.alpha ?? 1,
    ),
  );

export const baddbmm = (
  input: Tensor,
  batch1: Tensor,
  batch2: Tensor,
  options: { beta?: number; alpha?: number } = {},
): Tensor =>
  wrap(
    N.baddbmm(
      handleOf(input, 'input', 'baddbmm'),
      handleOf(batch1, 'batch1', 'baddbmm'),
      handleOf(batch2, 'batch2', 'baddbmm'),
      options.beta ?? 1,
      options.alpha ?? 1,
    ),
  );

export interface ConvOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

function conv(
  op: 'conv2d' | 'conv3d',
  n: number,
  input: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  o: ConvOptions,
): Tensor {
  return wrap(
    N[op](
      handleOf(input, 'input', op),
      handleOf(weight, 'weight', op),
      optionalHandle(bias, 'bias', op),
      expandTo(o.stride ?? 1, n, 'stride', op),
      expandTo(o.padding ?? 0, n, 'padding', op),
      expandTo(o.dilation ?? 1, n, 'dilation', op),
      o.groups ?? 1,
    ),
  );
}

export const conv2d = (input: Tensor, weight: Tensor, bias?: Tensor | null, options: ConvOptions = {}): Tensor =>
  conv('conv2d', 2, input, weight, bias, options);
export const conv3d = (input: Tensor, weight: Tensor, bias?: Tensor | null, options: ConvOptions = {}): Tensor =>
  conv('conv3d', 3, input, weight, bias, options);

/** Rows of weight picked by input's ids; the paddingIdx row gets no gradient. */
export const embedding = (input: Tensor, weight: Tensor, options: { paddingIdx?: number } = {}): Tensor =>
  wrap(
    N.embedding(
      handleOf(weight, 'weight', 'embedding'),
      handleOf(input, 'input', 'embedding'),
      options.paddingIdx ?? -1,
    ),
  );

export const layerNorm = (
  input: Tensor,
  normalizedShape: readonly number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor =>
  wrap(
    N.layerNorm(
      handleOf(input, 'input', 'layerNorm'),
      checkIntegers(normalizedShape, 'normalizedShape', 'layerNorm'),
      optionalHandle(weight, 'weight', 'layerNorm'),
      optionalHandle(bias, 'bias', 'layerNorm'),
      checkNumber(eps, 'eps', 'layerNorm'),
    ),
  );

export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  return wrap(N.dropout(handleOf(input, 'input', 'dropout'), p, training));
}

export const gelu = (input: Tensor, options: { approximate?: 'none' | 'tanh' } = {}): Tensor =>
  wrap(N.gelu(handleOf(input, 'input', 'gelu'), options.approximate ?? 'none'));
export const silu = (input: Tensor): Tensor => tensorArg(input, 'input', 'silu').silu();
export const relu = (input: Tensor): Tensor => tensorArg(input, 'input', 'relu').relu();
export const sigmoid = (input: Tensor): Tensor => tensorArg(input, 'input', 'sigmoid').sigmoid();
export const tanh = (input: Tensor): Tensor => tensorArg(input, 'input', 'tanh').tanh();
export const logsigmoid = (input: Tensor): Tensor => wrap(N.logsigmoid(handleOf(input, 'input', 'logsigmoid')));
export const softplus = (input: Tensor, options: { beta?: number; threshold?: number } = {}): Tensor =>
  wrap(N.softplus(handleOf(input, 'input', 'softplus'), options.beta ?? 1, options.threshold ?? 20));
export const softmax = (input: Tensor, dim: number): Tensor => tensorArg(input, 'input', 'softmax').softmax(dim);
export const logSoftmax = (input: Tensor, dim: number): Tensor =>
  tensorArg(input, 'input', 'logSoftmax').logSoftmax(dim);

export type Reduction = 'none' | 'mean' | 'sum';
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };
function reductionCode(reduction: Reduction = 'mean', op: string): number {
  const code = REDUCTION[reduction];
  if (code === undefined) throw invalidArgument('reduction', "'none', 'mean' or 'sum'", reduction, op);
  return code;
}

export interface CrossEntropyOptions {
  weight?: Tensor | null;
  reduction?: Reduction;
  ignoreIndex?: number;
  labelSmoothing?: number;
}

/** Cross entropy of logits [N, C, ...] against class ids [N, ...]. */
export const crossEntropy = (input: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor =>
  wrap(
    N.crossEntropy(
      handleOf(input, 'input', 'crossEntropy'),
      handleOf(target, 'target', 'crossEntropy'),
      optionalHandle(o.weight, 'weight', 'crossEntropy'),
      reductionCode(o.reduction, 'crossEntropy'),
      o.ignoreIndex ?? -100,
      o.labelSmoothing ?? 0,
    ),
  );

export const nllLoss = (input: Tensor, target: Tensor, o: Omit<CrossEntropyOptions, 'labelSmoothing'> = {}): Tensor =>
  wrap(
    N.nllLoss(
      handleOf(input, 'input', 'nllLoss'),
      handleOf(target, 'target', 'nllLoss'),
      optionalHandle(o.weight, 'weight', 'nllLoss'),
      reductionCode(o.reduction, 'nllLoss'),
      o.ignoreIndex ?? -100,
    ),
  );

export const mseLoss = (input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor =>
  wrap(
    N.mseLoss(
      handleOf(input, 'input', 'mseLoss'),
      handleOf(target, 'target', 'mseLoss'),
      reductionCode(options.reduction, 'mseLoss'),
    ),
  );

export interface AttentionOptions {
  /** Boolean (true = attend) or additive float mask, broadcastable to [..., L, S]. */
  attnMask?: Tensor | null;
  dropoutP?: number;
  isCausal?: boolean;
  /** Defaults to 1 / sqrt(head dim). */
  scale?: number;
}

/** softmax(q k^T * scale + mask) v over q [..., L, E], k [..., S, E], v [..., S, Ev]. */
export const scaledDotProductAttention = (
  query: Tensor,
  key: Tensor,
  value: Tensor,
  o: AttentionOptions = {},
): Tensor =>
  wrap(
    N.scaledDotProductAttention(
      handleOf(query, 'query', SDPA),
      handleOf(key, 'key', SDPA),
      handleOf(value, 'value', SDPA),
      optionalHandle(o.attnMask, 'attnMask', SDPA),
      o.dropoutP ?? 0,
      o.isCausal ?? false,
      o.scale ?? null,
    ),
  );
const SDPA = 'scaledDotProductAttention';
