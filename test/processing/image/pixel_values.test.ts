// Qwen2-VL and InternVL pixel values against the goldens' sha256 of the float32 bytes (every image
// and setting, every InternVL tile), the stored full tensors, multi-image rows and config parsing.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  QWEN2_VL_IMAGE_DEFAULTS,
  dynamicPreprocess,
  internvlPixelValues,
  loadImage,
  qwen2VlImageOptionsFromConfig,
  qwen2VlPixelValues,
  rgbImage,
  type RgbImage,
} from '../../../lib/processing/image/index.js';
import { loadSafetensors } from '../../../lib/torch/index.js';
import { fixtures, GOLDEN_IMAGES, imagePath, readJson, sha256F32 } from './helpers.js';

const qwen = readJson('preprocess/qwen2_vl_image_processor.json');
const internvl = readJson('preprocess/internvl_dynamic_preprocess.json');
const images = new Map<string, RgbImage>();
for (const name of GOLDEN_IMAGES) images.set(name, await loadImage(imagePath(name)));
const image = (name: string): RgbImage => images.get(name)!;

describe('qwen2VlPixelValues', () => {
  it('matches the golden sha256 for 4 images x 3 settings', () => {
    let checked = 0;
    for (const [name, setting] of Object.entries<any>(qwen.settings)) {
      for (const [file, expected] of Object.entries<any>(setting.images)) {
        const out = qwen2VlPixelValues([image(file)], { minPixels: setting.min_pixels, maxPixels: setting.max_pixels });
        expect(out.grids, `${name} ${file}`).toEqual([expected.image_grid_thw]);
        expect(out.pixelValues.shape).toEqual(expected.pixel_values.shape);
        expect(sha256F32(out.pixelValues.data() as Float32Array), `${name} ${file}`).toBe(
          expected.pixel_values.sha256_f32le,
        );
        checked++;
      }
    }
    expect(checked).toBe(12);
  });

  it('equals the stored tensors and concatenates images row-wise with int64 grids', async () => {
    const stored = await loadSafetensors(path.join(fixtures, 'preprocess/qwen2_vl_pixel_values.safetensors'));
    const out = qwen2VlPixelValues([image('img_70x350.png'), image('img_140x140.png')]);
    expect(out.pixelValues.shape).toEqual([196, 1176]);
    expect(out.imageGridThw.dtype).toBe('int64');
    expect(out.imageGridThw.toArray()).toEqual([
      [1, 24, 4],
      [1, 10, 10],
    ]);
    const all = out.pixelValues.data() as Float32Array;
    const first = stored['img_70x350.pixel_values']!.data() as Float32Array;
    const second = stored['img_140x140.pixel_values']!.data() as Float32Array;
    expect(all.subarray(0, first.length)).toEqual(first);
    expect(all.subarray(first.length)).toEqual(second);
  });

  it('follows the spec formula for other patch, merge and frame sizes (and pixel counts not a multiple of 16)', () => {
    const [P, M, T] = [5, 1, 3];
    const img = rgbImage(
      35,
      45,
      new Uint8Array(35 * 45 * 3).map((_, i) => (i * 53 + (i >> 4)) & 255),
    );
    const out = qwen2VlPixelValues([img], {
      patchSize: P,
      mergeSize: M,
      temporalPatchSize: T,
      minPixels: 100,
      maxPixels: 10000,
    });
    expect(out.grids).toEqual([[1, 9, 7]]);
    const mean = QWEN2_VL_IMAGE_DEFAULTS.imageMean.map(Math.fround);
    const std = QWEN2_VL_IMAGE_DEFAULTS.imageStd.map(Math.fround);
    const data = out.pixelValues.data() as Float32Array;
    const cols = 3 * T * P * P;
    for (let r = 0; r < 63; r++) {
      // M = 1: rows are patches in raster order; columns (c, t, py, px).
      const [ph, pw] = [Math.floor(r / 7), r % 7];
      for (let col = 0; col < cols; col++) {
        const [c, py, px] = [Math.floor(col / (T * P * P)), Math.floor(col / P) % P, col % P];
        const v = img.data[((ph * P + py) * 35 + pw * P + px) * 3 + c]!;
        const x = Math.fround(v * (1 / 255));
        const expected = Math.fround(Math.fround(x - mean[c]!) / std[c]!);
        if (data[r * cols + col] !== expected)
          expect.fail(`row ${r} col ${col}: ${data[r * cols + col]} != ${expected}`);
      }
    }
    // The rescale float32(float64(u8) * (1/255)) is float32 division by 255 for every u8 value.
    for (let v = 0; v < 256; v++) expect(Math.fround(v * (1 / 255))).toBe(Math.fround(v / 255));
  });

  it('reads preprocessor_config.json keys', () => {
    expect(qwen2VlImageOptionsFromConfig({})).toEqual(QWEN2_VL_IMAGE_DEFAULTS);
    const hub = {
      min_pixels: 3136,
      max_pixels: 12845056,
      patch_size: 14,
      merge_size: 2,
      temporal_patch_size: 2,
      image_processor_type: 'Qwen2VLImageProcessor',
    };
    expect(qwen2VlImageOptionsFromConfig(hub).maxPixels).toBe(12845056);
    const newer = { size: { shortest_edge: 200704, longest_edge: 1003520 } };
    expect(qwen2VlImageOptionsFromConfig(newer)).toMatchObject({ minPixels: 200704, maxPixels: 1003520 });
    expect(qwen2VlImageOptionsFromConfig({ ...newer, min_pixels: 3136 }).minPixels).toBe(3136);
    expect(() => qwen2VlImageOptionsFromConfig({ max_pixels: -1 }, 'a/preprocessor_config.json')).toThrow(
      /^a\/preprocessor_config.json: invalid max_pixels/,
    );
    expect(() => qwen2VlImageOptionsFromConfig({ image_mean: [0.5, 0.5] }, 'p.json')).toThrow(
      /p.json: invalid image_mean/,
    );
    expect(() => qwen2VlImageOptionsFromConfig({ resample: 2 }, 'p.json')).toThrow(/p.json: invalid resample: only 3/);
    expect(() => qwen2VlImageOptionsFromConfig({ min_pixels: 10, max_pixels: 5 }, 'p.json')).toThrow(
      /min_pixels 10 is larger than max_pixels 5/,
    );
    expect(() => qwen2VlImageOptionsFromConfig(null, 'p.json')).toThrow(/p.json: invalid \(root\)/);
    // Every problem in one message, not only the first.
    const twoProblems = { max_pixels: -1, resample: 2 };
    expect(() => qwen2VlImageOptionsFromConfig(twoProblems, 'p.json')).toThrow(
      /invalid max_pixels: .*; invalid resample: only 3/,
    );
  });

  it('names the image that cannot be resized', () => {
    const tiny = rgbImage(20, 40, new Uint8Array(20 * 40 * 3));
    expect(() => qwen2VlPixelValues([image('img_140x140.png'), tiny])).toThrow(
      /image 1 \(20x40\): smartResize: height 40 and width 20/,
    );
    expect(() => qwen2VlPixelValues([])).toThrow(/non-empty array/);
  });
});

