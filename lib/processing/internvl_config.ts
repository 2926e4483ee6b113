// What the InternVL processor reads from a checkpoint's configs: image tokens per tile, tiling, and
// (remote code) the conversation template and system message.
import { join } from 'node:path';
import { z } from 'zod';
import { parseConfig } from '../util/config_error.js';
import { boundedInt, SIZE_BOUNDS as B } from '../models/config_schema.js';

export interface InternVLTiling {
  minNum: number;
  maxNum: number;
  imageSize: number;
  useThumbnail: boolean;
}

export interface InternVLSettings {
  /** 'remote': model_type internvl_chat (built-in template); 'hf': model_type internvl (chat template files). */
  mode: 'remote' | 'hf';
  /** `<IMG_CONTEXT>` tokens per tile: (image_size / patch_size)² · downsample_ratio² (256 at 448/14/0.5). */
  tokensPerTile: number;
  tiling: InternVLTiling;
  /** Remote code: config.json `system_message` (null: the template's default). */
  systemMessage: string | null;
}

const side = (max: number) => z.union([boundedInt(max), z.array(boundedInt(max)).length(2)]);
// Tiles per image: InternVL uses up to 12 (40 at most in its configs); more is a corrupt file.
const MAX_TILES = 1024;
const firstSide = (s: number | number[]): number => (Array.isArray(s) ? s[0]! : s);
const Size = side(B.imageSide).transform(firstSide);
const PatchSize = side(B.patch).transform(firstSide);
const VisionSizes = z
  .object({ image_size: Size.default(448), patch_size: PatchSize.default(14) })
  .loose()
  .default({ image_size: 448, patch_size: 14 });

const RemoteConfig = z
  .object({
    force_image_size: boundedInt(B.imageSide).nullish(),
    downsample_ratio: z.number().positive().max(1).default(0.5),
    template: z.string().default('internvl2_5'),
    system_message: z.string().nullish(),
    dynamic_image_size: z.boolean().default(true),
    use_thumbnail: z.boolean().default(true),
    min_dynamic_patch: boundedInt(MAX_TILES).default(1),
    max_dynamic_patch: boundedInt(MAX_TILES).default(12),
    vision_config: VisionSizes,
  })
  .loose();

const HfConfig = z
  .object({
    image_seq_length: boundedInt(B.positions).optional(),
    downsample_ratio: z.number().positive().max(1).default(0.5),
    vision_config: VisionSizes,
  })
  .loose();

const HfPreprocessor = z
  .object({
    crop_to_patches: z.boolean().default(true),
    min_patches: boundedInt(MAX_TILES).default(1),
    max_patches: boundedInt(MAX_TILES).default(12),
    size: z
      .object({ height: boundedInt(B.imageSide) })
      .loose()
      .optional(),
  })
  .loose();

const HfProcessor = z.object({ image_seq_length: boundedInt(B.positions).optional() }).loose();

const parse = <S extends z.ZodType>(schema: S, value: unknown, file: string): z.output<S> =>
  parseConfig(schema, value ?? {}, file);

// InternVLChatModel: int((image_size // patch_size) ** 2 * (downsample_ratio ** 2)), at most a
// sequence's worth of positions: each tile's tokens become a JS array before anything else runs.
function tokensPerTile(imageSize: number, patchSize: number, ratio: number, file: string): number {
  const tokens = Math.trunc(Math.floor(imageSize / patchSize) ** 2 * ratio ** 2);
  if (tokens > B.positions) {
    throw new RangeError(
      `${file}: image_size ${imageSize}, patch_size ${patchSize} and downsample_ratio ${ratio} give ${tokens} tokens per tile (limit ${B.positions})`,
    );
  }
  return tokens;
}

/** Settings of a remote-code checkpoint (config.json only; these have no preprocessor_config.json). */
export function remoteSettings(config: unknown, dir: string): InternVLSettings {
  const c = parse(RemoteConfig, config, join(dir, 'config.json'));
  if (c.template !== 'internvl2_5') {
    throw new Error(`${join(dir, 'config.json')}: template '${c.template}' is not supported (supported: internvl2_5)`);
  }
  const imageSize = c.force_image_size ?? c.vision_config.image_size;
  const dynamic = c.dynamic_image_size;
  return {
    mode: 'remote',
    tokensPerTile: tokensPerTile(imageSize, c.vision_config.patch_size, c.downsample_ratio, join(dir, 'config.json')),
    // Without dynamic_image_size InternVL resizes to one tile, which is tiling with max 1.
    tiling: {
      minNum: dynamic ? c.min_dynamic_patch : 1,
      maxNum: dynamic ? c.max_dynamic_patch : 1,
      imageSize,
      useThumbnail: c.use_thumbnail,
    },
    systemMessage: c.system_message ?? null,
  };
}

/** Settings of a transformers-native checkpoint (config.json, preprocessor_config.json, processor_config.json). */
export function hfSettings(config: unknown, preprocessor: unknown, processor: unknown, dir: string): InternVLSettings {
  const c = parse(HfConfig, config, join(dir, 'config.json'));
  const p = parse(HfPreprocessor, preprocessor, join(dir, 'preprocessor_config.json'));
  const seq = parse(HfProcessor, processor, join(dir, 'processor_config.json')).image_seq_length;
  const imageSize = p.size?.height ?? c.vision_config.image_size;
  return {
    mode: 'hf',
    tokensPerTile:
      seq ??
      c.image_seq_length ??
      tokensPerTile(
        c.vision_config.image_size,
        c.vision_config.patch_size,
        c.downsample_ratio,
        join(dir, 'config.json'),
      ),
    tiling: {
      minNum: p.crop_to_patches ? p.min_patches : 1,
      maxNum: p.crop_to_patches ? p.max_patches : 1,
      imageSize,
      useThumbnail: true,
    },
    systemMessage: null,
  };
}
