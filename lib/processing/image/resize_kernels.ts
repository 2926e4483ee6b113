// The two passes of Pillow's BICUBIC resize as WebAssembly SIMD kernels (see resize.ts for the
// semantics). Each keeps Pillow's integer arithmetic: int32 sums of u8 * 22-bit weights from the
// rounding half, then >> 22 and a saturating narrow to u8 (Pillow's clip8). SIMD makes the passes
// several times faster than scalar JavaScript, which is what the preprocessing throughput hinges on.
import { op, SIMD, type WasmFunction } from './wasm_module.js';

const HALF = 1 << 21;
const SHIFT = 22;
const { get, set, tee, i32, add, mul, geU, ltU, load, block, loop, br, brIf, end, simd } = op;

/** v128 = splat(HALF) into a local. */
const initAcc = (local: number) => [...i32(HALF), ...simd(SIMD.i32x4Splat), ...set(local)];
/** acc += widen(h half) * w, the widen picking the low or high four u16 lanes. */
const macc = (acc: number, h: number, w: number, high: boolean) => [
  ...get(acc),
  ...get(h),
  ...simd(high ? SIMD.i32x4ExtendHighI16x8U : SIMD.i32x4ExtendLowI16x8U),
  ...get(w),
  ...simd(SIMD.i32x4Mul),
  ...simd(SIMD.i32x4Add),
  ...set(acc),
];
/** acc += the pixel at p + 3k (R, G, B, next R) times the weight at wp + 4k, via memarg offsets. */
const tap = (acc: number, p: number, wp: number, k: number) => [
  ...get(acc),
  ...get(p),
  ...simd(SIMD.load32Zero, 0, 3 * k),
  ...simd(SIMD.i16x8ExtendLowI8x16U),
  ...simd(SIMD.i32x4ExtendLowI16x8U),
  ...get(wp),
  0x28,
  2,
  4 * k,
  ...simd(SIMD.i32x4Splat),
  ...simd(SIMD.i32x4Mul),
  ...simd(SIMD.i32x4Add),
  ...set(acc),
];
const shifted = (acc: number) => [...get(acc), ...i32(SHIFT), ...simd(SIMD.i32x4ShrS)];
const increment = (local: number, by: number) => [...get(local), ...i32(by), ...add, ...set(local)];
/** memory[base + 4 * index] as i32. */
const loadAt = (base: number, index: number) => [...get(base), ...get(index), ...i32(4), ...mul, ...add, ...load];

/**
 * vertical(src, stride, out, outStride, outH, first, count, weights, ksize): output row y is
 * sum over t < count[y] of row (first[y] + t) of src times weights[y * ksize + t], 16 bytes at a
 * time (a row's last block spills into the next row, which is written after it; the caller pads).
 */
