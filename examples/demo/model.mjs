// The demo's model: a tiny InternVL (remote-code layout, model_type internvl_chat) sized for the
// shapes task on two CPU cores. InternViT keeps an absolute position table, which location
// questions need; 64 px tiles of 8 px patches give an 8 x 8 grid, pixel-shuffled into 16 image
// tokens; a short system message keeps prompts near 60 tokens. Written with random weights here,
// then SFT-trained by scripts/train-demo-base.mjs into examples/demo/base-model/.
import { rmSync } from 'node:fs';
import { models, nn, tiny, torch } from 'vlalign';
import { IMAGE_SIDE } from './shapes.mjs';

export const SYSTEM_MESSAGE = 'Answer with one word.';

export function demoModelConfig() {
  const config = tiny.tinyConfig('internvl');
  return {
    ...config,
    force_image_size: IMAGE_SIDE,
    dynamic_image_size: false,
    max_dynamic_patch: 1,
    use_thumbnail: false,
    system_message: SYSTEM_MESSAGE,
    llm_config: {
      ...config.llm_config,
      hidden_size: 128,
      intermediate_size: 320,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    },
    vision_config: {
      ...config.vision_config,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      image_size: IMAGE_SIDE,
      patch_size: 8,
      // LayerScale's starting value: small, so each block starts near the identity.
      initializer_factor: 0.1,
    },
  };
}

/** A randomly initialised demo model in the HF layout (config, safetensors, tokenizer files). */
export async function writeInitialModel(dir, seed = 0) {
  rmSync(dir, { recursive: true, force: true });
  await tiny.writeTinyTokenizer(dir, 'internvl');
  torch.manualSeed(seed);
  // <IMG_CONTEXT>: the tiny tokenizer's id (Qwen's 151667 − 151162).
  const model = new models.InternVLChatModel(demoModelConfig(), { dtype: 'float32', imgContextTokenId: 505 });
  try {
    nn.initWeights(model, 0.02);
    await models.savePretrained(model, dir);
    return model.numParameters();
  } finally {
    model.dispose();
  }
}
