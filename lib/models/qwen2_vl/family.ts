import type { ModelFamily } from '../family.js';
import { isRecomputedBuffer } from '../family.js';
import { QwenVLForConditionalGeneration } from './model.js';

/**
 * Qwen2-VL and Qwen2.5-VL. Checkpoints come in two layouts: the legacy hub one (`visual.*`,
 * `model.*`, `lm_head.weight`), which is our module tree, and transformers ≥ 4.52's
 * (`model.visual.*`, `model.language_model.*`), mapped onto it here.
 */
export const qwenVLFamily: ModelFamily = {
  modelTypes: ['qwen2_vl', 'qwen2_5_vl'],
  create: (config, options) => new QwenVLForConditionalGeneration(config, options),
  moduleName(name, model) {
    if (isRecomputedBuffer(name)) return null;
    if (name === 'lm_head.weight' && model.textConfig.tieWordEmbeddings) return null;
    if (name.startsWith('model.visual.')) return name.slice('model.'.length);
    if (name.startsWith('model.language_model.')) return `model.${name.slice('model.language_model.'.length)}`;
    return name;
  },
};
