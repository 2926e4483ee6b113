// train: the trainer's logging (TensorBoard, metrics jsonl, progress) and its checkpoints.
export { TensorBoardWriter, crc32c, maskedCrc32c, tfRecord } from './tensorboard.js';
export { MetricsLog, readMetricsLog, type LogEntry } from './metrics_log.js';
export {
  TrainingProgress,
  formatDuration,
  startBanner,
  type BannerInfo,
  type ProgressOptions,
  type ProgressStream,
} from './progress.js';
export {
  COMPLETE_MARKER,
  CheckpointManager,
  TRAINER_STATE_FILE,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  resolveResume,
  trainerState,
  type CheckpointWriter,
  type LoadedCheckpoint,
  type SavedCheckpoint,
  type TrainerState,
} from './checkpoint.js';
export {
  OPTIMIZER_FILE,
  RESUME_STATE_FILE,
  RNG_FILE,
  restoreTraining,
  trainingWriters,
  type DataPosition,
  type Stateful,
  type TrainingParts,
} from './training_state.js';
export { pairForward, pairMask, pairPositions, type PairForwardOptions, type PairHidden } from './pair_forward.js';
export {
  TrainingArgumentsSchema,
  DpoConfigSchema,
  KtoConfigSchema,
  SftConfigSchema,
  dpoConfig,
  ktoConfig,
  sftConfig,
  type TrainingArguments,
  type DpoConfig,
  type DpoConfigInput,
  type KtoConfig,
  type KtoConfigInput,
  type SftConfig,
  type SftConfigInput,
} from './config.js';
export { applyFreezing, type FreezeOptions } from './freeze.js';
export { applyPrecision, withFloat32Weights, type PrecisionArgs, type PrecisionParts } from './precision.js';
export { createTrainer, referenceCacheDir, type TrainerInit, type TrainerMethod } from './create.js';
export { Trainer, type TrainOutput } from './trainer.js';
export { trainingSteps, type LoopArgs } from './loop_args.js';
export {
  ReferenceCache,
  adapterReference,
  frozenReference,
  policyReference,
  type ReferencePolicy,
} from './reference.js';
export { accumulationFor, rankPlace, TrainingGroup, type GradientSync, type RankPlace } from './distributed.js';
