// The two passes of Pillow's BICUBIC resize in plain JavaScript (see resize.ts for the
// semantics): the fallback where WebAssembly is unavailable, and a second implementation the tests
// hold the SIMD kernels against. Math.imul and `| 0` keep every sum in int32, as Pillow's C does.
import type { Coefficients } from './resize_coefficients.js';

const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);

/** Horizontal pass over source rows [row0, row0 + rows): [rows, outW, 3] from [*, inW, 3]. */
export function horizontalJs(
  src: Uint8Array,
  inW: number,
  row0: number,
  rows: number,
  outW: number,
  c: Coefficients,
): Uint8Array {
  const out = new Uint8Array(rows * outW * 3);
  const clamped = new Uint8ClampedArray(out.buffer); // stores clamp to 0..255 for free
  const { first, count, ksize, weights } = c;
  const inStride = inW * 3;
  for (let y = 0; y < rows; y++) {
    const rowStart = (row0 + y) * inStride;
    let d = y * outW * 3;
    for (let x = 0; x < outW; x++, d += 3) {
      const n = count[x]!;
      let k = x * ksize;
      let p = rowStart + first[x]! * 3;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let t = 0; t < n; t++, k++, p += 3) {
        const wt = weights[k]!;
        r = (r + Math.imul(src[p]!, wt)) | 0;
        g = (g + Math.imul(src[p + 1]!, wt)) | 0;
        b = (b + Math.imul(src[p + 2]!, wt)) | 0;
      }
      clamped[d] = r >> PRECISION_BITS;
      clamped[d + 1] = g >> PRECISION_BITS;
      clamped[d + 2] = b >> PRECISION_BITS;
    }
  }
  return out;
}

/**
 * Vertical pass: [outH, w, 3] from [*, w, 3] whose row 0 is source row `row0`. Whole rows are
 * accumulated at once (contiguous reads, up to four source rows per sweep) instead of Pillow's
 * column walk; the int32 sums are the same integers.
 */
export function verticalJs(src: Uint8Array, width: number, row0: number, outH: number, c: Coefficients): Uint8Array {
  const stride = width * 3;
  const out = new Uint8Array(outH * stride);
  const clamped = new Uint8ClampedArray(out.buffer);
  const acc = new Int32Array(stride);
  const { first, count, ksize, weights } = c;
  for (let y = 0; y < outH; y++) {
    acc.fill(HALF);
    const n = count[y]!;
    const k = y * ksize;
    const p = (first[y]! - row0) * stride;
    let t = 0;
    for (; t + 4 <= n; t += 4) {
      addRows4(
        acc,
        src,
        p + t * stride,
        stride,
        weights[k + t]!,
        weights[k + t + 1]!,
        weights[k + t + 2]!,
        weights[k + t + 3]!,
      );
    }
    for (; t < n; t++) addRow(acc, src, p + t * stride, stride, weights[k + t]!);
    const d = y * stride;
    for (let i = 0; i < stride; i++) clamped[d + i] = acc[i]! >> PRECISION_BITS;
  }
  return out;
}

/** acc += four consecutive rows (starting at p, `stride` apart) times their weights. */
function addRows4(
  acc: Int32Array,
  src: Uint8Array,
  p: number,
  stride: number,
  w0: number,
  w1: number,
  w2: number,
  w3: number,
): void {
  const p1 = p + stride;
  const p2 = p1 + stride;
  const p3 = p2 + stride;
  for (let i = 0; i < stride; i++) {
    const s =
      Math.imul(src[p + i]!, w0) +
      Math.imul(src[p1 + i]!, w1) +
      Math.imul(src[p2 + i]!, w2) +
      Math.imul(src[p3 + i]!, w3);
    acc[i] = (acc[i]! + s) | 0;
  }
}

/** acc += one row (starting at p) times its weight. */
function addRow(acc: Int32Array, src: Uint8Array, p: number, stride: number, w: number): void {
  for (let i = 0; i < stride; i++) acc[i] = (acc[i]! + Math.imul(src[p + i]!, w)) | 0;
}
