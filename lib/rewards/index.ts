// Reward functions for online RL (GRPO / GSPO): TRL's batch signature, verl's compute_score form,
// a registry recipes name them in, a combiner that never stops a step, and the anchors' built-ins.
export {
  columnOf,
  groundTruthOf,
  perRow,
  textOf,
  type NamedReward,
  type RewardBatch,
  type RewardColumns,
  type RewardFunction,
  type RewardText,
  type RewardValues,
} from './types.js';
export {
  rewardFunctionMetrics,
  scoreRewards,
  type RewardFailure,
  type ScoredRewards,
  type ScoreRewardsOptions,
} from './combine.js';
export {
  dispatchOnDataSource,
  fromComputeScore,
  type ComputeScore,
  type DispatchOptions,
  type ScoreResult,
  type ScoreWithExtras,
} from './verl.js';
export {
  RewardRegistry,
  registerBuiltinRewards,
  registerReward,
  resolveRewards,
  rewardRegistry,
  type RewardFactory,
  type RewardOptions,
  type RewardSpec,
} from './registry.js';
export { clampedIou, lisaGiouPlusOne, torchvisionIou, virftIou, type Box } from './boxes.js';
export {
  extractVirftBoxes,
  lisaGrounding,
  lisaGroundingScore,
  matchDetections,
  THINK_ANSWER_FORMAT,
  virftClassification,
  virftClassificationScore,
  virftDetectionConfidence,
  virftDetectionIou,
  virftDetectionScores,
  virftFormat,
  type DetectionPrediction,
  type VirftOptions,
} from './virft.js';
export { geo3k, geo3kComputeScore, geo3kScore, THINK_BOXED_FORMAT, type Geo3kOptions } from './geo3k.js';
export { extractBoxedContent, gradeAnswer, normalizeExpression, normalizeMathAnswer } from './math_grader.js';
export { expressionsEqual, parseExpression } from './math_expr.js';
export { latexToText, type LatexToTextOptions } from './latex_text.js';
export {
  anls,
  CHECK_MODES,
  checkAnswer,
  evalAiNormalize,
  extractAnswerFromBox,
  extractMmprAnswer,
  mathScore,
  mmprComputeScore,
  mmprCorrectness,
  mmprScore,
  modesForDataset,
  multiChoiceScore,
  PROMPT_VERSIONS,
  relaxedCorrectness,
  type CheckMode,
  type MmprRewardOptions,
  type PromptVersion,
} from './mmpr.js';
export {
  checkGroundingOptions,
  extractGroundingBox,
  GROUNDING_REWARD_TYPES,
  groundingComputeScore,
  groundingRewardOf,
  groundingScore,
  internvlGrounding,
  refcocoGrounding,
  refcocoScore,
  scaleBox,
  type GroundingOptions,
  type GroundingRewardType,
  type RefcocoOptions,
} from './grounding.js';
export { exactMatch, extractForMatch, regexFormat, type ExactMatchOptions, type RegexFormatOptions } from './text.js';
export { pythonFloat, pythonRound } from './python.js';
