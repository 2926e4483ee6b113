// Preference and RL losses over the fused LM-head kernels.
export { PreferenceLoss, type PreferenceBatch } from './preference.js';
export { UnpairedPreferenceLoss, type UnpairedBatch } from './kto.js';
export { GrpoLoss, type GrpoBatch } from './grpo.js';
export { SftLoss, type SftBatch } from './sft.js';
export type { LossResult, ComputeOptions, LossNormalisers } from './token_loss.js';
export {
  preferenceLossFromLogps,
  type PreferenceLogps,
  type PreferenceLogpsOptions,
  type PreferenceLogpsResult,
} from './pair_loss.js';
export { sequenceLogps, tokenLogps, type ReferenceHidden, type ReferenceOptions } from './reference.js';
export { targetsFromLabels } from './targets.js';
export {
  eagerTokenStats,
  fusedTokenStats,
  tokenStatsNoGrad,
  type LmHead,
  type TokenStats,
  type HeadOptions,
} from './fused_linear.js';
export {
  DPO_LOSSES,
  scoresOf,
  type DpoLossType,
  type DpoLossOptions,
  type PairLogps,
  type PairScores,
  type ScoreOptions,
  type TrlVersion,
} from './dpo.js';
export { metricMeans, mergeMetricTotals, type MetricTotals } from './metrics.js';
export { RunningMoments, type RunningMomentsState } from './running_moments.js';
export {
  MPO,
  PreferenceLossConfigSchema,
  KtoLossConfigSchema,
  GrpoLossConfigSchema,
  SftLossConfigSchema,
  type PreferenceLossConfigInput,
  type SftLossConfigInput,
  type KtoLossConfigInput,
  type GrpoLossConfigInput,
} from './config.js';
