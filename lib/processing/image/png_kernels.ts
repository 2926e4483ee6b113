// PNG row filters 1-4 (Sub, Up, Average, Paeth) as scalar WebAssembly kernels: the unfiltering is
// a chain of byte dependencies that JavaScript runs several times slower than compiled code. Each
// kernel undoes bytes [i0, i0 + n) of one row: src points at the filtered bytes, out at the
// output, up at the previous output row (all at i0); left neighbours are out - bpp and up - bpp,
// so the caller handles the first bpp bytes of a row, whose left neighbours are zero.
import { op, type WasmFunction } from './wasm_module.js';

const {
  get,
  set,
  tee,
  i32,
  add,
  sub,
  and,
  xor,
  shrS,
  shrU,
  eqz,
  leS,
  ltU,
  select,
  load8,
  store8,
  block,
  loop,
  brIf,
  end,
} = op;

const [SRC, OUT, UP, N, BPP] = [0, 1, 2, 3, 4];
const [END, A, B, C, PA, PB, PC] = [5, 6, 7, 8, 9, 10, 11];

/** A loop over the row: `value` leaves the predictor on the stack; out = src + predictor. */
function rowLoop(name: string, predictor: number[]): WasmFunction {
  const body = [
    ...get(OUT),
    ...get(N),
    ...add,
    ...set(END),
    ...block,
    ...get(N),
    ...eqz,
    ...brIf(0),
    ...loop,
    ...get(OUT),
    ...get(SRC),
    ...load8(),
    ...predictor,
    ...add,
    ...store8(),
    ...get(SRC),
    ...i32(1),
    ...add,
    ...set(SRC),
    ...get(UP),
    ...i32(1),
    ...add,
    ...set(UP),
    ...get(OUT),
    ...i32(1),
    ...add,
    ...tee(OUT),
    ...get(END),
    ...ltU,
    ...brIf(0),
    ...end,
    ...end,
  ];
  return { name, params: 5, locals: Array(7).fill('i32'), body };
}

const left = [...get(OUT), ...get(BPP), ...sub, ...load8()];
const above = [...get(UP), ...load8()];
const aboveLeft = [...get(UP), ...get(BPP), ...sub, ...load8()];
/** |x| of the i32 on the stack, stored in `local`. */
const abs = (local: number) => [
  ...tee(local),
  ...i32(31),
  ...shrS,
  ...get(local),
  ...xor,
  ...get(local),
  ...i32(31),
  ...shrS,
  ...sub,
  ...set(local),
];

/** The four kernels: filterSub, filterUp, filterAverage, filterPaeth. */
export function pngKernels(): WasmFunction[] {
  const paeth = [
    ...left,
    ...set(A),
    ...above,
    ...set(B),
    ...aboveLeft,
    ...set(C),
    ...get(B),
    ...get(C),
    ...sub,
    ...abs(PA),
    ...get(A),
    ...get(C),
    ...sub,
    ...abs(PB),
    ...get(A),
    ...get(B),
    ...add,
    ...get(C),
    ...sub,
    ...get(C),
    ...sub,
    ...abs(PC),
    // pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
    ...get(A),
    ...get(B),
    ...get(C),
    ...get(PB),
    ...get(PC),
    ...leS,
    ...select,
    ...get(PA),
    ...get(PB),
    ...leS,
    ...get(PA),
    ...get(PC),
    ...leS,
    ...and,
    ...select,
  ];
  return [
    rowLoop('filterSub', left),
    rowLoop('filterUp', above),
    rowLoop('filterAverage', [...left, ...above, ...add, ...i32(1), ...shrU]),
    rowLoop('filterPaeth', paeth),
  ];
}
