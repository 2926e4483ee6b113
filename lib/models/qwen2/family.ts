import type { ModelFamily } from '../family.js';
import { isRecomputedBuffer } from '../family.js';
import { parseTextConfig } from './config.js';
import { Qwen2ForCausalLM } from './causal_lm.js';

/** Plain Qwen2 / Qwen3 language models (also the LLM inside InternVL). */
export const qwen2Family: ModelFamily = {
  modelTypes: ['qwen2', 'qwen3'],
  create: (config, options) =>
    new Qwen2ForCausalLM(parseTextConfig(config, `${String(config.model_type)} config.json`), config, options),
  moduleName(name, model) {
    if (isRecomputedBuffer(name)) return null;
    // A tied checkpoint may still carry lm_head.weight; the embedding is used (transformers' rule).
    if (name === 'lm_head.weight' && model.textConfig.tieWordEmbeddings) return null;
    return name;
  },
};
