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
  pairRewards,
  preferenceAccuracy,
  type PairReward,
  type PreferenceAccuracy,
  type PreferenceAccuracyOptions,
  type ReferenceLogps,
} from './preference.js';
export { answerBatch, greedyAnswers, leftPadded, type GreedyAnswer, type GreedyOptions } from './greedy.js';
export {
  answersOf,
  isMetricName,
  METRICS,
  referenceOf,
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
export { answerEvaluation, answerMetrics, preferenceMetrics, type AnswerEvaluation } from './trainer_metrics.js';
export {
  unpairedPreferenceAccuracy,
  type UnpairedPreferenceAccuracy,
  type UnpairedReward,
} from './unpaired_preference.js';
export {
  CONFIG_FILE,
  answerLine,
  evaluateAnswers,
  evaluatePreferences,
  PREDICTIONS_FILE,
  runEvaluation,
  type AnswerRunOptions,
  type PreferenceRunOptions,
  type RunOptions,
} from './run.js';
export { PredictionsLog, predictionText, writePredictions, type PredictionLine } from './predictions_log.js';
export {
  aggregate,
  buildResults,
  RESULTS_JSON,
  RESULTS_MARKDOWN,
  resultsMarkdown,
  writeResults,
  type Aggregate,
  type EvalResults,
} from './results.js';
export { openQuestions, QUESTION_FORMATS, type QuestionFormat, type QuestionOptions } from './question_data.js';
export { openPromptSet, parsePromptSetSpec, PROMPT_SET_FORMATS, type PromptSetOptions } from './prompt_set.js';