export function vertical(): WasmFunction {
  const [src, stride, out, outStride, outH, first, count, weights, ksize] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [y, i, t, n, p, wp, base, orow, wrow] = [9, 10, 11, 12, 13, 14, 15, 16, 17];
  const [a0, a1, a2, a3, v, w, h] = [18, 19, 20, 21, 22, 23, 24];
  const body = [
    ...get(out),
    ...set(orow),
    ...block,
    ...loop,
    ...get(y),
    ...get(outH),
    ...geU,
    ...brIf(1),
    ...loadAt(count, y),
    ...set(n),
    ...get(src),
    ...loadAt(first, y),
    ...get(stride),
    ...mul,
    ...add,
    ...set(base),
    ...get(weights),
    ...get(y),
    ...get(ksize),
    ...mul,
    ...i32(4),
    ...mul,
    ...add,
    ...set(wrow),
    ...i32(0),
    ...set(i),
    ...loop,
    ...initAcc(a0),
    ...initAcc(a1),
    ...initAcc(a2),
    ...initAcc(a3),
    ...i32(0),
    ...set(t),
    ...get(base),
    ...get(i),
    ...add,
    ...set(p),
    ...get(wrow),
    ...set(wp),
    ...block,
    ...loop,
    ...get(t),
    ...get(n),
    ...geU,
    ...brIf(1),
    ...get(wp),
    ...load,
    ...simd(SIMD.i32x4Splat),
    ...set(w),
    ...get(p),
    ...simd(SIMD.load, 0, 0),
    ...set(v),
    ...get(v),
    ...simd(SIMD.i16x8ExtendLowI8x16U),
    ...set(h),
    ...macc(a0, h, w, false),
    ...macc(a1, h, w, true),
    ...get(v),
    ...simd(SIMD.i16x8ExtendHighI8x16U),
    ...set(h),
    ...macc(a2, h, w, false),
    ...macc(a3, h, w, true),
    ...get(p),
    ...get(stride),
    ...add,
    ...set(p),
    ...increment(wp, 4),
    ...increment(t, 1),
    ...br(0),
    ...end,
    ...end,
    ...get(orow),
    ...get(i),
    ...add,
    ...shifted(a0),
    ...shifted(a1),
    ...simd(SIMD.i16x8NarrowI32x4S),
    ...shifted(a2),
    ...shifted(a3),
    ...simd(SIMD.i16x8NarrowI32x4S),
    ...simd(SIMD.i8x16NarrowI16x8U),
    ...simd(SIMD.store, 0, 0),
    ...get(i),
    ...i32(16),
    ...add,
    ...tee(i),
    ...get(outStride),
    ...ltU,
    ...brIf(0),
    ...end,
    ...get(orow),
    ...get(outStride),
    ...add,
    ...set(orow),
    ...increment(y, 1),
    ...br(0),
    ...end,
    ...end,
  ];
  return { name: 'vertical', params: 9, locals: [...Array(9).fill('i32'), ...Array(7).fill('v128')], body };
}

/**
 * horizontal(src, srcStride, rows, out, outW, first, count, weights, ksize): each output pixel
 * is one i32x4 (R, G, B, and the next pixel's R, ignored) summed over its taps; its 4-byte store
 * spills one byte into the next pixel, written after it (the caller pads the end).
 */
export function horizontal(): WasmFunction {
  const [src, srcStride, rows, out, outW, first, count, weights, ksize] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [y, x, t, n, p, wp, srow, optr] = [9, 10, 11, 12, 13, 14, 15, 16];
  const [acc, r] = [17, 18];
  const body = [
    ...get(out),
    ...set(optr),
    ...block,
    ...loop,
    ...get(y),
    ...get(rows),
    ...geU,
    ...brIf(1),
    ...get(src),
    ...get(y),
    ...get(srcStride),
    ...mul,
    ...add,
    ...set(srow),
    ...i32(0),
    ...set(x),
    ...block,
    ...loop,
    ...get(x),
    ...get(outW),
    ...geU,
    ...brIf(1),
    ...initAcc(acc),
    ...loadAt(count, x),
    ...set(n),
    ...get(srow),
    ...loadAt(first, x),
    ...i32(3),
    ...mul,
    ...add,
    ...set(p),
    ...get(weights),
    ...get(x),
    ...get(ksize),
    ...mul,
    ...i32(4),
    ...mul,
    ...add,
    ...set(wp),
    ...i32(0),
    ...set(t),
    // Two taps per iteration while two remain, then the last one.
    ...block,
    ...loop,
    ...get(t),
    ...i32(1),
    ...add,
    ...get(n),
    ...geU,
    ...brIf(1),
    ...tap(acc, p, wp, 0),
    ...tap(acc, p, wp, 1),
    ...increment(p, 6),
    ...increment(wp, 8),
    ...increment(t, 2),
    ...br(0),
    ...end,
    ...end,
    ...block,
    ...get(t),
    ...get(n),
    ...geU,
    ...brIf(0),
    ...tap(acc, p, wp, 0),
    ...end,
    ...get(optr),
    ...shifted(acc),
    ...set(r),
    ...get(r),
    ...get(r),
    ...simd(SIMD.i16x8NarrowI32x4S),
    ...set(r),
    ...get(r),
    ...get(r),
    ...simd(SIMD.i8x16NarrowI16x8U),
    ...simd(SIMD.store32Lane, 0, 0, 0),
    ...increment(optr, 3),
    ...increment(x, 1),
    ...br(0),
    ...end,
    ...end,
    ...increment(y, 1),
    ...br(0),
    ...end,
    ...end,
  ];
  return { name: 'horizontal', params: 9, locals: [...Array(8).fill('i32'), 'v128', 'v128'], body };
}
