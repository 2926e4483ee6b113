// distributed: c10d process groups (Gloo; NCCL in CUDA builds), their collectives, DDP and ZeRO sharding, placed by the
// environment torchrun, `vlalign launch` and SLURM set (docs/distributed.md).
export type { Backend, ReduceOp } from './c10d.js';
export {
  initProcessGroup,
  destroyProcessGroup,
  isInitialized,
  getRank,
  getWorldSize,
  getLocalRank,
  getLocalWorldSize,
  getBackend,
  getProcessGroup,
  DEFAULT_TIMEOUT_MS,
  type InitProcessGroupOptions,
  type ProcessGroupInfo,
} from './process_group.js';
export {
  allReduce,
  allGather,
  reduceScatter,
  broadcast,
  barrier,
  allGatherSync,
  reduceScatterSync,
} from './collectives.js';
export { DataParallel, type DataParallelOptions, type DataParallelBucket } from './ddp.js';
export { readLaunchEnv, LaunchEnvError, DEFAULT_MASTER_PORT, type LaunchEnv, type Launcher } from './env.js';
export { firstSlurmHost, expandTasksPerNode } from './slurm.js';
export {
  ZeroRedundancy,
  zeroUnits,
  zeroUnitModules,
  type ZeroStage,
  type ZeroOptions,
  type ZeroBytes,
  type ZeroShardView,
  type ZeroTraffic,
} from './zero.js';
export {
  saveZeroCheckpoint,
  loadZeroCheckpoint,
  saveZeroConsolidated,
  readZeroIndex,
  zeroShardFile,
  ZERO_INDEX,
  type ZeroIndex,
  type ZeroCheckpointOptions,
} from './zero_checkpoint.js';
export { saveZeroAdapter } from './zero_adapter.js';
