// Runs the SIMD resize kernels: lays the coefficient tables and the image out in the kernels'
// memory, runs the passes, and copies the result out.
import type { Coefficients } from './resize_coefficients.js';
import { imageKernels, reserveMemory } from './kernels.js';

const PAD = 16; // the kernels' stores and loads may run up to 15 bytes past a buffer

/** Bump allocation of 16-byte aligned, padded offsets in the kernels' memory. */
class Arena {
  private top = 0;
  reserve(bytes: number): number {
    const at = this.top;
    this.top += (bytes + PAD + 15) & ~15;
    return at;
  }
  get size(): number {
    return this.top;
  }
}

/** Copies a coefficient table into memory at `ptr` (first shifted by `shift`). */
function writeCoefficients(memory: ArrayBuffer, c: Coefficients, ptrs: [number, number, number], shift: number): void {
  const first = new Int32Array(memory, ptrs[0], c.first.length);
  for (let i = 0; i < c.first.length; i++) first[i] = c.first[i]! - shift;
  new Int32Array(memory, ptrs[1], c.count.length).set(c.count);
  new Int32Array(memory, ptrs[2], c.weights.length).set(c.weights);
}

const reserveTable = (arena: Arena, c: Coefficients): [number, number, number] => [
  arena.reserve(c.first.length * 4),
  arena.reserve(c.count.length * 4),
  arena.reserve(c.weights.length * 4),
];

/**
 * Largest memory a resize may take in the kernels' memory, which never shrinks: larger images
 * (beyond about 50 megapixels) take the JavaScript passes instead of pinning gigabytes.
 */
const MAX_BYTES = 2 ** 29;

/**
 * Resizes with the SIMD kernels, or returns null (kernels unavailable or the image too large),
 * so the caller falls back to JavaScript. `hc` / `vc` are null for a pass that is skipped; the
 * horizontal pass covers source rows [row0, row0 + rows).
 */
export function resizeWasm(
  src: Uint8Array,
  inW: number,
  inH: number,
  width: number,
  height: number,
  hc: Coefficients | null,
  vc: Coefficients | null,
  row0: number,
  rows: number,
): Uint8Array | null {
  const kernels = imageKernels();
  if (!kernels) return null;
  const arena = new Arena();
  const hTable = hc ? reserveTable(arena, hc) : null;
  const vTable = vc ? reserveTable(arena, vc) : null;
  const srcRows = hc ? rows : inH;
  const srcPtr = arena.reserve(srcRows * inW * 3);
  const tmpPtr = hc && vc ? arena.reserve(rows * width * 3) : 0;
  const outPtr = arena.reserve(height * width * 3);
  if (arena.size > MAX_BYTES) return null;
  const memory = reserveMemory(kernels, arena.size);
  new Uint8Array(memory, srcPtr, srcRows * inW * 3).set(src.subarray(row0 * inW * 3, (row0 + srcRows) * inW * 3));
  let vSrc = srcPtr;
  if (hc && hTable) {
    writeCoefficients(memory, hc, hTable, 0);
    const target = vc ? tmpPtr : outPtr;
    kernels.horizontal(srcPtr, inW * 3, rows, target, width, hTable[0], hTable[1], hTable[2], hc.ksize);
    vSrc = target;
  }
  if (vc && vTable) {
    writeCoefficients(memory, vc, vTable, hc ? row0 : 0);
    kernels.vertical(vSrc, width * 3, outPtr, width * 3, height, vTable[0], vTable[1], vTable[2], vc.ksize);
  }
  return new Uint8Array(memory, outPtr, height * width * 3).slice();
}
