// vision_config of Qwen2-VL and Qwen2.5-VL. The same key means different things in the two:
// `hidden_size` is the merger output (= LLM width) in Qwen2-VL but the ViT width in Qwen2.5-VL,
// whose merger output is `out_hidden_size`; Qwen2-VL's ViT width is `embed_dim`.
import { z } from 'zod';
import { parseConfig } from '../../util/config_error.js';
import { boundedInt, SIZE_BOUNDS as B, type Json } from '../config_schema.js';

export interface VisionConfig {
  /** qwen2_vl: LayerNorm + quick_gelu MLP; qwen2_5_vl: RMSNorm + SwiGLU and window attention. */
  family: 'qwen2_vl' | 'qwen2_5_vl';
  depth: number;
  width: number;
  numHeads: number;
  /** MLP hidden size. */
  intermediateSize: number;
  hiddenAct: string;
  outHiddenSize: number;
  inChannels: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  /** Qwen2.5-VL: window side in pixels and the blocks that attend over whole images instead. */
  windowSize: number;
  fullAttentionBlocks: number[];
}

const common = {
  depth: boundedInt(B.layers).default(32),
  num_heads: boundedInt(B.heads).default(16),
  in_channels: boundedInt(B.channels).optional(),
  in_chans: boundedInt(B.channels).optional(),
  patch_size: boundedInt(B.patch).default(14),
  temporal_patch_size: boundedInt(B.patch).default(2),
  spatial_merge_size: boundedInt(B.patch).default(2),
};

const qwen2Schema = z
  .object({
    ...common,
    embed_dim: boundedInt(B.hidden).default(1280),
    hidden_size: boundedInt(B.hidden).default(3584),
    mlp_ratio: z.number().positive().max(64).default(4),
    hidden_act: z.string().default('quick_gelu'),
  })
  .loose();

const qwen25Schema = z
  .object({
    ...common,
    hidden_size: boundedInt(B.hidden).default(3584),
    intermediate_size: boundedInt(B.intermediate).default(3420),
    out_hidden_size: boundedInt(B.hidden).default(3584),
    hidden_act: z.string().default('silu'),
    window_size: boundedInt(B.imageSide).default(112),
    fullatt_block_indexes: z
      .array(
        z
          .number()
          .int()
          .min(0)
          .max(B.layers - 1),
      )
      .max(B.layers)
      .default([7, 15, 23, 31]),
  })
  .loose();

export function parseVisionConfig(family: VisionConfig['family'], json: Json, where: string): VisionConfig {
  if (family === 'qwen2_vl') {
    const c = parseConfig(qwen2Schema, json, where, { root: 'vision_config' });
    return {
      family,
      depth: c.depth,
      width: c.embed_dim,
      numHeads: c.num_heads,
      intermediateSize: Math.round(c.embed_dim * c.mlp_ratio),
      hiddenAct: c.hidden_act,
      outHiddenSize: c.hidden_size,
      inChannels: c.in_channels ?? c.in_chans ?? 3,
      patchSize: c.patch_size,
      temporalPatchSize: c.temporal_patch_size,
      spatialMergeSize: c.spatial_merge_size,
      windowSize: 0,
      fullAttentionBlocks: [],
    };
  }
  const c = parseConfig(qwen25Schema, json, where, { root: 'vision_config' });
  return {
    family,
    depth: c.depth,
    width: c.hidden_size,
    numHeads: c.num_heads,
    intermediateSize: c.intermediate_size,
    hiddenAct: c.hidden_act,
    outHiddenSize: c.out_hidden_size,
    inChannels: c.in_channels ?? c.in_chans ?? 3,
    patchSize: c.patch_size,
    temporalPatchSize: c.temporal_patch_size,
    spatialMergeSize: c.spatial_merge_size,
    windowSize: c.window_size,
    fullAttentionBlocks: c.fullatt_block_indexes,
  };
}
