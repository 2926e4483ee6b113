// config.json of tiny random checkpoints, one per family, shaped like the golden fixtures': vocab
// 512 with Qwen's special tokens at real id − 151162, and every architectural feature of the real
// models present (GQA, M-RoPE sections, Qwen2.5-VL windows with a full-attention block, InternViT
// with pixel shuffle) at widths small enough for tests and demos.
import type { TinyFamily } from './tokenizer.js';

const special = {
  bos_token_id: 481,
  eos_token_id: 483,
  vision_start_token_id: 490,
  vision_end_token_id: 491,
  vision_token_id: 492,
  image_token_id: 493,
  video_token_id: 494,
};

const text = (hidden: number, heads: number, kvHeads: number, intermediate: number, layers: number) => ({
  vocab_size: 512,
  hidden_size: hidden,
  intermediate_size: intermediate,
  num_hidden_layers: layers,
  num_attention_heads: heads,
  num_key_value_heads: kvHeads,
  hidden_act: 'silu',
  rms_norm_eps: 1e-6,
  rope_theta: 1e6,
  max_position_embeddings: 32768,
  tie_word_embeddings: false,
  use_sliding_window: false,
  attention_dropout: 0,
  initializer_range: 0.02,
});

export function tinyConfig(family: TinyFamily): Record<string, unknown> {
  switch (family) {
    case 'qwen2_vl':
      return {
        architectures: ['Qwen2VLForConditionalGeneration'],
        model_type: 'qwen2_vl',
        ...text(64, 2, 1, 96, 3),
        ...special,
        rope_scaling: { type: 'mrope', mrope_section: [4, 6, 6] },
        vision_config: {
          depth: 3,
          embed_dim: 32,
          hidden_size: 64,
          num_heads: 2,
          mlp_ratio: 4,
          hidden_act: 'quick_gelu',
          in_channels: 3,
          patch_size: 14,
          spatial_merge_size: 2,
          temporal_patch_size: 2,
        },
      };
    case 'qwen2_5_vl':
      return {
        architectures: ['Qwen2_5_VLForConditionalGeneration'],
        model_type: 'qwen2_5_vl',
        ...text(48, 3, 1, 128, 3),
        ...special,
        rope_scaling: { type: 'mrope', mrope_section: [2, 3, 3] },
        vision_config: {
          depth: 3,
          hidden_size: 32,
          intermediate_size: 64,
          num_heads: 2,
          out_hidden_size: 48,
          hidden_act: 'silu',
          in_channels: 3,
          patch_size: 14,
          spatial_merge_size: 2,
          temporal_patch_size: 2,
          window_size: 112,
          fullatt_block_indexes: [1],
          tokens_per_second: 2,
        },
      };
    case 'internvl':
      return {
        architectures: ['InternVLChatModel'],
        model_type: 'internvl_chat',
        downsample_ratio: 0.5,
        dynamic_image_size: true,
        force_image_size: 448,
        max_dynamic_patch: 12,
        min_dynamic_patch: 1,
        ps_version: 'v2',
        select_layer: -1,
        template: 'internvl2_5',
        use_thumbnail: true,
        tie_word_embeddings: false,
        llm_config: {
          architectures: ['Qwen2ForCausalLM'],
          model_type: 'qwen2',
          ...text(48, 4, 2, 96, 3),
          bos_token_id: 481,
          eos_token_id: 483,
        },
        vision_config: {
          architectures: ['InternVisionModel'],
          model_type: 'intern_vit_6b',
          hidden_size: 32,
          intermediate_size: 96,
          num_hidden_layers: 3,
          num_attention_heads: 2,
          hidden_act: 'gelu',
          norm_type: 'layer_norm',
          layer_norm_eps: 1e-6,
          qkv_bias: true,
          qk_normalization: false,
          image_size: 448,
          patch_size: 14,
          num_channels: 3,
          drop_path_rate: 0,
          initializer_factor: 1,
        },
      };
  }
}
