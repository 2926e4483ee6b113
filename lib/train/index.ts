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
