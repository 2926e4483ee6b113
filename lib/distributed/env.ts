// Where this process sits in a job, read from the environment its launcher set, with the rules users
// of torchrun and SLURM already know (docs/distributed.md):
// - torchrun / `vlalign launch` (also torch.distributed's env:// rendezvous): RANK and WORLD_SIZE,
//   LOCAL_RANK and LOCAL_WORLD_SIZE (default: RANK and WORLD_SIZE, one node), MASTER_ADDR and
//   MASTER_PORT (required, as env:// requires them). TORCHELASTIC_USE_AGENT_STORE=True means
//   torchrun's agent already serves the TCPStore at MASTER_ADDR:MASTER_PORT; TORCHELASTIC_RESTART_COUNT
//   names the attempt whose keys the workers use.
// - SLURM (`srun`), when RANK is unset: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, tasks per node from
//   SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE at SLURM_NODEID; MASTER_ADDR, else the first host of
//   the step's node list (SLURM_STEP_NODELIST, SLURM_JOB_NODELIST, SLURM_NODELIST), where task 0 runs;
//   MASTER_PORT, else torchrun's default 29500.
// torchrun's variables win when both are set (`srun torchrun ...`: the workers are torchrun's).
import { describe } from '../torch/args.js';
import { expandTasksPerNode, firstSlurmHost } from './slurm.js';

export type Launcher = 'torchrun' | 'slurm';

export interface LaunchEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Whose variables gave the ranks ('torchrun' also covers `vlalign launch` and hand-set RANK). */
  launcher: Launcher;
  /** torchrun's agent serves the TCPStore (its static rendezvous); rank 0 must not host another. */
  agentStore: boolean;
  /** torchrun's restart attempt (TORCHELASTIC_RESTART_COUNT); keys of each attempt are kept apart. */
  restartCount: number;
}

/** torchrun's default master port, also SLURM jobs' when MASTER_PORT is unset. */
export const DEFAULT_MASTER_PORT = 29500;

type Env = Readonly<Record<string, string | undefined>>;

/** An environment variable that does not hold what the launcher rules need; names the variable. */
export class LaunchEnvError extends RangeError {
  override name = 'LaunchEnvError';
}

function fail(variable: string, expected: string, value: string | undefined): never {
  throw new LaunchEnvError(`Expected ${expected} for ${variable} (environment) but received ${describe(value)}`);
}

function integerVar(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = env[name];
  const value = text !== undefined && /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max)) {
    fail(name, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, text);
  }
  return value;
}

const isSet = (env: Env, name: string): boolean => env[name] !== undefined && env[name] !== '';

function requiredVar(env: Env, name: string, why: string): string {
  if (!isSet(env, name)) throw new LaunchEnvError(`${name} is not set (${why})`);
  return env[name] as string;
}

/** torchrun's environment (also `vlalign launch`'s, and what torch's env:// reads). */
function fromTorchrun(env: Env): LaunchEnv {
  const why = 'torchrun and `vlalign launch` set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together';
  for (const name of ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']) requiredVar(env, name, why);
  const worldSize = integerVar(env, 'WORLD_SIZE', 1);
  const rank = integerVar(env, 'RANK', 0, worldSize - 1);
  const localWorldSize = isSet(env, 'LOCAL_WORLD_SIZE') ? integerVar(env, 'LOCAL_WORLD_SIZE', 1, worldSize) : worldSize;
  const localRank = isSet(env, 'LOCAL_RANK') ? integerVar(env, 'LOCAL_RANK', 0, localWorldSize - 1) : rank;
  if (!isSet(env, 'LOCAL_RANK') && rank >= localWorldSize) {
    throw new LaunchEnvError(
      `LOCAL_RANK is not set and RANK ${rank} is not a rank on this node (LOCAL_WORLD_SIZE ${localWorldSize})`,
    );
  }
  return {
    rank,
    worldSize,
    localRank,
    localWorldSize,
    masterAddr: env.MASTER_ADDR as string,
    masterPort: integerVar(env, 'MASTER_PORT', 1, 65535),
    launcher: 'torchrun',
    agentStore: /^(true|1)$/i.test(env.TORCHELASTIC_USE_AGENT_STORE ?? ''),
    restartCount: isSet(env, 'TORCHELASTIC_RESTART_COUNT') ? integerVar(env, 'TORCHELASTIC_RESTART_COUNT', 0) : 0,
  };
}

/** Tasks on this node: SLURM_NTASKS_PER_NODE when it is one number, else SLURM_TASKS_PER_NODE's entry. */
function slurmTasksOnNode(env: Env, worldSize: number): number {
  if (isSet(env, 'SLURM_NTASKS_PER_NODE') && /^\d+$/.test(env.SLURM_NTASKS_PER_NODE as string)) {
    return integerVar(env, 'SLURM_NTASKS_PER_NODE', 1, worldSize);
  }
  if (!isSet(env, 'SLURM_TASKS_PER_NODE')) return worldSize;
  const perNode = expandTasksPerNode(env.SLURM_TASKS_PER_NODE as string);
  const node = isSet(env, 'SLURM_NODEID') ? integerVar(env, 'SLURM_NODEID', 0, perNode.length - 1) : 0;
  return perNode[node];
}

function slurmMasterAddr(env: Env): string {
  if (isSet(env, 'MASTER_ADDR')) return env.MASTER_ADDR as string;
  const name = ['SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST', 'SLURM_NODELIST'].find((n) => isSet(env, n));
  if (name === undefined) {
    throw new LaunchEnvError('MASTER_ADDR is not set and SLURM gives no node list (SLURM_NODELIST) to take it from');
  }
  try {
    return firstSlurmHost(env[name] as string);
  } catch (error) {
    throw new LaunchEnvError(`${name}: ${(error as Error).message}`);
  }
}

/** SLURM's environment (`srun`: one task per process). */
function fromSlurm(env: Env): LaunchEnv {
  const worldSize = integerVar(env, 'SLURM_NTASKS', 1);
  const rank = integerVar(env, 'SLURM_PROCID', 0, worldSize - 1);
  const localWorldSize = slurmTasksOnNode(env, worldSize);
  return {
    rank,
    worldSize,
    localRank: isSet(env, 'SLURM_LOCALID') ? integerVar(env, 'SLURM_LOCALID', 0, localWorldSize - 1) : 0,
    localWorldSize,
    masterAddr: slurmMasterAddr(env),
    masterPort: isSet(env, 'MASTER_PORT') ? integerVar(env, 'MASTER_PORT', 1, 65535) : DEFAULT_MASTER_PORT,
    launcher: 'slurm',
    agentStore: false,
    restartCount: 0,
  };
}

/**
 * This process's place in a launched job, or null when no launcher's variables are set (RANK or
 * WORLD_SIZE for torchrun, SLURM_PROCID for SLURM). A variable that is set but wrong throws a
 * LaunchEnvError naming it.
 */
export function readLaunchEnv(env: Env = process.env): LaunchEnv | null {
  if (isSet(env, 'RANK') || isSet(env, 'WORLD_SIZE')) return fromTorchrun(env);
  if (isSet(env, 'SLURM_PROCID')) return fromSlurm(env);
  return null;
}
