// A minimal WebAssembly binary writer: just enough to emit the kernels of resize_kernels.ts,
// normalize_kernel.ts and png_kernels.ts (one memory, i32 parameters, i32 and v128 locals,
// structured control flow, a few SIMD opcodes). Emitting the module at load time keeps the kernels as reviewable source
// in this package, with no toolchain and no opaque binary.

/** Unsigned LEB128. */
export function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

/** Signed LEB128 of an int32. */
export function sleb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    if ((value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

const I32 = 0x7f;
const V128 = 0x7b;

/** Instruction encoders (names as in the text format). */
export const op = {
  get: (local: number) => [0x20, ...uleb(local)],
  set: (local: number) => [0x21, ...uleb(local)],
  tee: (local: number) => [0x22, ...uleb(local)],
  i32: (value: number) => [0x41, ...sleb(value)],
  add: [0x6a],
  sub: [0x6b],
  mul: [0x6c],
  and: [0x71],
  xor: [0x73],
  shrS: [0x75],
  shrU: [0x76],
  eqz: [0x45],
  leS: [0x4c],
  select: [0x1b],
  /** i32.load8_u / i32.store8 at byte alignment, with a constant offset. */
  load8: (offset = 0) => [0x2d, 0, ...uleb(offset)],
  store8: (offset = 0) => [0x3a, 0, ...uleb(offset)],
  geU: [0x4f],
  ltU: [0x49],
  /** i32.load with 4-byte alignment. */
  load: [0x28, 2, 0],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  end: [0x0b],
  simd: (code: number, ...immediates: number[]) => [0xfd, ...uleb(code), ...immediates],
};

/** SIMD opcodes used by the kernels (the 0xFD-prefixed numbers of the SIMD proposal). */
export const SIMD = {
  load: 0,
  store: 11,
  i32x4Splat: 17,
  store32Lane: 90,
  load32Zero: 92,
  i8x16NarrowI16x8U: 102,
  i16x8NarrowI32x4S: 133,
  i16x8ExtendLowI8x16U: 137,
  i16x8ExtendHighI8x16U: 138,
  i32x4ExtendLowI16x8U: 169,
  i32x4ExtendHighI16x8U: 170,
  i32x4ShrS: 172,
  i32x4Add: 174,
  i32x4Mul: 181,
} as const;

/** A function: i32 parameters, extra locals (i32 or v128), and its body. */
export interface WasmFunction {
  name: string;
  params: number;
  locals: Array<'i32' | 'v128'>;
  body: number[];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** A module exporting `functions` (no results) and its own growable memory as "memory". */
export function wasmModule(functions: WasmFunction[], memoryPages: number): Uint8Array {
  const types = functions.map((f) => [0x60, ...uleb(f.params), ...Array<number>(f.params).fill(I32), 0]);
  const encoder = new TextEncoder();
  const name = (s: string) => {
    const bytes = [...encoder.encode(s)];
    return [...uleb(bytes.length), ...bytes];
  };
  const exports = [[...name('memory'), 0x02, 0], ...functions.map((f, k) => [...name(f.name), 0x00, ...uleb(k)])];
  const code = functions.map((f) => {
    const locals = f.locals.map((type) => [1, type === 'i32' ? I32 : V128]);
    const entry = [...vector(locals), ...f.body, ...op.end];
    return [...uleb(entry.length), ...entry];
  });
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vector(types)),
    ...section(3, vector(functions.map((_, k) => uleb(k)))),
    ...section(5, vector([[0x00, ...uleb(memoryPages)]])),
    ...section(7, vector(exports)),
    ...section(10, vector(code)),
  ]);
}
