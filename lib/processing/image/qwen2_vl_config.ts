// Qwen2-VL / Qwen2.5-VL image processor options: Qwen2VLImageProcessor's class defaults and the
// keys of a preprocessor_config.json that matter for images.
import { z } from 'zod';
import { parseConfig } from '../../util/config_error.js';
import { boundedInt, SIZE_BOUNDS as B } from '../../models/config_schema.js';

/** The image side of Qwen2VLImageProcessor. */
export interface Qwen2VlImageOptions {
  minPixels: number;
  maxPixels: number;
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** The class defaults (transformers v4.47); hub files usually raise max_pixels to 12845056. */
export const QWEN2_VL_IMAGE_DEFAULTS: Readonly<Qwen2VlImageOptions> = Object.freeze<Qwen2VlImageOptions>({
  minPixels: 56 * 56,
  maxPixels: 28 * 28 * 1280,
  patchSize: 14,
  temporalPatchSize: 2,
  mergeSize: 2,
  imageMean: [0.48145466, 0.4578275, 0.40821073],
  imageStd: [0.26862954, 0.26130258, 0.27577711],
});

// Pixel counts up to a 65536-pixel square; patch sizes as SIZE_BOUNDS allows.
const pixels = boundedInt(B.imageSide * B.imageSide);
const patch = boundedInt(B.patch);
const triple = z.tuple([z.number(), z.number(), z.number()]);

// Keys we read; others (processor_class, image_processor_type, ...) pass through. Settings that
// would change the pipeline we implement are accepted only at the values it implements.
const PreprocessorConfig = z.looseObject({
  min_pixels: pixels.nullish(),
  max_pixels: pixels.nullish(),
  size: z
    .looseObject({
      shortest_edge: pixels.optional(),
      longest_edge: pixels.optional(),
      min_pixels: pixels.optional(),
      max_pixels: pixels.optional(),
    })
    .nullish(),
  patch_size: patch.optional(),
  temporal_patch_size: patch.optional(),
  merge_size: patch.optional(),
  image_mean: triple.optional(),
  image_std: triple.optional(),
  do_resize: z.literal(true).optional(),
  do_rescale: z.literal(true).optional(),
  do_normalize: z.literal(true).optional(),
  do_convert_rgb: z.literal(true).optional(),
  resample: z.literal(3, { message: 'only 3 (PIL BICUBIC) is implemented' }).optional(),
  rescale_factor: z
    .number()
    .refine((v) => Math.abs(v - 1 / 255) < 1e-12, 'only 1/255 is implemented')
    .optional(),
});

/**
 * Options from a parsed preprocessor_config.json. min_pixels / max_pixels win over
 * size.shortest_edge / size.longest_edge (newer files), which win over size.min_pixels /
 * size.max_pixels (files saved by transformers 4.4x); absent keys keep the class defaults.
 */
export function qwen2VlImageOptionsFromConfig(json: unknown, file = 'preprocessor_config.json'): Qwen2VlImageOptions {
  const c = parseConfig(PreprocessorConfig, json, file);
  const d = QWEN2_VL_IMAGE_DEFAULTS;
  const options: Qwen2VlImageOptions = {
    minPixels: c.min_pixels ?? c.size?.shortest_edge ?? c.size?.min_pixels ?? d.minPixels,
    maxPixels: c.max_pixels ?? c.size?.longest_edge ?? c.size?.max_pixels ?? d.maxPixels,
    patchSize: c.patch_size ?? d.patchSize,
    temporalPatchSize: c.temporal_patch_size ?? d.temporalPatchSize,
    mergeSize: c.merge_size ?? d.mergeSize,
    imageMean: c.image_mean ?? [...d.imageMean],
    imageStd: c.image_std ?? [...d.imageStd],
  };
  if (options.minPixels > options.maxPixels) {
    throw new Error(`${file}: min_pixels ${options.minPixels} is larger than max_pixels ${options.maxPixels}`);
  }
  return options;
}
