// Creating tensors: from JS data, filled, ranges, random, and the *Like forms.
import {
  checkDevice,
  checkInteger,
  checkNumber,
  invalidArgument,
  isPlainObject,
  shapeArgs,
  type Device,
} from './args.js';
import { dtypeCode, ELEMENT_SIZE, type DType, type TypedArray } from './dtype.js';
import { native as N } from './native.js';
import { handleOf, type Tensor, wrap } from './tensor.js';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

type ShapeArgs = Array<number | readonly number[]>;
// A shape, then optionally the options: (2, 3), ([2, 3]), (2, 3, { dtype }), ([2, 3], undefined).
type ShapeAndOptions = Array<number | readonly number[] | TensorOptions | undefined>;
export type NestedArray = number | boolean | ReadonlyArray<NestedArray>;

// A dtype's code; a bad one is named with the op.
function dtypeFor(dtype: DType, op: string): number {
  try {
    return dtypeCode(dtype);
  } catch (error) {
    throw new TypeError(`${op}: e${(error as Error).message.slice(1)}`);
  }
}

// Applies dtype, device and requiresGrad to a creation call taking (dtypeCode, device) last.
function create(
  options: TensorOptions,
  make: (dtype: number, device: string) => number,
  defaultDtype: DType,
  op: string,
): Tensor {
  if (!isPlainObject(options)) {
    throw invalidArgument('options', 'an object { dtype, device, requiresGrad }', options, op);
  }
  const t = wrap(make(dtypeFor(options.dtype ?? defaultDtype, op), checkDevice(options.device ?? 'cpu', 'device', op)));
  if (options.requiresGrad) N.requiresGrad_(t.handle, true);
  return t;
}

// The options may trail the shape: zeros(2, 3, { dtype }) or zeros([2, 3], { dtype }).
// A trailing undefined is absent options, as in zeros(shape, undefined).
function splitShapeAndOptions(args: ShapeAndOptions, op: string): [number[], TensorOptions] {
  if (args.length > 1 && args[args.length - 1] === undefined) return splitShapeAndOptions(args.slice(0, -1), op);
  const last = args[args.length - 1];
  const hasOptions = isPlainObject(last);
  if (!hasOptions && args.length > 1 && Array.isArray(args[0])) {
    throw invalidArgument('options', 'an object { dtype, device, requiresGrad } after the shape array', last, op);
  }
  const shapePart = (hasOptions ? args.slice(0, -1) : args) as ShapeArgs;
  return [shapeArgs(shapePart, 'shape', op), hasOptions ? (last as TensorOptions) : {}];
}

const TYPED_DTYPE = new Map<unknown, DType>([
  [Float32Array, 'float32'],
  [Float64Array, 'float64'],
  [BigInt64Array, 'int64'],
  [Int32Array, 'int32'],
  [Int16Array, 'int16'],
  [Int8Array, 'int8'],
  [Uint8Array, 'uint8'],
]);

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let level: NestedArray = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0] as NestedArray;
  }
  return shape;
}

// Flattens nested arrays, checking that every row at a depth has the shape's length.
function flatten(data: NestedArray, shape: number[]): Array<number | boolean> {
  const out: Array<number | boolean> = [];
  const visit = (value: NestedArray, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(value))
        throw new RangeError(`tensor: data${path} is nested deeper than its siblings (ragged nested arrays)`);
      if (typeof value !== 'number' && typeof value !== 'boolean')
        throw invalidArgument(`data${path}`, 'a number or boolean', value, 'tensor');
      out.push(value);
      return;
    }
    if (!Array.isArray(value) || value.length !== shape[depth]) {
      throw new RangeError(`tensor: data${path} should be an array of length ${shape[depth]} (ragged nested arrays)`);
    }
    value.forEach((item, k) => visit(item, depth + 1, `${path}[${k}]`));
  };
  visit(data, 0, '');
  return out;
}

function inferDtype(values: Array<number | boolean>): DType {
  if (values.length > 0 && values.every((v) => typeof v === 'boolean')) return 'bool';
  if (values.some((v) => typeof v === 'boolean')) throw new TypeError('tensor: data mixes booleans and numbers');
  return values.every((v) => Number.isInteger(v)) && values.length > 0 ? 'int64' : 'float32';
}

function bytesOf(values: Array<number | boolean>, dtype: DType): TypedArray {
  switch (dtype) {
    case 'int64':
      return BigInt64Array.from(values, (v) => BigInt(Math.trunc(Number(v))));
    case 'float64':
      return Float64Array.from(values, Number);
    case 'int32':
      return Int32Array.from(values, Number);
    case 'int16':
      return Int16Array.from(values, Number);
    case 'int8':
      return Int8Array.from(values, Number);
    case 'uint8':
      return Uint8Array.from(values, Number);
    case 'bool':
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
    default:
      return Float32Array.from(values, Number); // float32, and the source for float16 / bfloat16
  }
}

