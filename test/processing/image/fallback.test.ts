// The JavaScript paths that run where WebAssembly is unavailable (node --jitless): with the SIMD
// kernels mocked away, the processors must still reproduce the goldens bit for bit.
import { describe, expect, it, vi } from 'vitest';
import {
  internvlPixelValues,
  loadImage,
  qwen2VlPixelValues,
  resizeBicubic,
  rgbImage,
} from '../../../lib/processing/image/index.js';
import { GOLDEN_IMAGES, imagePath, readJson, sha256F32 } from './helpers.js';

vi.mock('../../../lib/processing/image/kernels.js', () => ({
  imageKernels: () => null,
  reserveMemory: () => {
    throw new Error('no kernels');
  },
}));

const qwen = readJson('preprocess/qwen2_vl_image_processor.json');
const internvl = readJson('preprocess/internvl_dynamic_preprocess.json');

describe('without WebAssembly', () => {
  it('reproduces the Qwen2-VL goldens (default setting) and InternVL max_num 6 tiles', async () => {
    for (const file of GOLDEN_IMAGES) {
      const img = await loadImage(imagePath(file));
      const q = qwen2VlPixelValues([img]);
      expect(sha256F32(q.pixelValues.data() as Float32Array), file).toBe(
        qwen.settings.default.images[file].pixel_values.sha256_f32le,
      );
      const expected = internvl.images[file].max_num['6'].with_thumbnail;
      const data = internvlPixelValues([img], { maxNum: 6 }).pixelValues.data() as Float32Array;
      const length = 3 * 448 * 448;
      expected.tiles.forEach((tile: any, k: number) =>
        expect(sha256F32(data.subarray(k * length, (k + 1) * length))).toBe(tile.sha256_f32le),
      );
    }
  });

  it("refuses engine 'wasm' and falls back for 'auto'", () => {
    const img = rgbImage(3, 2, new Uint8Array(18).fill(7));
    expect(() => resizeBicubic(img, 5, 5, { engine: 'wasm' })).toThrow(/WebAssembly SIMD is not available/);
    expect(Array.from(resizeBicubic(img, 5, 5).data)).toEqual(Array(75).fill(7));
  });
});
