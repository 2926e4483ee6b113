// The Qwen2 / Qwen3 text decoder config: the fields of config.json (flat, or nested under
// `text_config` / `llm_config` in VLM configs) with transformers' defaults.
import { z } from 'zod';
import { parseConfig } from '../../util/config_error.js';
import { boundedInt, SIZE_BOUNDS as B, tokenId, type Json } from '../config_schema.js';

const ropeScaling = z
  .object({
    type: z.string().optional(),
    rope_type: z.string().optional(),
    mrope_section: z.array(boundedInt(B.hidden)).optional(),
    factor: z.number().optional(),
  })
  .loose()
  .nullable()
  .optional();

const schema = z
  .object({
    model_type: z.string().default('qwen2'),
    vocab_size: boundedInt(B.vocab),
    hidden_size: boundedInt(B.hidden),
    intermediate_size: boundedInt(B.intermediate),
    num_hidden_layers: boundedInt(B.layers),
    num_attention_heads: boundedInt(B.heads),
    num_key_value_heads: boundedInt(B.heads).optional(),
    head_dim: boundedInt(B.hidden).nullable().optional(),
    hidden_act: z.string().default('silu'),
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().default(10000),
    rope_scaling: ropeScaling,
    max_position_embeddings: boundedInt(B.positions).default(32768),
    tie_word_embeddings: z.boolean().default(false),
    attention_bias: z.boolean().optional(),
    attention_dropout: z.number().min(0).max(1).default(0),
    use_sliding_window: z.boolean().default(false),
    bos_token_id: tokenId.nullable().optional(),
    eos_token_id: z
      .union([tokenId, z.array(tokenId)])
      .nullable()
      .optional(),
  })
  .loose();

export interface TextConfig {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  hiddenAct: string;
  rmsNormEps: number;
  ropeTheta: number;
  /** M-RoPE frequency sections (t, h, w), or null for 1-D RoPE. */
  mropeSection: number[] | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2 always; Qwen3 per `attention_bias`). */
  qkvBias: boolean;
  /** Qwen3: per-head RMSNorm on q and k before RoPE. */
  qkNorm: boolean;
  attentionDropout: number;
  eosTokenIds: number[];
  /** The raw JSON, written back unchanged on save. */
  raw: Json;
}

export function parseTextConfig(json: Json, where: string): TextConfig {
  const c = parseConfig(schema, json, where);
  const qwen3 = c.model_type === 'qwen3';
  const scaling = c.rope_scaling ?? null;
  const ropeType = scaling?.rope_type ?? scaling?.type ?? 'default';
  if (!['default', 'mrope', 'dynamic'].includes(ropeType)) {
    throw new Error(`${where}: rope_scaling type '${ropeType}' is not supported (default, mrope, dynamic)`);
  }
  if (c.use_sliding_window) throw new Error(`${where}: use_sliding_window=true is not supported`);
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0) {
    throw new Error(
      `${where}: num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim))
    throw new Error(
      `${where}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`,
    );
  const mropeSection = scaling?.mrope_section ?? null;
  if (mropeSection && 2 * mropeSection.reduce((a, b) => a + b, 0) !== headDim) {
    throw new Error(
      `${where}: rope_scaling.mrope_section ${JSON.stringify(mropeSection)} must sum to head_dim/2 = ${headDim / 2}`,
    );
  }
  const eos = c.eos_token_id ?? [];
  return {
    modelType: c.model_type,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim,
    hiddenAct: c.hidden_act,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    mropeSection,
    maxPositionEmbeddings: c.max_position_embeddings,
    tieWordEmbeddings: c.tie_word_embeddings,
    qkvBias: qwen3 ? (c.attention_bias ?? false) : true,
    qkNorm: qwen3,
    attentionDropout: c.attention_dropout,
    eosTokenIds: Array.isArray(eos) ? eos : [eos],
    raw: json,
  };
}
