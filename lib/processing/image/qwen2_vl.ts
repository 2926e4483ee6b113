// Qwen2-VL / Qwen2.5-VL pixel values, as transformers v4.47 Qwen2VLImageProcessor (the slow numpy +
// PIL processor) computes them: smart_resize, Pillow BICUBIC on uint8, x = float32(float64(u8) *
// (1/255)), (x - mean) / std in float32, the frame repeated temporal_patch_size times, and patches
// flattened in 2x2 merge-block order. With WebAssembly the normalised planes and the patch gather
// run as SIMD kernels; otherwise a lookup table feeds the same gather in JavaScript.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { rgbImage, type RgbImage } from './decode.js';
import { imageKernels, type ImageKernels } from './kernels.js';
import { checkChannels, uninitialisedFloat32 } from './normalize.js';
import { planeLut, planesInMemory, planesOffset } from './planes.js';
import { QWEN2_VL_IMAGE_DEFAULTS, type Qwen2VlImageOptions } from './qwen2_vl_config.js';
import { resizeBicubic } from './resize.js';
import { smartResize } from './smart_resize.js';

export { smartResize, roundHalfEven, type SmartResizeOptions } from './smart_resize.js';
export { QWEN2_VL_IMAGE_DEFAULTS, qwen2VlImageOptionsFromConfig, type Qwen2VlImageOptions } from './qwen2_vl_config.js';

/** Pixel values of a list of images, concatenated row-wise in order. */
export interface Qwen2VlPixelValues {
  /** [sum of patches, 3 * temporalPatchSize * patchSize^2] float32 (1176 columns by default). */
  pixelValues: Tensor;
  /** [images, 3] int64: (t, h, w) patch grid per image. */
  imageGridThw: Tensor;
  /** The same grids as numbers. */
  grids: Array<[number, number, number]>;
}

function resolve(options: Partial<Qwen2VlImageOptions>): Qwen2VlImageOptions {
  const o = { ...QWEN2_VL_IMAGE_DEFAULTS, ...options };
  for (const key of ['minPixels', 'maxPixels', 'patchSize', 'temporalPatchSize', 'mergeSize'] as const) {
    if (!Number.isInteger(o[key]) || o[key] <= 0) {
      throw new RangeError(`qwen2VlPixelValues: expected a positive integer for ${key} but received ${String(o[key])}`);
    }
  }
  checkChannels('qwen2VlPixelValues', 'imageMean', o.imageMean);
  checkChannels('qwen2VlPixelValues', 'imageStd', o.imageStd);
  return o;
}

/**
 * Writes one resized image's patch rows into `out` from row `row0`. Row r of block (bh, bw) and
 * position (mh, mw) inside it is ((bh * gw/M + bw) * M + mh) * M + mw; its columns are
 * (channel, frame, py, px) row-major, every frame a copy of the image.
 */
function flattenPatches(img: RgbImage, lut: Uint32Array, o: Qwen2VlImageOptions, out: Uint32Array, row0: number): void {
  const P = o.patchSize;
  const M = o.mergeSize;
  const T = o.temporalPatchSize;
  const area = P * P;
  const cols = 3 * T * area;
  const gh = img.height / P;
  const gw = img.width / P;
  const stride = img.width * 3;
  const data = img.data;
  let row = row0;
  for (let bh = 0; bh < gh / M; bh++) {
    for (let bw = 0; bw < gw / M; bw++) {
      for (let mh = 0; mh < M; mh++) {
        for (let mw = 0; mw < M; mw++, row++) {
          const y0 = (bh * M + mh) * P;
          const x0 = (bw * M + mw) * P;
          for (let c = 0; c < 3; c++) {
            const base = row * cols + c * T * area;
            const table = c * 256;
            for (let py = 0; py < P; py++) {
              let s = (y0 + py) * stride + x0 * 3 + c;
              const d = base + py * P;
              for (let px = 0; px < P; px++, s += 3) out[d + px] = lut[table + data[s]!]!;
            }
            for (let t = 1; t < T; t++) out.copyWithin(base + t * area, base, base + area);
          }
        }
      }
    }
  }
}

