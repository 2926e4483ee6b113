// evaluation (`import { evaluation } from 'vlalign'`; `eval` is not a binding name): metrics on
// generated answers, batched greedy answering, preference accuracy, and the resumable runs behind
// `vlalign eval`.
export {
  greedyAccuracy,
  type GreedyAccuracy,
  type GreedyAccuracyOptions,
  type ScoredAnswer,
} from './greedy_accuracy.js';
export {
  preferenceAccuracy,
  type PairReward,
  type PreferenceAccuracy,
  type PreferenceAccuracyOptions,
} from './preference.js';
export { answerBatch, greedyAnswers, leftPadded, type GreedyAnswer, type GreedyOptions } from './greedy.js';
export {
  answersOf,
  isMetricName,
  METRICS,
  scorePrediction,
  type MetricName,
  type MetricScore,
} from './metrics.js';
export { anlsScore, boxedMathScore, exactMatch, relaxedAccuracy, vqaAccuracy } from './answer_metrics.js';
export { extractChoiceLetter, multipleChoiceScore } from './multiple_choice.js';
export {
  groundingTruthOf,
  REFCOCO_PROMPT,
  refcocoHit,
  refcocoPrompt,
  virftDetection,
  type DetectionScore,
  type GroundingTruth,
} from './grounding.js';
export { inBatches, streamRecords, type RecordSource } from './record_source.js';
