// InternVL configs in their two layouts, read into one shape: the remote-code config.json
// (`internvl_chat`: `vision_config` of InternVisionConfig, `llm_config`) and the transformers-native
// port (`internvl`: `vision_config` of InternVLVisionConfig, `text_config`). Defaults are each
// config class's own.
import { z } from 'zod';
import { parseConfig } from '../../util/config_error.js';
import { boundedInt, SIZE_BOUNDS as B, tokenId, type Json } from '../config_schema.js';
import { parseTextConfig, type TextConfig } from '../qwen2/config.js';

export interface InternVisionConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  hiddenAct: string;
  normType: 'layer_norm' | 'rms_norm';
  layerNormEps: number;
  qkvBias: boolean;
  /** RMSNorm over the full width on q and k before the head split (InternViT-6B). */
  qkNorm: boolean;
  /** The remote code uses layer_norm_eps for q/k norms; the transformers port its RMSNorm default 1e-6. */
  qkNormEps: number;
  /** The side the position embedding was trained at; other image sizes interpolate it. */
  imageSize: number;
  patchSize: number;
  numChannels: number;
  attentionDropout: number;
  /** Initial LayerScale value (ls1 / ls2). */
  layerScaleInit: number;
}

export interface InternVLConfig {
  modelType: 'internvl_chat' | 'internvl';
  vision: InternVisionConfig;
  text: TextConfig;
  /** The LLM's own config dict (what its config.json would hold). */
  textRaw: Json;
  downsampleRatio: number;
  /** v1 leaves the shuffled grid transposed; v2 swaps it back. */
  psVersion: 'v1' | 'v2';
  /** ViT hidden state fed to the projector: -1 = last layer, 0 = embeddings (Python indexing). */
  selectLayer: number;
  projectorAct: string;
  /** `<IMG_CONTEXT>` id: in the native config; the remote code takes it from the tokenizer. */
  imgContextTokenId: number | null;
}

const json = z.record(z.string(), z.unknown());

const remoteSchema = z
  .object({
    vision_config: json,
    llm_config: json,
    downsample_ratio: z.number().positive().max(1).default(0.5),
    ps_version: z.enum(['v1', 'v2']).default('v1'),
    select_layer: z.number().int().min(-B.layers).max(B.layers).default(-1),
    img_context_token_id: tokenId.optional(),
  })
  .loose();

const remoteVisionSchema = z
  .object({
    hidden_size: boundedInt(B.hidden).default(3200),
    num_hidden_layers: boundedInt(B.layers).default(48),
    num_attention_heads: boundedInt(B.heads).default(25),
    intermediate_size: boundedInt(B.intermediate).default(12800),
    hidden_act: z.string().default('gelu'),
    norm_type: z.enum(['layer_norm', 'rms_norm']).default('rms_norm'),
    layer_norm_eps: z.number().positive().default(1e-6),
    qkv_bias: z.boolean().default(false),
    qk_normalization: z.boolean().default(true),
    image_size: boundedInt(B.imageSide).default(224),
    patch_size: boundedInt(B.patch).default(14),
    num_channels: boundedInt(B.channels).default(3),
    attention_dropout: z.number().min(0).max(1).default(0),
    initializer_factor: z.number().default(0.1),
  })
  .loose();

const side = (max: number) => z.union([boundedInt(max), z.array(boundedInt(max)).length(2)]);

const nativeSchema = z
  .object({
    vision_config: json.default({}),
    text_config: json.default({}),
    image_token_id: tokenId.default(151667),
    downsample_ratio: z.number().positive().max(1).default(0.5),
    projector_hidden_act: z.string().default('gelu'),
    vision_feature_layer: z.number().int().min(-B.layers).max(B.layers).default(-1),
    vision_feature_select_strategy: z
      .literal('default', { message: "only 'default' (drop the CLS token) is supported" })
      .default('default'),
    tie_word_embeddings: z.boolean().optional(),
  })
  .loose();

const nativeVisionSchema = z
  .object({
    hidden_size: boundedInt(B.hidden).default(1024),
    num_hidden_layers: boundedInt(B.layers).default(24),
    num_attention_heads: boundedInt(B.heads).default(16),
    intermediate_size: boundedInt(B.intermediate).default(4096),
    hidden_act: z.string().default('gelu'),
    norm_type: z.enum(['layer_norm', 'rms_norm']).default('layer_norm'),
    layer_norm_eps: z.number().positive().default(1e-6),
    attention_bias: z.boolean().default(false),
    use_qk_norm: z.boolean().default(false),
    image_size: side(B.imageSide).default(448),
    patch_size: side(B.patch).default(14),
    num_channels: boundedInt(B.channels).default(3),
    attention_dropout: z.number().min(0).max(1).default(0),
    layer_scale_init_value: z.number().default(0.1),
    use_mean_pooling: z
      .literal(true, { message: 'a final layernorm (use_mean_pooling=false) is not supported' })
      .default(true),
    use_absolute_position_embeddings: z
      .literal(true, { message: 'only absolute position embeddings are supported' })
      .default(true),
    use_mask_token: z.boolean().default(false),
  })
  .loose();

