// torch.* free functions: those with no natural receiver (cat, stack, where) and PyTorch's
// function spellings of Tensor methods.
import { checkInteger, isScalar } from './args.js';
import { dtypeCode, isFloatingPoint, type DType } from './dtype.js';
import { native as N } from './native.js';
import { handleList, handleOf, Tensor, tensorArg, wrap, wrapAll, type Scalar } from './tensor.js';

export const cat = (tensors: readonly Tensor[], dim = 0): Tensor =>
  wrap(N.cat(handleList(tensors, 'tensors', 'cat'), checkInteger(dim, 'dim', 'cat')));
export const stack = (tensors: readonly Tensor[], dim = 0): Tensor =>
  wrap(N.stack(handleList(tensors, 'tensors', 'stack'), checkInteger(dim, 'dim', 'stack')));

/** Elementwise choice: input where condition holds, other elsewhere. Scalars broadcast and promote as in PyTorch. */
export function where(condition: Tensor, input: Tensor | Scalar, other: Tensor | Scalar): Tensor {
  const c = handleOf(condition, 'condition', 'where');
  // Anything but a scalar must be a tensor of ours, checked before a scalar is made a tensor.
  if (!isScalar(input)) handleOf(input, 'input', 'where');
  if (!isScalar(other)) handleOf(other, 'other', 'where');
  const a = isScalar(input) ? scalarLike(c, input, other) : input;
  const b = isScalar(other) ? scalarLike(c, other, input) : other;
  try {
    return wrap(N.where(c, handleOf(a, 'input', 'where'), handleOf(b, 'other', 'where')));
  } finally {
    if (a !== input) a.dispose();
    if (b !== other) b.dispose();
  }
}

// A scalar operand as a tensor shaped like the condition, in the dtype PyTorch's promotion gives
// it against the other operand: a fraction against an integer or bool tensor becomes float32.
function scalarLike(condition: number, value: Scalar, other: Tensor | Scalar): Tensor {
  const fraction = typeof value === 'number' && !Number.isInteger(value);
  const scalarType = (v: Scalar): DType =>
    typeof v === 'boolean' ? 'bool' : Number.isInteger(v) ? 'int64' : 'float32';
  let dtype: DType = scalarType(value);
  if (Tensor.isTensor(other)) dtype = fraction && !isFloatingPoint(other.dtype) ? 'float32' : other.dtype;
  else if (scalarType(other) === 'float32' && dtype !== 'bool') dtype = 'float32';
  return wrap(N.fullLike(condition, value, dtypeCode(dtype)));
}

// The function spellings call the method on their first argument: one that is not a tensor (or a
// look-alike made from the prototype) is refused naming the function, before any method runs.
const self = (input: unknown, op: string, name = 'input'): Tensor => tensorArg(input, name, op);

export const add = (input: Tensor, other: Tensor | Scalar, alpha?: number): Tensor =>
  self(input, 'add').add(other, alpha);
export const sub = (input: Tensor, other: Tensor | Scalar, alpha?: number): Tensor =>
  self(input, 'sub').sub(other, alpha);
export const mul = (input: Tensor, other: Tensor | Scalar): Tensor => self(input, 'mul').mul(other);
export const div = (input: Tensor, other: Tensor | Scalar, roundingMode?: 'trunc' | 'floor'): Tensor =>
  self(input, 'div').div(other, roundingMode);
export const pow = (input: Tensor | number, exponent: Tensor | Scalar): Tensor =>
  typeof input === 'number'
    ? wrap(N.rpowScalar(handleOf(exponent, 'exponent', 'pow'), input))
    : self(input, 'pow').pow(exponent);
export const matmul = (input: Tensor, other: Tensor): Tensor => self(input, 'matmul').matmul(other);
export const mm = (input: Tensor, mat2: Tensor): Tensor => self(input, 'mm').mm(mat2);
export const bmm = (input: Tensor, mat2: Tensor): Tensor => self(input, 'bmm').bmm(mat2);
export const maximum = (input: Tensor, other: Tensor): Tensor => self(input, 'maximum').maximum(other);
export const minimum = (input: Tensor, other: Tensor): Tensor => self(input, 'minimum').minimum(other);
export const exp = (input: Tensor): Tensor => self(input, 'exp').exp();
export const log = (input: Tensor): Tensor => self(input, 'log').log();
export const sqrt = (input: Tensor): Tensor => self(input, 'sqrt').sqrt();
export const abs = (input: Tensor): Tensor => self(input, 'abs').abs();
export const tanh = (input: Tensor): Tensor => self(input, 'tanh').tanh();
export const sigmoid = (input: Tensor): Tensor => self(input, 'sigmoid').sigmoid();
export const softmax = (input: Tensor, dim: number): Tensor => self(input, 'softmax').softmax(dim);
export const logSoftmax = (input: Tensor, dim: number): Tensor => self(input, 'logSoftmax').logSoftmax(dim);
export const logsumexp = (input: Tensor, dim: number | number[], keepdim = false): Tensor =>
  self(input, 'logsumexp').logsumexp(dim, keepdim);
export const triu = (input: Tensor, diagonal = 0): Tensor => self(input, 'triu').triu(diagonal);
export const tril = (input: Tensor, diagonal = 0): Tensor => self(input, 'tril').tril(diagonal);
export const gather = (input: Tensor, dim: number, index: Tensor): Tensor => self(input, 'gather').gather(dim, index);
export const indexSelect = (input: Tensor, dim: number, index: Tensor): Tensor =>
  self(input, 'indexSelect').indexSelect(dim, index);
export const cumsum = (input: Tensor, dim: number): Tensor => self(input, 'cumsum').cumsum(dim);
export const clamp = (input: Tensor, min?: number | null, max?: number | null): Tensor =>
  self(input, 'clamp').clamp(min, max);
export const split = (input: Tensor, splitSize: number | readonly number[], dim = 0): Tensor[] =>
  self(input, 'split').split(splitSize, dim);
export const chunk = (input: Tensor, chunks: number, dim = 0): Tensor[] => self(input, 'chunk').chunk(chunks, dim);
export const sort = (input: Tensor, dim = -1, descending = false): [Tensor, Tensor] =>
  self(input, 'sort').sort(dim, descending);
export const topk = (input: Tensor, k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] =>
  self(input, 'topk').topk(k, dim, largest, sorted);
export const multinomial = (input: Tensor, numSamples: number, replacement = false): Tensor =>
  self(input, 'multinomial').multinomial(numSamples, replacement);
export const allclose = (a: Tensor, b: Tensor, rtol?: number, atol?: number): boolean =>
  self(a, 'allclose', 'a').allclose(b, rtol, atol);
export const unbind = (input: Tensor, dim = 0): Tensor[] => wrapAll(N.unbind(handleOf(input, 'input', 'unbind'), dim));
