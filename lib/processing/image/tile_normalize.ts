// InternVL's ToTensor + Normalize of square tiles into [tiles, 3, S, S] float32, from the planes
// of planes.ts (SIMD kernel) or, without WebAssembly, the lookup table alone; both give the
// reference's bits. ToTensor divides in float32 (torch's div of a float tensor by 255).
import type { RgbImage } from './decode.js';
import { imageKernels } from './kernels.js';
import { lookupPlanes, planeLut, planesInMemory, planesOffset } from './planes.js';

/** Writes tile k's three planes at out[k * 3 * pixels ...]; all tiles must have the same size. */
export function normalizeTiles(
  tiles: RgbImage[],
  out: Float32Array,
  mean: readonly number[],
  std: readonly number[],
): void {
  const lut = planeLut(mean, std);
  const kernels = imageKernels();
  tiles.forEach((tile, k) => {
    const pixels = tile.width * tile.height;
    const offset = k * 3 * pixels;
    if (kernels) {
      const memory = planesInMemory(kernels, tile, lut, mean, std, 0);
      out.set(new Float32Array(memory, planesOffset(0), 3 * pixels), offset);
    } else {
      lookupPlanes(tile.data, 0, pixels, lut, new Uint32Array(out.buffer, out.byteOffset, out.length), offset);
    }
  });
}