/**
 * A tensor from nested arrays, a number, or a typed array (with an optional shape). Integers give
 * int64 and booleans bool, as in PyTorch; other numbers float32.
 */
export function tensor(
  data: NestedArray | TypedArray,
  options: TensorOptions & { shape?: readonly number[] } = {},
): Tensor {
  if (!isPlainObject(options))
    throw invalidArgument('options', 'an object { dtype, device, requiresGrad, shape? }', options, 'tensor');
  if (ArrayBuffer.isView(data)) return fromTypedArray(data as TypedArray, options);
  const shape = inferShape(data);
  const values = flatten(data, shape);
  const dtype = options.dtype ?? inferDtype(values);
  const staged = dtype === 'float16' || dtype === 'bfloat16' ? 'float32' : dtype;
  let t = wrap(N.fromBytes(bytesOf(values, staged), dtypeFor(staged, 'tensor'), shape));
  if (staged !== dtype || (options.device ?? 'cpu') !== 'cpu') {
    const converted = t.to({ dtype, device: checkDevice(options.device ?? 'cpu', 'device', 'tensor') });
    t.dispose();
    t = converted;
  }
  if (options.shape) {
    const reshaped = t.reshape([...options.shape]);
    t.dispose();
    t = reshaped;
  }
  if (options.requiresGrad) N.requiresGrad_(t.handle, true);
  return t;
}

function fromTypedArray(data: TypedArray, options: TensorOptions & { shape?: readonly number[] }): Tensor {
  const natural = TYPED_DTYPE.get(data.constructor);
  const requested = options.dtype ?? natural;
  if (natural === undefined && requested !== 'float16' && requested !== 'bfloat16') {
    throw invalidArgument('dtype', "'float16' or 'bfloat16' for the raw bits of a Uint16Array", requested, 'tensor');
  }
  const dtype = requested as DType;
  const shape = options.shape ? shapeArgs([options.shape], 'shape', 'tensor') : [data.length];
  // The array's own type (or raw 16-bit float bits): its bytes are the tensor. Otherwise convert
  // the values, as PyTorch's tensor(array, dtype) does.
  if (natural === undefined || natural === dtype) {
    return create(options, () => N.fromBytes(data, dtypeFor(dtype, 'tensor'), shape), dtype, 'tensor');
  }
  using staged = wrap(N.fromBytes(data, dtypeCode(natural), shape));
  return create(options, (code, device) => N.to(staged.handle, code, device, true), dtype, 'tensor');
}

/**
 * A tensor over the bytes of a typed array, Buffer or ArrayBuffer without copying (torch.frombuffer):
 * writes through either side show in the other, and the tensor keeps the buffer alive. Do not
 * transfer (detach) the buffer while the tensor lives; use torch.tensor for an independent copy.
 */
export function frombuffer(
  buffer: ArrayBufferView | ArrayBuffer,
  options: { dtype: DType; shape?: readonly number[] },
): Tensor {
  if (!(buffer instanceof ArrayBuffer) && !ArrayBuffer.isView(buffer)) {
    throw invalidArgument('buffer', 'an ArrayBuffer, a typed array or a Buffer', buffer, 'frombuffer');
  }
  if (!isPlainObject(options)) {
    throw invalidArgument('options', 'an object { dtype, shape? }', options, 'frombuffer');
  }
  const code = dtypeFor(options.dtype, 'frombuffer');
  const bytes =
    buffer instanceof ArrayBuffer
      ? new Uint8Array(buffer)
      : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const count = bytes.byteLength / ELEMENT_SIZE[options.dtype];
  if (!options.shape && !Number.isInteger(count)) {
    throw new RangeError(`frombuffer: ${bytes.byteLength} bytes is not a whole number of ${options.dtype} elements`);
  }
  const shape = options.shape ? shapeArgs([options.shape], 'shape', 'frombuffer') : [count];
  return wrap(N.fromBuffer(bytes, code, shape));
}

export function zeros(...args: ShapeAndOptions): Tensor {
  const [shape, options] = splitShapeAndOptions(args, 'zeros');
  return create(options, (d, dev) => N.zeros(shape, d, dev), 'float32', 'zeros');
}

export function ones(...args: ShapeAndOptions): Tensor {
  const [shape, options] = splitShapeAndOptions(args, 'ones');
  return create(options, (d, dev) => N.ones(shape, d, dev), 'float32', 'ones');
}

export function empty(...args: ShapeAndOptions): Tensor {
  const [shape, options] = splitShapeAndOptions(args, 'empty');
  return create(options, (d, dev) => N.empty(shape, d, dev), 'float32', 'empty');
}

export function rand(...args: ShapeAndOptions): Tensor {
  const [shape, options] = splitShapeAndOptions(args, 'rand');
  return create(options, (d, dev) => N.rand(shape, d, dev), 'float32', 'rand');
}

export function randn(...args: ShapeAndOptions): Tensor {
  const [shape, options] = splitShapeAndOptions(args, 'randn');
  return create(options, (d, dev) => N.randn(shape, d, dev), 'float32', 'randn');
}