describe('internvlPixelValues', () => {
  it('matches the golden sha256 of every tile (max_num 6 and 12, with and without thumbnail)', () => {
    let checked = 0;
    for (const [file, entry] of Object.entries<any>(internvl.images)) {
      for (const [maxNum, m] of Object.entries<any>(entry.max_num)) {
        for (const useThumbnail of [false, true]) {
          const expected = m[useThumbnail ? 'with_thumbnail' : 'without_thumbnail'];
          const out = internvlPixelValues([image(file)], { maxNum: Number(maxNum), useThumbnail });
          expect(out.tilesPerImage).toEqual([expected.num_tiles]);
          expect(out.pixelValues.shape).toEqual([expected.num_tiles, 3, 448, 448]);
          const data = out.pixelValues.data() as Float32Array;
          const length = 3 * 448 * 448;
          expected.tiles.forEach((tile: any, k: number) => {
            expect(sha256F32(data.subarray(k * length, (k + 1) * length)), `${file} max ${maxNum} tile ${k}`).toBe(
              tile.sha256_f32le,
            );
            checked++;
          });
        }
      }
    }
    expect(checked).toBe(90);
  });

  it('follows ToTensor + Normalize for tile sizes whose pixel count is not a multiple of 16', () => {
    const img = rgbImage(
      61,
      30,
      new Uint8Array(61 * 30 * 3).map((_, i) => (i * 29 + (i >> 5)) & 255),
    );
    const out = internvlPixelValues([img], { imageSize: 30, maxNum: 4 });
    expect(out.tilesPerImage).toEqual([3]); // (2, 1) + thumbnail
    const tiles = dynamicPreprocess(img, { imageSize: 30, maxNum: 4 });
    const data = out.pixelValues.data() as Float32Array;
    const mean = [0.485, 0.456, 0.406].map(Math.fround);
    const std = [0.229, 0.224, 0.225].map(Math.fround);
    tiles.forEach((tile, k) => {
      for (let c = 0; c < 3; c++) {
        for (let p = 0; p < 900; p++) {
          const x = Math.fround(tile.data[p * 3 + c]! / 255);
          const expected = Math.fround(Math.fround(x - mean[c]!) / std[c]!);
          if (data[k * 2700 + c * 900 + p] !== expected) expect.fail(`tile ${k} channel ${c} pixel ${p}`);
        }
      }
    });
  });

  it('splits the tile budget over a multi-image row: max(1, floor(budget / images))', () => {
    const photos = [image('img_320x240.png'), image('img_777x333.png')];
    // Each image gets max_num 6: (3,2) + thumbnail = 7 and (2,1) + thumbnail = 3.
    expect(internvlPixelValues(photos, { maxNum: 12 }).tilesPerImage).toEqual([7, 3]);
    expect(internvlPixelValues(photos, { maxNum: 12, maxTilesPerRow: 4 }).tilesPerImage).toEqual([1, 3]);
    const many = Array.from({ length: 13 }, () => image('img_320x240.png'));
    expect(internvlPixelValues(many, { maxNum: 12 }).tilesPerImage).toEqual(Array(13).fill(1));
    const single = internvlPixelValues([photos[0]!], { maxNum: 12 });
    const pair = internvlPixelValues([photos[0]!, photos[0]!], { maxNum: 24 });
    expect(pair.pixelValues.shape[0]).toBe(2 * single.pixelValues.shape[0]!);
    expect(() => internvlPixelValues([])).toThrow(/non-empty array/);
    expect(() => internvlPixelValues(photos, { maxTilesPerRow: 0 })).toThrow(/maxTilesPerRow/);
  });

  it("takes a record's per-image budget as it is: maxTilesPerImage, not divided again", () => {
    const photos = [image('img_320x240.png'), image('img_777x333.png')];
    // max_num 6 each: (3,2) + thumbnail = 7 and (2,1) + thumbnail = 3, whatever maxNum and maxTilesPerRow say.
    expect(internvlPixelValues(photos, { maxNum: 1, maxTilesPerRow: 2, maxTilesPerImage: 6 }).tilesPerImage).toEqual([
      7, 3,
    ]);
    expect(internvlPixelValues([photos[0]!], { maxNum: 12, maxTilesPerImage: 1 }).tilesPerImage).toEqual([1]);
    expect(() => internvlPixelValues(photos, { maxTilesPerImage: 1.5 })).toThrow(/maxTilesPerImage/);
  });
});