/** The same rows as flattenPatches from the SIMD kernels: planes, then one patchRow per row. */
function flattenWithKernels(
  kernels: ImageKernels,
  img: RgbImage,
  lut: Uint32Array,
  o: Qwen2VlImageOptions,
  out: Float32Array,
  row0: number,
): void {
  const P = o.patchSize;
  const M = o.mergeSize;
  const cols = 3 * o.temporalPatchSize * P * P;
  const rows = (img.height / P) * (img.width / P);
  const pixels = img.width * img.height;
  const memory = planesInMemory(kernels, img, lut, o.imageMean, o.imageStd, 0, rows * cols * 4 + 16);
  const planes = planesOffset(0);
  const target = planes + 12 * pixels;
  let row = 0;
  for (let bh = 0; bh < img.height / P / M; bh++) {
    for (let bw = 0; bw < img.width / P / M; bw++) {
      for (let mh = 0; mh < M; mh++) {
        for (let mw = 0; mw < M; mw++, row++) {
          const corner = planes + 4 * ((bh * M + mh) * P * img.width + (bw * M + mw) * P);
          kernels.patchRow(corner, 4 * img.width, 4 * pixels, P, o.temporalPatchSize, target + row * cols * 4);
        }
      }
    }
  }
  out.set(new Float32Array(memory, target, rows * cols), row0 * cols);
}

/**
 * Qwen2VLImageProcessor's `pixel_values` and `image_grid_thw` for RGB images (each image a
 * single frame, so t = 1).
 */
export function qwen2VlPixelValues(images: RgbImage[], options: Partial<Qwen2VlImageOptions> = {}): Qwen2VlPixelValues {
  if (!Array.isArray(images) || images.length === 0) {
    throw new RangeError('qwen2VlPixelValues: expected a non-empty array of images');
  }
  const o = resolve(options);
  const factor = o.patchSize * o.mergeSize;
  const resized = images.map((img, k) => {
    rgbImage(img.width, img.height, img.data);
    try {
      const size = smartResize(img.height, img.width, { factor, minPixels: o.minPixels, maxPixels: o.maxPixels });
      return resizeBicubic(img, size.width, size.height);
    } catch (err) {
      throw new RangeError(`qwen2VlPixelValues: image ${k} (${img.width}x${img.height}): ${(err as Error).message}`, {
        cause: err,
      });
    }
  });
  const grids = resized.map((img): [number, number, number] => [1, img.height / o.patchSize, img.width / o.patchSize]);
  const cols = 3 * o.temporalPatchSize * o.patchSize * o.patchSize;
  const rows = grids.reduce((n, g) => n + g[1] * g[2], 0);
  const out = uninitialisedFloat32(rows * cols);
  // float32(float64(u8) * (1/255)) equals float32 division by 255 for every u8, so the planes'
  // table serves. Float bits move as integers: no float conversions in the gather.
  const lut = planeLut(o.imageMean, o.imageStd);
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const kernels = imageKernels();
  let row = 0;
  resized.forEach((img, k) => {
    // The kernels' memory never shrinks: very large images take the JavaScript gather instead.
    const staged = img.width * img.height * 15 + grids[k]![1] * grids[k]![2] * cols * 4;
    if (kernels && staged <= 2 ** 29) flattenWithKernels(kernels, img, lut, o, out, row);
    else flattenPatches(img, lut, o, bits, row);
    row += grids[k]![1] * grids[k]![2];
  });
  return {
    pixelValues: torch.frombuffer(out, { dtype: 'float32', shape: [rows, cols] }),
    imageGridThw: torch.tensor(grids, { dtype: 'int64' }),
    grids,
  };
}
