// Normalised float32 planes [3, H, W] of an RGB image in the kernels' memory:
// fround(fround(f32(u8) / 255 - mean[c]) / std[c]), by the SIMD kernel for whole groups of 16
// pixels and a lookup table for the rest. Both image processors start from these planes.
import type { RgbImage } from './decode.js';
import type { ImageKernels } from './kernels.js';
import { reserveMemory } from './kernels.js';
import { channelLut } from './normalize.js';

/** Lookup tables of the float bits, one 256-entry block per channel. */
export function planeLut(mean: readonly number[], std: readonly number[]): Uint32Array {
  return new Uint32Array(channelLut((v) => Math.fround(v / 255), mean, std).buffer);
}

/** Pixels [from, pixels) of `data` through the lookup table into planes at out[offset ...]. */
export function lookupPlanes(
  data: Uint8Array,
  from: number,
  pixels: number,
  lut: Uint32Array,
  out: Uint32Array,
  offset: number,
): void {
  const g = offset + pixels;
  const b = g + pixels;
  for (let p = from, s = 3 * from; p < pixels; p++, s += 3) {
    out[offset + p] = lut[data[s]!]!;
    out[g + p] = lut[256 + data[s + 1]!]!;
    out[b + p] = lut[512 + data[s + 2]!]!;
  }
}

/**
 * Writes the planes at byte `at` of the kernels' memory (16-aligned) and reserves `extra` bytes
 * after them; returns the memory. The image itself is staged after the planes.
 */
export function planesInMemory(
  kernels: ImageKernels,
  img: RgbImage,
  lut: Uint32Array,
  mean: readonly number[],
  std: readonly number[],
  at: number,
  extra = 0,
): ArrayBuffer {
  const pixels = img.width * img.height;
  const groups = Math.floor(pixels / 16);
  const constants = at;
  const planes = at + 128; // after the constants (7 x 16 bytes)
  const src = planes + ((12 * pixels + extra + 15) & ~15);
  const memory = reserveMemory(kernels, src + 3 * pixels + 64);
  const values = new Float32Array(memory, constants, 28);
  [255, ...mean, ...std].forEach((v, slot) => values.fill(Math.fround(v), 4 * slot, 4 * slot + 4));
  new Uint8Array(memory, src, 3 * pixels).set(img.data);
  kernels.normalizePlanes(src, groups, planes, planes + 4 * pixels, planes + 8 * pixels, constants);
  lookupPlanes(img.data, groups * 16, pixels, lut, new Uint32Array(memory, planes, 3 * pixels), 0);
  return memory;
}

/** Byte offset of the planes written by planesInMemory(..., at). */
export const planesOffset = (at: number): number => at + 128;
