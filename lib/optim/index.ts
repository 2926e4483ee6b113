// optim: optimizers with parameter groups and resumable state, LR schedules, gradient clipping.
export {
  Optimizer,
  type GroupOptions,
  type NamedParameter,
  type ParamGroup,
  type ParamList,
  type ParamsArg,
  type ParamState,
  type OptimizerState,
} from './optimizer.js';
export { AdamW, ADAMW_DEFAULTS, type AdamWOptions } from './adamw.js';
export { SGD, SGD_DEFAULTS, type SGDOptions } from './sgd.js';
export {
  LRScheduler,
  lrMultiplier,
  warmupSteps,
  type ScheduleName,
  type ScheduleOptions,
  type SchedulerState,
} from './schedule.js';
export { clipGradNorm_ } from './clip.js';
export { saveOptimizer, loadOptimizer } from './checkpoint_file.js';
export { MixedPrecisionOptimizer, type MixedPrecisionOptions } from './mixed_precision.js';
