// Element types: the names users write (PyTorch's), libtorch's ScalarType codes, sizes, and the JS
// typed arrays that carry each type's bytes.

export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

// c10::ScalarType enumerators; stable across libtorch 1.x and 2.x.
const CODES: Record<DType, number> = {
  uint8: 0,
  int8: 1,
  int16: 2,
  int32: 3,
  int64: 4,
  float16: 5,
  float32: 6,
  float64: 7,
  bool: 11,
  bfloat16: 15,
};

const BY_CODE = new Map<number, DType>(Object.entries(CODES).map(([name, code]) => [code, name as DType]));

export const DTYPES = Object.keys(CODES) as DType[];

export const ELEMENT_SIZE: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export type TypedArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

// float16 and bfloat16 travel as their raw 16-bit patterns (Node 20 has no Float16Array).
export const TYPED_ARRAY: Record<DType, new (buffer: ArrayBuffer, offset?: number, length?: number) => TypedArray> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

export function dtypeCode(dtype: DType, argument = 'dtype'): number {
  const code = CODES[dtype];
  if (code === undefined) {
    throw new TypeError(`Expected one of ${DTYPES.join(', ')} for ${argument} but received ${String(dtype)}`);
  }
  return code;
}

export function dtypeFromCode(code: number): DType {
  const dtype = BY_CODE.get(code);
  if (dtype === undefined) throw new TypeError(`unsupported libtorch dtype code ${code}`);
  return dtype;
}

export const isFloatingPoint = (dtype: DType): boolean =>
  dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
