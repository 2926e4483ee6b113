// models: Hugging Face checkpoints of the supported families as vlalign modules.
export {
  fromPretrained,
  savePretrained,
  saveConfig,
  weightFiles,
  type PretrainedOptions,
  type SaveOptions,
} from './pretrained.js';
export { supportedModelTypes } from './registry.js';
export type { CausalLM, CausalLMOutput, ForwardOptions, ModelInputs } from './causal_lm.js';
export { Qwen2ForCausalLM } from './qwen2/causal_lm.js';
export { Qwen2Model } from './qwen2/decoder.js';
export { parseTextConfig, type TextConfig } from './qwen2/config.js';
export { QwenVLForConditionalGeneration } from './qwen2_vl/model.js';
export { ropeIndex } from './qwen2_vl/rope_index.js';
export { InternVLChatModel, type InternVLOptions, type ImageFeatures } from './internvl/model.js';
export { lockstepOf, setLockstep, type Lockstep } from './lockstep.js';