/** full(shape, value): the dtype follows the value (bool, int64, float32) unless given. */
export function full(shape: readonly number[], value: number | boolean, options: TensorOptions = {}): Tensor {
  const dims = shapeArgs([shape], 'shape', 'full');
  const natural: DType = typeof value === 'boolean' ? 'bool' : Number.isInteger(value) ? 'int64' : 'float32';
  return create(options, (d, dev) => N.full(dims, value, d, dev), natural, 'full');
}

/** arange(end) or arange(start, end, step?): int64 when every bound is an integer, as PyTorch. */
export function arange(
  startOrEnd: number,
  end?: number | TensorOptions,
  step?: number | TensorOptions,
  options?: TensorOptions,
): Tensor {
  const numbers = [startOrEnd, end, step].filter((v): v is number => typeof v === 'number');
  const opts = [end, step, options].find((v): v is TensorOptions => typeof v === 'object') ?? {};
  const [s, e, st] = numbers.length === 1 ? [0, numbers[0]!, 1] : [numbers[0]!, numbers[1]!, numbers[2] ?? 1];
  numbers.forEach((v, k) => checkNumber(v, ['start', 'end', 'step'][k]!, 'arange'));
  const natural: DType = [s, e, st].every(Number.isInteger) ? 'int64' : 'float32';
  return create(opts, (d, dev) => N.arange(s, e, st, d, dev), natural, 'arange');
}

export function linspace(start: number, end: number, steps: number, options: TensorOptions = {}): Tensor {
  const op = 'linspace';
  checkInteger(steps, 'steps', op);
  const [from, to] = [checkNumber(start, 'start', op), checkNumber(end, 'end', op)];
  return create(options, (d, dev) => N.linspace(from, to, steps, d, dev), 'float32', op);
}

export function eye(n: number, m: number = n, options: TensorOptions = {}): Tensor {
  const [rows, columns] = [checkInteger(n, 'n', 'eye'), checkInteger(m, 'm', 'eye')];
  return create(options, (d, dev) => N.eye(rows, columns, d, dev), 'float32', 'eye');
}

/** Integers uniformly drawn from [low, high). */
export function randint(low: number, high: number, shape: readonly number[], options: TensorOptions = {}): Tensor {
  const op = 'randint';
  const [from, to] = [checkInteger(low, 'low', op), checkInteger(high, 'high', op)];
  const dims = shapeArgs([shape], 'shape', op);
  return create(options, (d, dev) => N.randint(from, to, dims, d, dev), 'int64', op);
}

// The *Like forms keep the input's shape, dtype and device; dtype may be overridden.
function like(
  op: string,
  input: Tensor,
  options: TensorOptions,
  make: (handle: number, dtype: number | null) => number,
): Tensor {
  const handle = handleOf(input, 'input', op);
  if (!isPlainObject(options)) {
    throw invalidArgument('options', 'an object { dtype, requiresGrad }', options, op);
  }
  const t = wrap(make(handle, options.dtype === undefined ? null : dtypeFor(options.dtype, op)));
  if (options.requiresGrad) N.requiresGrad_(t.handle, true);
  return t;
}

export const zerosLike = (input: Tensor, options: TensorOptions = {}): Tensor =>
  like('zerosLike', input, options, N.zerosLike!);
export const onesLike = (input: Tensor, options: TensorOptions = {}): Tensor =>
  like('onesLike', input, options, N.onesLike!);
export const emptyLike = (input: Tensor, options: TensorOptions = {}): Tensor =>
  like('emptyLike', input, options, N.emptyLike!);
export const randLike = (input: Tensor, options: TensorOptions = {}): Tensor =>
  like('randLike', input, options, N.randLike!);
export const randnLike = (input: Tensor, options: TensorOptions = {}): Tensor =>
  like('randnLike', input, options, N.randnLike!);
export const fullLike = (input: Tensor, value: number | boolean, options: TensorOptions = {}): Tensor =>
  like('fullLike', input, options, (h, d) => N.fullLike(h, value, d));
export const randintLike = (input: Tensor, low: number, high: number, options: TensorOptions = {}): Tensor =>
  like('randintLike', input, options, (h, d) =>
    N.randintLike(h, checkInteger(low, 'low', 'randintLike'), checkInteger(high, 'high', 'randintLike'), d),
  );

/** Seeds libtorch's default CPU (and CUDA) generators. */
export function manualSeed(seed: number): void {
  N.manualSeed(checkInteger(seed, 'seed', 'manualSeed'));
}

/** The default CPU generator's state as a uint8 tensor (torch.get_rng_state). */
export function getRngState(): Tensor {
  return wrap(N.getRngState());
}

/** Restores a state returned by getRngState (torch.set_rng_state). */
export function setRngState(state: Tensor): void {
  N.setRngState(handleOf(state, 'state', 'setRngState'));
}
