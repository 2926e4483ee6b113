// The Tensor: one owned native handle plus PyTorch's methods in camelCase. Every method is a thin
// call into the addon; arguments are checked here so the addon only sees well-typed values.
import {
  checkBoolean,
  checkDevice,
  checkInteger,
  checkIntegers,
  dimsArg,
  invalidArgument,
  namedOp,
  optionsArg,
  shapeArgs,
  type Device,
} from './args.js';
import { dtypeCode, dtypeFromCode, TYPED_ARRAY, type DType, type TypedArray } from './dtype.js';
import { formatTensor } from './format.js';
import { native as N } from './native.js';
import { installHandleWriter, keep, release, track, transferHandle, type Scope } from './scope.js';

export type Scalar = number | boolean;
type Dims = number | readonly number[];

/**
 * The native id of a tensor argument. Only tensors this library made count: a look-alike such as
 * `Object.create(Tensor.prototype)` has no private handle and is refused like any other non-tensor.
 */
export function handleOf(value: unknown, name: string, op?: string): number {
  if (!Tensor.isTensor(value)) throw notATensor(value, name, op);
  const handle = value.handle;
  if (handle === 0)
    throw new Error(`${op === undefined ? '' : `${op}: `}${name}: the tensor was disposed and cannot be used`);
  return handle;
}

/** `value` itself when it is a live tensor of ours (handleOf's checks), for calls that use its methods. */
export function tensorArg(value: unknown, name: string, op: string): Tensor {
  handleOf(value, name, op);
  return value as Tensor;
}

// A look-alike (from Tensor.prototype) says so: "received an object of type Tensor" alone would puzzle.
function notATensor(value: unknown, name: string, op?: string): TypeError {
  const { message } = invalidArgument(name, 'a Tensor', value, op);
  const lookAlike = value instanceof Tensor ? ' (a look-alike: only tensors made by vlalign are accepted)' : '';
  return new TypeError(message + lookAlike);
}

// Proof of construction from inside lib/torch: the constructor takes no id without it, so user code
// cannot make a Tensor that aliases (or frees) another tensor's native storage.
const INTERNAL = Symbol('vlalign.Tensor.internal');

/** @internal wraps a fresh native id returned by the addon; never exported from the package. */
const wrap = (handle: number): Tensor => new Tensor(INTERNAL, handle);
const wrapAll = (handles: number[]): Tensor[] => handles.map(wrap);
// An optional tensor: null / undefined is "none" (0 to the addon); a disposed one is an error.
const optionalHandle = (value: Tensor | null | undefined, name: string, op?: string): number =>
  value === null || value === undefined ? 0 : handleOf(value, name, op);
const optionalDtype = (dtype: DType | undefined): number | null => (dtype === undefined ? null : dtypeCode(dtype));

/** The ids of an array of tensors; with `optional`, null / undefined entries are 0 (a full slice in `index`). */
export function handleList(value: unknown, name: string, op: string, optional = false): number[] {
  if (!Array.isArray(value))
    throw invalidArgument(name, `an array of Tensors${optional ? ' or nulls' : ''}`, value, op);
  return value.map((t, k) => (optional ? optionalHandle(t, `${name}[${k}]`, op) : handleOf(t, `${name}[${k}]`, op)));
}

function scalarOrTensor(
  self: Tensor,
  other: Tensor | Scalar,
  tensorOp: string,
  scalarOp: string,
  name: string,
): Tensor {
  if (typeof other === 'number' || typeof other === 'boolean') return wrap(N[scalarOp](self.handle, other));
  return wrap(N[tensorOp](self.handle, handleOf(other, name, tensorOp)));
}

export interface ToOptions {
  dtype?: DType;
  device?: Device;
  copy?: boolean;
}

export class Tensor {
  // The native id, 0 once disposed. Private so it can be neither forged nor reassigned; scope.ts
  // moves and clears it through the writer installed below.
  #handle: number;
  /** @internal the tidy scope that owns this tensor */
  scope: Scope | null = null;
  /** @internal whether the FinalizationRegistry backstop holds it */
  registered = false;
  #shape: number[] | undefined;

  static {
    installHandleWriter((t, handle) => {
      (t as Tensor).#handle = handle;
    });
  }

