// pipelines: MMPR's preference-data pipelines (DropoutNTP, correctness sampling and pairs) and
// MIA-DPO's multi-image augmentation on our models, resumable and streaming.
export {
  DROPOUT_NTP_DEFAULTS,
  dropoutPrefix,
  dropoutQuestion,
  runDropoutNtp,
  type DropoutNtpOptions,
} from './dropout_ntp.js';
export {
  modelEngine,
  scriptedEngine,
  type GenerationEngine,
  type GenerationRequest,
  type SamplingSettings,
  type StreamRequest,
  type StreamResult,
} from './engine.js';
export { readJsonlRows, type InputRow } from './input.js';
export { runMiaDpo, type MiaDpoOptions, type MiaDpoSummary } from './mia_dpo.js';
export { cellFit, gridLayout, pipPlacement, writeGrid, writePictureInPicture } from './mia_dpo_images.js';
export {
  attentionEngine,
  centerRatio,
  gridRatio,
  isRejectedCandidate,
  MIA_DPO_DEFAULTS,
  MIA_FORMS,
  maxProbPerplexity,
  ratioBound,
  sequenceRatio,
  type Inspection,
  type InspectingEngine,
  type MiaForm,
} from './mia_dpo_select.js';
export { writeMetaEntry, type MetaEntry } from './meta.js';
export {
  buildPairs,
  classifyItems,
  dedupePairs,
  fixAnswer,
  optionLetter,
  pairKey,
  runPairs,
  type ClassifyOptions,
  type Groups,
  type PairRow,
  type PairsOptions,
  type PairsSummary,
  type PairStats,
  type ScoredItem,
} from './pairs.js';
export {
  IMAGE_PLACEHOLDER,
  MMPR_INSTRUCTIONS,
  R1_SYSTEM_PROMPT,
  VALID_INSTRUCTIONS,
  versionForFile,
  wrapQuestion,
} from './prompts.js';
export { PythonRandom } from './python_random.js';
export {
  runResumable,
  runStreaming,
  type GeneratingOptions,
  type IndexedItem,
  type ResumableRun,
  type RunSummary,
  type StreamingRun,
} from './runner.js';
export { runCorrectnessSampling, SAMPLE_DEFAULTS, type SampleOptions } from './sample.js';
