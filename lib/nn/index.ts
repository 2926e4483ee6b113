// nn: modules named like checkpoints, the layers every family shares, attention and rotary math.
export { Module, isFloating, type StateDict, type LoadOptions } from './module.js';
export { Linear, Embedding, PatchConv, Dropout } from './layers.js';
export type { LmHead } from './lm_head.js';
export { LayerNorm, RMSNorm } from './norm.js';
export { ModuleList, ModuleDict } from './container.js';
export { activation, type Activation } from './activation.js';
export {
  inverseFrequencies,
  rotaryAngles,
  cosSin,
  mropeAngles,
  rotateHalf,
  applyRotary,
  type CosSin,
} from './rotary.js';
export { attend, repeatKv, causalMask, segmentMask, dtypeMin, type AttendOptions } from './attention.js';
export { KVCache } from './kv_cache.js';
export { initWeights } from './init.js';
export type { ParamOptions } from './options.js';
export { checkpointed } from './checkpointing.js';