  /** @internal tensors come from the creation functions (torch.tensor, torch.zeros, ...) and ops */
  constructor(token: typeof INTERNAL, handle: number) {
    if (token !== INTERNAL) {
      throw new TypeError(
        'Tensor cannot be constructed directly; use torch.tensor, torch.zeros or another creation function',
      );
    }
    this.#handle = handle;
    track(this);
  }

  /** True for tensors made by this library; false for anything else, look-alikes included. */
  static isTensor(value: unknown): value is Tensor {
    return typeof value === 'object' && value !== null && #handle in value;
  }

  /** The native id (0 once disposed), read-only. */
  get handle(): number {
    return this.#handle;
  }

  // ---- lifetime ---------------------------------------------------------------------------------

  /** Frees the native tensor now. Safe to call twice. */
  dispose(): void {
    release(this);
  }

  [Symbol.dispose](): void {
    release(this);
  }

  /**
   * Makes this tensor the data of `src` (PyTorch's `param.data = src`): every holder of this object
   * sees the new values, dtype and device, and `requiresGrad` is kept. `src` is consumed (disposed).
   */
  setData(src: Tensor): this {
    handleOf(src, 'src', 'setData');
    const requiresGrad = this.#handle !== 0 && this.requiresGrad;
    transferHandle(this, src);
    this.#shape = undefined;
    if (requiresGrad !== N.requiresGrad(this.#handle)) N.requiresGrad_(this.#handle, requiresGrad);
    return this;
  }

  get isDisposed(): boolean {
    return this.#handle === 0;
  }

  /** Keeps this tensor alive past every enclosing tidy scope; the caller disposes it. */
  keep(): this {
    return keep(this);
  }

  // ---- metadata ---------------------------------------------------------------------------------

  get shape(): number[] {
    this.#shape ??= N.shape(this.#handle) as number[];
    return this.#shape.slice();
  }

  size(dim?: number): number | number[] {
    if (dim === undefined) return this.shape;
    const shape = this.shape;
    const d = checkInteger(dim, 'dim', 'size');
    const value = shape[d < 0 ? d + shape.length : d];
    if (value === undefined) throw new RangeError(`size: dim ${d} out of range for a tensor of ${shape.length} dims`);
    return value;
  }

  get dtype(): DType {
    return dtypeFromCode(N.dtype(this.#handle));
  }

  get device(): Device {
    return N.device(this.#handle) as Device;
  }

  get ndim(): number {
    return N.dim(this.#handle);
  }

  dim(): number {
    return N.dim(this.#handle);
  }

  numel(): number {
    return N.numel(this.#handle);
  }

  stride(): number[] {
    return N.strides(this.#handle);
  }

  isContiguous(): boolean {
    return N.isContiguous(this.#handle);
  }

  // ---- read back --------------------------------------------------------------------------------

  /** The single value of a one-element tensor (int64 beyond 2^53 loses precision). */
  item(): number | boolean {
    return N.item(this.#handle);
  }

  /** A copy of the elements in row-major order; float16/bfloat16 come as raw Uint16 bit patterns. */
  data(): TypedArray {
    const bytes = N.bytes(this.#handle) as ArrayBuffer;
    const Ctor = TYPED_ARRAY[this.dtype];
    return new Ctor(bytes);
  }

  /** Nested arrays of numbers (or booleans), as PyTorch's tolist(). */
  toArray(): unknown {
    const dtype = this.dtype;
    let flat: ArrayLike<number | bigint | boolean>;
    if (dtype === 'float16' || dtype === 'bfloat16') {
      using wide = this.to({ dtype: 'float32' });
      flat = wide.data() as Float32Array;
    } else if (dtype === 'bool') {
      flat = Array.from(this.data() as Uint8Array, (v) => v !== 0);
    } else if (dtype === 'int64') {
      flat = Array.from(this.data() as BigInt64Array, Number);
    } else {
      flat = this.data() as ArrayLike<number>;
    }
    const shape = this.shape;
    let offset = 0;
    const build = (depth: number): unknown => {
      if (depth === shape.length) return flat[offset++];
      return Array.from({ length: shape[depth]! }, () => build(depth + 1));
    };
    return build(0);
  }

  toString(): string {
    return formatTensor(this);
  }

  // ---- conversion -------------------------------------------------------------------------------

  /** to('float64'), to('cpu'), or to({ dtype, device, copy }). */
  to(target: DType | Device | ToOptions): Tensor {
    const options: ToOptions =
      typeof target === 'string'
        ? /^(cpu|cuda)/.test(target)
          ? { device: target as Device }
          : { dtype: target as DType }
        : optionsArg(target, 'to', 'target');
    const device = options.device === undefined ? null : checkDevice(options.device, undefined, 'to');
    return wrap(N.to(this.#handle, optionalDtype(options.dtype), device, options.copy ?? false));
  }

  float(): Tensor {
    return this.to({ dtype: 'float32' });
  }
  double(): Tensor {
    return this.to({ dtype: 'float64' });
  }
  half(): Tensor {
    return this.to({ dtype: 'float16' });
  }
  bfloat16(): Tensor {
    return this.to({ dtype: 'bfloat16' });
  }
  long(): Tensor {
    return this.to({ dtype: 'int64' });
  }
  int(): Tensor {
    return this.to({ dtype: 'int32' });
  }
  bool(): Tensor {
    return this.to({ dtype: 'bool' });
  }
  cpu(): Tensor {
    return this.to({ device: 'cpu' });
  }
  cuda(index = 0): Tensor {
    return this.to({ device: `cuda:${index}` });
  }
  clone(): Tensor {
    return wrap(N.clone(this.#handle));
  }
  detach(): Tensor {
    return wrap(N.detach(this.#handle));
  }
  contiguous(): Tensor {
    return wrap(N.contiguous(this.#handle));
  }

  // ---- autograd ---------------------------------------------------------------------------------

  get requiresGrad(): boolean {
    return N.requiresGrad(this.#handle);
  }

  set requiresGrad(value: boolean) {
    N.requiresGrad_(this.#handle, checkBoolean(value, 'requiresGrad', 'requiresGrad'));
  }

  requiresGrad_(value = true): this {
    N.requiresGrad_(this.#handle, checkBoolean(value, 'requiresGrad', 'requiresGrad_'));
    return this;
  }

  get isLeaf(): boolean {
    return N.isLeaf(this.#handle);
  }

  /** Name of the autograd node that produced this tensor, or null for leaves. */
  get gradFn(): string | null {
    return N.gradFn(this.#handle);
  }

  /** A new handle to the accumulated gradient (dispose it or read it in a tidy), or null. */
  get grad(): Tensor | null {
    const h = N.grad(this.#handle) as number;
    return h === 0 ? null : wrap(h);
  }

  set grad(value: Tensor | null) {
    N.setGrad(this.#handle, optionalHandle(value, 'grad', 'grad'));
  }

  retainGrad(): void {
    N.retainGrad(this.#handle);
  }

  backward(gradient?: Tensor, options: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    const createGraph = options.createGraph ?? false;
    N.backward(
      this.#handle,
      optionalHandle(gradient, 'gradient', 'backward'),
      options.retainGraph ?? createGraph,
      createGraph,
    );
  }

  // ---- elementwise ------------------------------------------------------------------------------

  add(other: Tensor | Scalar, alpha?: number): Tensor {
    if (alpha !== undefined) return scalarOrTensorAlpha(this, other, 'add', alpha);
    return scalarOrTensor(this, other, 'add', 'addScalar', 'other');
  }

  sub(other: Tensor | Scalar, alpha?: number): Tensor {
    if (alpha !== undefined) return scalarOrTensorAlpha(this, other, 'sub', alpha);
    return scalarOrTensor(this, other, 'sub', 'subScalar', 'other');
  }

  mul(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'mul', 'mulScalar', 'other');
  }
  div(other: Tensor | Scalar, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode === undefined) return scalarOrTensor(this, other, 'div', 'divScalar', 'other');
    if (typeof other === 'number') return wrap(N.divScalar(this.#handle, other, roundingMode));
    return wrap(N.div(this.#handle, handleOf(other, 'other', 'div'), roundingMode));
  }
  pow(exponent: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, exponent, 'pow', 'powScalar', 'exponent');
  }
  remainder(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'remainder', 'remainderScalar', 'other');
  }
  fmod(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'fmod', 'fmodScalar', 'other');
  }
  /** other - this */
  rsub(other: Scalar): Tensor {
    return wrap(N.rsubScalar(this.#handle, other));
  }
  maximum(other: Tensor): Tensor {
    return wrap(N.maximum(this.#handle, handleOf(other, 'other', 'maximum')));
  }
  minimum(other: Tensor): Tensor {
    return wrap(N.minimum(this.#handle, handleOf(other, 'other', 'minimum')));
  }
  atan2(other: Tensor): Tensor {
    return wrap(N.atan2(this.#handle, handleOf(other, 'other', 'atan2')));
  }

  eq(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'eq', 'eqScalar', 'other');
  }
  ne(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'ne', 'neScalar', 'other');
  }
  lt(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'lt', 'ltScalar', 'other');
  }
  le(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'le', 'leScalar', 'other');
  }
  gt(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'gt', 'gtScalar', 'other');
  }
  ge(other: Tensor | Scalar): Tensor {
    return scalarOrTensor(this, other, 'ge', 'geScalar', 'other');
  }
  logicalAnd(other: Tensor): Tensor {
    return wrap(N.logicalAnd(this.#handle, handleOf(other, 'other', 'logicalAnd')));
  }
  logicalOr(other: Tensor): Tensor {
    return wrap(N.logicalOr(this.#handle, handleOf(other, 'other', 'logicalOr')));
  }
  logicalXor(other: Tensor): Tensor {
    return wrap(N.logicalXor(this.#handle, handleOf(other, 'other', 'logicalXor')));
  }
  logicalNot(): Tensor {
    return wrap(N.logicalNot(this.#handle));
  }
  /** Same shape and dtype and equal elements. */
  equal(other: Tensor): boolean {
    return N.equal(this.#handle, handleOf(other, 'other', 'equal'));
  }
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8, equalNan = false): boolean {
    return N.allclose(this.#handle, handleOf(other, 'other', 'allclose'), rtol, atol, equalNan);
  }

  neg(): Tensor {
    return wrap(N.neg(this.#handle));
  }
  abs(): Tensor {
    return wrap(N.abs(this.#handle));
  }
  exp(): Tensor {
    return wrap(N.exp(this.#handle));
  }
  log(): Tensor {
    return wrap(N.log(this.#handle));
  }
  log2(): Tensor {
    return wrap(N.log2(this.#handle));
  }
  log1p(): Tensor {
    return wrap(N.log1p(this.#handle));
  }
  expm1(): Tensor {
    return wrap(N.expm1(this.#handle));
  }
  sqrt(): Tensor {
    return wrap(N.sqrt(this.#handle));
  }
  rsqrt(): Tensor {
    return wrap(N.rsqrt(this.#handle));
  }
  square(): Tensor {
    return wrap(N.square(this.#handle));
  }
  reciprocal(): Tensor {
    return wrap(N.reciprocal(this.#handle));
  }
  sin(): Tensor {
    return wrap(N.sin(this.#handle));
  }
  cos(): Tensor {
    return wrap(N.cos(this.#handle));
  }
  tanh(): Tensor {
    return wrap(N.tanh(this.#handle));
  }
  sigmoid(): Tensor {
    return wrap(N.sigmoid(this.#handle));
  }
  relu(): Tensor {
    return wrap(N.relu(this.#handle));
  }
  silu(): Tensor {
    return wrap(N.silu(this.#handle));
  }
  erf(): Tensor {
    return wrap(N.erf(this.#handle));
  }
  floor(): Tensor {
    return wrap(N.floor(this.#handle));
  }
  ceil(): Tensor {
    return wrap(N.ceil(this.#handle));
  }
  round(): Tensor {
    return wrap(N.round(this.#handle));
  }
  trunc(): Tensor {
    return wrap(N.trunc(this.#handle));
  }
  sign(): Tensor {
    return wrap(N.sign(this.#handle));
  }
  isnan(): Tensor {
    return wrap(N.isnan(this.#handle));
  }
  isinf(): Tensor {
    return wrap(N.isinf(this.#handle));
  }
  isfinite(): Tensor {
    return wrap(N.isfinite(this.#handle));
  }

  clamp(min?: number | null, max?: number | null): Tensor {
    return wrap(N.clamp(this.#handle, min ?? null, max ?? null));
  }
  maskedFill(mask: Tensor, value: Scalar): Tensor {
    return wrap(N.maskedFill(this.#handle, handleOf(mask, 'mask', 'maskedFill'), value));
  }
  /** where(condition, this, other) */
  where(condition: Tensor, other: Tensor): Tensor {
    return wrap(N.where(handleOf(condition, 'condition', 'where'), this.#handle, handleOf(other, 'other', 'where')));
  }
  lerp(end: Tensor, weight: number): Tensor {
    return wrap(N.lerp(this.#handle, handleOf(end, 'end', 'lerp'), weight));
  }
  addcmul(a: Tensor, b: Tensor, value = 1): Tensor {
    return wrap(N.addcmul(this.#handle, handleOf(a, 'tensor1', 'addcmul'), handleOf(b, 'tensor2', 'addcmul'), value));
  }
  addcdiv(a: Tensor, b: Tensor, value = 1): Tensor {
    return wrap(N.addcdiv(this.#handle, handleOf(a, 'tensor1', 'addcdiv'), handleOf(b, 'tensor2', 'addcdiv'), value));
  }

  // ---- in place (each returns this) -------------------------------------------------------------

  add_(other: Tensor | Scalar, alpha?: number): this {
    return this.#inplace(other, 'add_', 'addScalar_', alpha);
  }
  sub_(other: Tensor | Scalar, alpha?: number): this {
    return this.#inplace(other, 'sub_', 'subScalar_', alpha);
  }
  mul_(other: Tensor | Scalar): this {
    return this.#inplace(other, 'mul_', 'mulScalar_');
  }
  div_(other: Tensor | Scalar): this {
    return this.#inplace(other, 'div_', 'divScalar_');
  }
  pow_(other: Tensor | Scalar): this {
    return this.#inplace(other, 'pow_', 'powScalar_');
  }
  neg_(): this {
    N.neg_(this.#handle);
    return this;
  }
  abs_(): this {
    N.abs_(this.#handle);
    return this;
  }
  exp_(): this {
    N.exp_(this.#handle);
    return this;
  }
  log_(): this {
    N.log_(this.#handle);
    return this;
  }
  sqrt_(): this {
    N.sqrt_(this.#handle);
    return this;
  }
  sigmoid_(): this {
    N.sigmoid_(this.#handle);
    return this;
  }
  tanh_(): this {
    N.tanh_(this.#handle);
    return this;
  }
  relu_(): this {
    N.relu_(this.#handle);
    return this;
  }
  silu_(): this {
    N.silu_(this.#handle);
    return this;
  }
  zero_(): this {
    N.zero_(this.#handle);
    return this;
  }
  fill_(value: Scalar): this {
    N.fill_(this.#handle, value);
    return this;
  }
  clamp_(min?: number | null, max?: number | null): this {
    N.clamp_(this.#handle, min ?? null, max ?? null);
    return this;
  }
  maskedFill_(mask: Tensor, value: Scalar): this {
    N.maskedFill_(this.#handle, handleOf(mask, 'mask', 'maskedFill_'), value);
    return this;
  }
  copy_(src: Tensor): this {
    N.copy_(this.#handle, handleOf(src, 'src', 'copy_'));
    return this;
  }
  uniform_(from = 0, to = 1): this {
    N.uniform_(this.#handle, from, to);
    return this;
  }
  normal_(mean = 0, std = 1): this {
    N.normal_(this.#handle, mean, std);
    return this;
  }
  scatter_(dim: number, index: Tensor, src: Tensor): this {
    N.scatter_(this.#handle, dim, handleOf(index, 'index', 'scatter_'), handleOf(src, 'src', 'scatter_'));
    return this;
  }
  /** this[indices] = values (accumulate adds instead). null in `indices` stands for a full slice. */
  indexPut_(indices: ReadonlyArray<Tensor | null>, values: Tensor, accumulate = false): this {
    N.indexPut_(
      this.#handle,
      handleList(indices, 'indices', 'indexPut_', true),
      handleOf(values, 'values', 'indexPut_'),
      accumulate,
    );
    return this;
  }

  #inplace(other: Tensor | Scalar, tensorOp: string, scalarOp: string, alpha?: number): this {
    const scalar = typeof other === 'number' || typeof other === 'boolean';
    const operand = scalar ? other : handleOf(other, 'other', tensorOp);
    if (alpha === undefined) N[scalar ? scalarOp : tensorOp](this.#handle, operand);
    else N[scalar ? scalarOp : tensorOp](this.#handle, operand, alpha);
    return this;
  }

  // ---- reductions -------------------------------------------------------------------------------

  sum(dim?: Dims, keepdim = false, options: { dtype?: DType } = {}): Tensor {
    const { dtype } = optionsArg(options, 'sum');
    return wrap(N.sum(this.#handle, this.#reducedDims(dim, keepdim, 'sum'), keepdim, optionalDtype(dtype)));
  }
  mean(dim?: Dims, keepdim = false, options: { dtype?: DType } = {}): Tensor {
    const { dtype } = optionsArg(options, 'mean');
    return wrap(N.mean(this.#handle, this.#reducedDims(dim, keepdim, 'mean'), keepdim, optionalDtype(dtype)));
  }
  // keepdim over every dim needs the dims spelled out (libtorch's all-dims overloads drop keepdim).
  #reducedDims(dim: Dims | undefined, keepdim: boolean, op: string): number[] | null {
    if (dim === undefined && keepdim) return Array.from({ length: this.ndim }, (_, k) => k);
    return dimsArg(dim, undefined, op);
  }
  prod(dim?: number, keepdim = false): Tensor {
    return wrap(N.prod(this.#handle, dim ?? null, keepdim));
  }
  amax(dim?: Dims, keepdim = false): Tensor {
    return wrap(N.amax(this.#handle, dimsArg(dim, undefined, 'amax'), keepdim));
  }
  amin(dim?: Dims, keepdim = false): Tensor {
    return wrap(N.amin(this.#handle, dimsArg(dim, undefined, 'amin'), keepdim));
  }
  /** max() is the largest element; max(dim) is [values, indices] along dim. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): [Tensor, Tensor];
  max(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return wrap(N.max(this.#handle, null, false));
    return wrapAll(N.max(this.#handle, checkInteger(dim, 'dim', 'max'), keepdim)) as [Tensor, Tensor];
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): [Tensor, Tensor];
  min(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return wrap(N.min(this.#handle, null, false));
    return wrapAll(N.min(this.#handle, checkInteger(dim, 'dim', 'min'), keepdim)) as [Tensor, Tensor];
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return wrap(N.argmax(this.#handle, dim ?? null, keepdim));
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return wrap(N.argmin(this.#handle, dim ?? null, keepdim));
  }
  logsumexp(dim: Dims, keepdim = false): Tensor {
    return wrap(N.logsumexp(this.#handle, dimsArg(dim, undefined, 'logsumexp'), keepdim));
  }
  /** Variance with Bessel's correction by default (correction = 1), as PyTorch. */
  var(dim?: Dims, options: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return wrap(
      N.var(
        this.#handle,
        dimsArg(dim, undefined, 'var'),
        checkInteger(options.correction ?? 1, 'correction', 'var'),
        options.keepdim ?? false,
      ),
    );
  }
  std(dim?: Dims, options: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return wrap(
      N.std(
        this.#handle,
        dimsArg(dim, undefined, 'std'),
        checkInteger(options.correction ?? 1, 'correction', 'std'),
        options.keepdim ?? false,
      ),
    );
  }
  /** Vector p-norm over dim (all elements when omitted). */
  norm(p = 2, dim?: Dims, keepdim = false): Tensor {
    return wrap(N.norm(this.#handle, p, dimsArg(dim, undefined, 'norm'), keepdim));
  }
  all(dim?: number, keepdim = false): Tensor {
    return wrap(N.all(this.#handle, dim ?? null, keepdim));
  }
  any(dim?: number, keepdim = false): Tensor {
    return wrap(N.any(this.#handle, dim ?? null, keepdim));
  }
  cumsum(dim: number, options: { dtype?: DType } = {}): Tensor {
    const { dtype } = optionsArg(options, 'cumsum');
    return wrap(N.cumsum(this.#handle, dim, optionalDtype(dtype)));
  }
  cumprod(dim: number, options: { dtype?: DType } = {}): Tensor {
    const { dtype } = optionsArg(options, 'cumprod');
    return wrap(N.cumprod(this.#handle, dim, optionalDtype(dtype)));
  }
  softmax(dim: number, options: { dtype?: DType } = {}): Tensor {
    const { dtype } = optionsArg(options, 'softmax');
    return wrap(N.softmax(this.#handle, dim, optionalDtype(dtype)));
  }
  logSoftmax(dim: number, options: { dtype?: DType } = {}): Tensor {
    const { dtype } = optionsArg(options, 'logSoftmax');
    return wrap(N.logSoftmax(this.#handle, dim, optionalDtype(dtype)));
  }
  sort(dim = -1, descending = false, stable = false): [Tensor, Tensor] {
    return wrapAll(N.sort(this.#handle, dim, descending, stable)) as [Tensor, Tensor];
  }
  argsort(dim = -1, descending = false): Tensor {
    return wrap(N.argsort(this.#handle, dim, descending));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return wrapAll(N.topk(this.#handle, checkInteger(k, 'k', 'topk'), dim, largest, sorted)) as [Tensor, Tensor];
  }
  multinomial(numSamples: number, replacement = false): Tensor {
    return wrap(N.multinomial(this.#handle, checkInteger(numSamples, 'numSamples', 'multinomial'), replacement));
  }

  // ---- shape ------------------------------------------------------------------------------------

  view(...shape: Array<number | readonly number[]>): Tensor {
    return wrap(N.view(this.#handle, shapeArgs(shape, undefined, 'view')));
  }
  reshape(...shape: Array<number | readonly number[]>): Tensor {
    return wrap(N.reshape(this.#handle, shapeArgs(shape, undefined, 'reshape')));
  }
  permute(...dims: Array<number | readonly number[]>): Tensor {
    return wrap(N.permute(this.#handle, shapeArgs(dims, 'dims', 'permute')));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return wrap(N.transpose(this.#handle, dim0, dim1));
  }
  /** Transpose of a matrix (dims 0 and 1). */
  t(): Tensor {
    return wrap(N.transpose(this.#handle, 0, 1));
  }
  expand(...shape: Array<number | readonly number[]>): Tensor {
    return wrap(N.expand(this.#handle, shapeArgs(shape, undefined, 'expand')));
  }
  expandAs(other: Tensor): Tensor {
    return wrap(N.expand(this.#handle, N.shape(handleOf(other, 'other', 'expandAs'))));
  }
  repeat(...repeats: Array<number | readonly number[]>): Tensor {
    return wrap(N.repeat(this.#handle, shapeArgs(repeats, 'repeats', 'repeat')));
  }
  repeatInterleave(repeats: number, dim?: number): Tensor {
    return wrap(N.repeatInterleave(this.#handle, repeats, dim ?? null));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return wrap(N.flatten(this.#handle, startDim, endDim));
  }
  unflatten(dim: number, sizes: readonly number[]): Tensor {
    return wrap(N.unflatten(this.#handle, dim, checkIntegers(sizes, 'sizes', 'unflatten')));
  }
  squeeze(dim?: number): Tensor {
    return wrap(N.squeeze(this.#handle, dim ?? null));
  }
  unsqueeze(dim: number): Tensor {
    return wrap(N.unsqueeze(this.#handle, checkInteger(dim, 'dim', 'unsqueeze')));
  }
  flip(dims: Dims): Tensor {
    return wrap(N.flip(this.#handle, dimsArg(dims, undefined, 'flip')));
  }
  roll(shifts: Dims, dims: Dims): Tensor {
    return wrap(N.roll(this.#handle, dimsArg(shifts, 'shifts', 'roll'), dimsArg(dims, undefined, 'roll')));
  }
  movedim(source: Dims, destination: Dims): Tensor {
    return wrap(
      N.movedim(this.#handle, dimsArg(source, 'source', 'movedim'), dimsArg(destination, 'destination', 'movedim')),
    );
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return wrap(N.narrow(this.#handle, dim, start, length));
  }
  /** Python's a[start:end:step] along dim; null start/end mean the ends. */
  slice(dim: number, start: number | null = null, end: number | null = null, step = 1): Tensor {
    return wrap(N.slice(this.#handle, dim, start, end, step));
  }
  select(dim: number, index: number): Tensor {
    return wrap(N.select(this.#handle, dim, index));
  }
  split(splitSize: number | readonly number[], dim = 0): Tensor[] {
    const sizes = typeof splitSize === 'number' ? splitSize : checkIntegers(splitSize, 'splitSize', 'split');
    return wrapAll(N.split(this.#handle, sizes, dim));
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return wrapAll(N.chunk(this.#handle, chunks, dim));
  }
  unbind(dim = 0): Tensor[] {
    return wrapAll(N.unbind(this.#handle, dim));
  }
  triu(diagonal = 0): Tensor {
    return wrap(N.triu(this.#handle, diagonal));
  }
  tril(diagonal = 0): Tensor {
    return wrap(N.tril(this.#handle, diagonal));
  }

  // ---- indexing ---------------------------------------------------------------------------------

  gather(dim: number, index: Tensor): Tensor {
    return wrap(N.gather(this.#handle, dim, handleOf(index, 'index', 'gather')));
  }
  scatter(dim: number, index: Tensor, src: Tensor | Scalar): Tensor {
    if (typeof src === 'number' || typeof src === 'boolean')
      return wrap(N.scatterValue(this.#handle, dim, handleOf(index, 'index', 'scatter'), src));
    return wrap(N.scatter(this.#handle, dim, handleOf(index, 'index', 'scatter'), handleOf(src, 'src', 'scatter')));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(
      N.scatterAdd(this.#handle, dim, handleOf(index, 'index', 'scatterAdd'), handleOf(src, 'src', 'scatterAdd')),
    );
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(N.indexSelect(this.#handle, dim, handleOf(index, 'index', 'indexSelect')));
  }
  indexAdd(dim: number, index: Tensor, source: Tensor): Tensor {
    return wrap(
      N.indexAdd(this.#handle, dim, handleOf(index, 'index', 'indexAdd'), handleOf(source, 'source', 'indexAdd')),
    );
  }
  /** Advanced indexing, Python's a[i0, i1, ...] with index tensors; null stands for ':'. */
  index(indices: ReadonlyArray<Tensor | null>): Tensor {
    return wrap(N.index(this.#handle, handleList(indices, 'indices', 'index', true)));
  }
  maskedSelect(mask: Tensor): Tensor {
    return wrap(N.maskedSelect(this.#handle, handleOf(mask, 'mask', 'maskedSelect')));
  }
  nonzero(): Tensor {
    return wrap(N.nonzero(this.#handle));
  }

  // ---- products ---------------------------------------------------------------------------------

  matmul(other: Tensor): Tensor {
    return wrap(N.matmul(this.#handle, handleOf(other, 'other', 'matmul')));
  }
  mm(other: Tensor): Tensor {
    return wrap(N.mm(this.#handle, handleOf(other, 'mat2', 'mm')));
  }
  bmm(other: Tensor): Tensor {
    return wrap(N.bmm(this.#handle, handleOf(other, 'mat2', 'bmm')));
  }
}

// Every method names itself in its errors (an argument the addon refuses is reported under the
// native op's name, which is not always the method's: float() calls `to`), and refuses a look-alike
// `this` such as Object.create(Tensor.prototype) before its body reads the private handle.
for (const name of Object.getOwnPropertyNames(Tensor.prototype)) {
  const descriptor = Object.getOwnPropertyDescriptor(Tensor.prototype, name)!;
  const method = descriptor.value as unknown;
  if (name === 'constructor' || typeof method !== 'function') continue;
  const checked = function (this: unknown, ...args: unknown[]): unknown {
    if (!Tensor.isTensor(this)) throw notATensor(this, 'this', name);
    return method.apply(this, args);
  };
  // backward runs user code (JS autograd functions): what it throws must reach the caller as thrown.
  const value = name === 'backward' ? checked : namedOp(name, checked);
  Object.defineProperty(Tensor.prototype, name, { ...descriptor, value });
}

function scalarOrTensorAlpha(self: Tensor, other: Tensor | Scalar, op: 'add' | 'sub', alpha: number): Tensor {
  if (typeof other === 'number' || typeof other === 'boolean') return wrap(N[`${op}Scalar`](self.handle, other, alpha));
  return wrap(N[op](self.handle, handleOf(other, 'other', op), alpha));
}

export { wrap, wrapAll, optionalHandle, optionalDtype };
