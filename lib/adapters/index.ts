// adapters: PEFT's LoRA / DoRA for vlalign models, with PEFT's config and adapter file format.
export {
  LoraConfigSchema,
  loraConfig,
  fromPeftJson,
  toPeftJson,
  PEFT_FORMAT_VERSION,
  TASK_TYPES,
  type LoraConfig,
  type LoraConfigInput,
} from './config.js';
export { LoraLinear, type LoraLayerOptions, type MergeOptions } from './lora_linear.js';
export { SavedModule, cloneModule } from './modules_to_save.js';
export { LoraModel, getPeftModel } from './lora_model.js';
export { targetedModules } from './inject.js';
export { loadAdapter, type LoadAdapterOptions } from './load.js';
export { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, readAdapterConfig, loadAdapterWeights } from './io.js';
export {
  ALL_LINEAR,
  DECODER_PROJECTIONS,
  matchModule,
  resolveTargets,
  allLinearNames,
  outputLayerName,
  rankAndAlpha,
  languageModelTargets,
  decoderLayersPath,
  type Match,
  type TargetSpec,
} from './targeting.js';