/** remote code: the LLM class is `llm_config.architectures[0]`. */
const REMOTE_LLMS: Record<string, string> = { Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' };
const NATIVE_LLMS = ['qwen2', 'qwen3'];

export function parseInternVLConfig(raw: Json): InternVLConfig {
  return raw.model_type === 'internvl' ? parseNative(raw) : parseRemote(raw);
}

function parseRemote(raw: Json): InternVLConfig {
  const where = 'internvl_chat config.json';
  const c = parseConfig(remoteSchema, raw, where);
  const v = parseConfig(remoteVisionSchema, c.vision_config, where, { root: 'vision_config' });
  const arch = (c.llm_config.architectures as unknown[] | undefined)?.[0];
  const modelType = REMOTE_LLMS[String(arch)];
  if (modelType === undefined) {
    throw new Error(
      `${where}: llm_config.architectures[0] '${String(arch)}' is not supported (supported: ${Object.keys(REMOTE_LLMS).join(', ')}; InternLM2, Llama and Phi3 LLMs are not)`,
    );
  }
  // InternVLChatConfig forces tie_word_embeddings=False on the LLM whatever the file says.
  const textRaw = { ...c.llm_config, model_type: modelType, tie_word_embeddings: false };
  return {
    modelType: 'internvl_chat',
    vision: {
      hiddenSize: v.hidden_size,
      numLayers: v.num_hidden_layers,
      numHeads: v.num_attention_heads,
      intermediateSize: v.intermediate_size,
      hiddenAct: v.hidden_act,
      normType: v.norm_type,
      layerNormEps: v.layer_norm_eps,
      qkvBias: v.qkv_bias,
      qkNorm: v.qk_normalization,
      qkNormEps: v.layer_norm_eps,
      imageSize: v.image_size,
      patchSize: v.patch_size,
      numChannels: v.num_channels,
      attentionDropout: v.attention_dropout,
      layerScaleInit: v.initializer_factor,
    },
    text: parseTextConfig(textRaw, `${where} llm_config`),
    textRaw,
    downsampleRatio: c.downsample_ratio,
    psVersion: c.ps_version,
    selectLayer: c.select_layer,
    projectorAct: 'gelu',
    imgContextTokenId: c.img_context_token_id ?? null,
  };
}

function parseNative(raw: Json): InternVLConfig {
  const where = 'internvl config.json';
  const c = parseConfig(nativeSchema, raw, where);
  const v = parseConfig(nativeVisionSchema, c.vision_config, where, { root: 'vision_config' });
  const modelType = String(c.text_config.model_type ?? 'qwen2');
  if (!NATIVE_LLMS.includes(modelType)) {
    throw new Error(
      `${where}: text_config.model_type '${modelType}' is not supported (supported: ${NATIVE_LLMS.join(', ')})`,
    );
  }
  // Newer transformers read a top-level tie_word_embeddings; older ones the text config's.
  const tie = c.tie_word_embeddings ?? c.text_config.tie_word_embeddings ?? false;
  const textRaw = { ...c.text_config, model_type: modelType, tie_word_embeddings: tie };
  return {
    modelType: 'internvl',
    vision: {
      hiddenSize: v.hidden_size,
      numLayers: v.num_hidden_layers,
      numHeads: v.num_attention_heads,
      intermediateSize: v.intermediate_size,
      hiddenAct: v.hidden_act,
      normType: v.norm_type,
      layerNormEps: v.layer_norm_eps,
      qkvBias: v.attention_bias,
      qkNorm: v.use_qk_norm,
      qkNormEps: 1e-6,
      imageSize: squareSide(v.image_size, `${where} vision_config.image_size`),
      patchSize: squareSide(v.patch_size, `${where} vision_config.patch_size`),
      numChannels: v.num_channels,
      attentionDropout: v.attention_dropout,
      layerScaleInit: v.layer_scale_init_value,
    },
    text: parseTextConfig(textRaw, `${where} text_config`),
    textRaw,
    downsampleRatio: c.downsample_ratio,
    psVersion: 'v2',
    selectLayer: c.vision_feature_layer,
    projectorAct: c.projector_hidden_act,
    imgContextTokenId: c.image_token_id,
  };
}

function squareSide(value: number | number[], where: string): number {
  if (typeof value === 'number') return value;
  if (value[0] !== value[1]) throw new Error(`${where}: non-square sizes ${JSON.stringify(value)} are not supported`);
  return value[0]!;
}

/** Checks the ViT / pixel-shuffle geometry once, so forward never meets a fractional shape. */
export function checkGeometry(c: InternVLConfig, where: string): void {
  const { hiddenSize, numHeads, imageSize, patchSize, numLayers } = c.vision;
  if (hiddenSize % numHeads !== 0)
    throw new Error(`${where}: vision hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  if (imageSize % patchSize !== 0)
    throw new Error(`${where}: vision image_size ${imageSize} is not a multiple of patch_size ${patchSize}`);
  const factor = 1 / c.downsampleRatio;
  if (!Number.isInteger(factor))
    throw new Error(`${where}: downsample_ratio ${c.downsampleRatio} must be 1/n for an integer n`);
  if (c.selectLayer < -(numLayers + 1) || c.selectLayer > numLayers) {
    throw new Error(`${where}: select_layer ${c.selectLayer} is outside the ${numLayers + 1} ViT hidden states`);
  }
}
