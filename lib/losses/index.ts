// Preference and RL losses over the fused LM-head kernels.
export { PreferenceLoss, type PreferenceBatch, type LossResult } from './preference.js';
export { UnpairedPreferenceLoss, type UnpairedBatch } from './kto.js';
export { GrpoLoss, type GrpoBatch } from './grpo.js';
export { sequenceLogps, tokenLogps } from './reference.js';
export { targetsFromLabels } from './targets.js';
export { eagerTokenStats, fusedTokenStats, tokenStatsNoGrad, type LmHead, type TokenStats, type HeadOptions } from './fused_linear.js';
export { DPO_LOSSES, type DpoLossType, type PairLogps } from './dpo.js';
export { RunningMoments, type RunningMomentsState } from './running_moments.js';
export {
  MPO,
  PreferenceLossConfigSchema,
  KtoLossConfigSchema,
  GrpoLossConfigSchema,
  type PreferenceLossConfigInput,
  type KtoLossConfigInput,
  type GrpoLossConfigInput,
} from './config.js';
