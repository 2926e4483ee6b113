// The process group (torch.distributed's default group): created once per process from options and
// the launcher's environment (env.ts), then used by every collective until destroyed.
import { checkInteger, invalidArgument } from '../torch/args.js';
import { c10d, type Backend, type NativeGroupConfig } from './c10d.js';
import { readLaunchEnv, type Launcher } from './env.js';

export interface InitProcessGroupOptions {
  /** 'gloo' (CPU tensors; the default) or 'nccl' (CUDA tensors; only in builds against a CUDA libtorch with NCCL). */
  backend?: Backend;
  /**
   * How long the rendezvous and each collective may wait for the other ranks before failing, in ms.
   * Default 30 minutes (torch.distributed's). A dead or stuck rank makes the others fail after it.
   */
  timeoutMs?: number;
  /** Override the launcher's RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT. */
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** The environment to read (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface ProcessGroupInfo {
  backend: Backend;
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  /** Whose variables placed this process; 'options' when the call gave rank and worldSize. */
  launcher: Launcher | 'options';
}

/** torch.distributed's default timeout. */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

const OP = 'initProcessGroup';
let current: ProcessGroupInfo | null = null;
let creating = false;

function checkRange(value: unknown, name: string, min: number, max: number): number {
  const n = checkInteger(value, name, OP);
  if (n < min || n > max) throw invalidArgument(name, `an integer in [${min}, ${max}]`, value, OP);
  return n;
}

function checkBackend(value: unknown): Backend {
  const compiled = c10d.backends();
  if (value !== 'gloo' && value !== 'nccl') throw invalidArgument('backend', "'gloo' or 'nccl'", value, OP);
  if (!compiled.includes(value)) {
    const why =
      value === 'nccl' ? 'NCCL needs a build against a CUDA libtorch with nccl.h' : 'install libgloo-dev and rebuild';
    throw new Error(
      `${OP}: this build of vlalign has no ${value} backend (it has: ${compiled.join(', ') || 'none'}); ${why}`,
    );
  }
  return value;
}

/** The address Gloo binds: loopback for a loopback master (a single-machine job), else the hostname's. */
function glooHostnameFor(masterAddr: string): string {
  if (masterAddr === 'localhost') return '127.0.0.1';
  return /^127\.\d+\.\d+\.\d+$/.test(masterAddr) || masterAddr === '::1' ? masterAddr : '';
}

/** Options first, then the launcher's environment; every missing piece named. */
function resolve(options: InitProcessGroupOptions): { info: ProcessGroupInfo; config: NativeGroupConfig } {
  if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options, OP);
  const env = options.env ?? process.env;
  const launched = readLaunchEnv(env);
  const pick = <T>(option: T | undefined, fromEnv: T | undefined, name: string): T => {
    if (option !== undefined) return option;
    if (fromEnv !== undefined) return fromEnv;
    throw new Error(
      `${OP}: no ${name} given: run under torchrun, \`vlalign launch\` or srun (they set RANK, WORLD_SIZE, ` +
        'MASTER_ADDR, MASTER_PORT / SLURM_PROCID, SLURM_NTASKS), or pass { rank, worldSize, masterAddr, masterPort }',
    );
  };
  const worldSize = checkRange(pick(options.worldSize, launched?.worldSize, 'worldSize'), 'worldSize', 1, 1 << 24);
  const rank = checkRange(pick(options.rank, launched?.rank, 'rank'), 'rank', 0, worldSize - 1);
  const masterAddr = pick<unknown>(options.masterAddr, launched?.masterAddr, 'masterAddr');
  if (typeof masterAddr !== 'string' || masterAddr === '')
    throw invalidArgument('masterAddr', 'a host name or address', masterAddr, OP);
  const masterPort = checkRange(pick(options.masterPort, launched?.masterPort, 'masterPort'), 'masterPort', 1, 65535);
  const timeoutMs = checkRange(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 1, 2 ** 31 - 1);
  const backend = checkBackend(options.backend ?? 'gloo');
  const fromOptions = options.rank !== undefined || launched === null;
  const info: ProcessGroupInfo = {
    backend,
    rank,
    worldSize,
    localRank: fromOptions ? rank : (launched?.localRank ?? rank),
    localWorldSize: fromOptions ? worldSize : (launched?.localWorldSize ?? worldSize),
    masterAddr,
    masterPort,
    timeoutMs,
    launcher: fromOptions ? 'options' : (launched?.launcher ?? 'options'),
  };
  const agentStore = launched?.agentStore === true;
  const config: NativeGroupConfig = {
    backend,
    rank,
    worldSize,
    masterAddr,
    masterPort,
    timeoutMs,
    hostStore: rank === 0 && !agentStore,
    storePrefix: agentStore ? `/worker/attempt_${launched?.restartCount ?? 0}` : '',
    glooInterfaces: (env.GLOO_SOCKET_IFNAME ?? '').split(',').filter(Boolean),
    glooHostname: glooHostnameFor(masterAddr),
  };
  return { info, config };
}

/**
 * Joins this process to the job's process group (torch.distributed.init_process_group): rank 0
 * serves a TCPStore at MASTER_ADDR:MASTER_PORT (torchrun's agent serves it under its static
 * rendezvous), every rank meets there, then the backend connects them. Resolves once all
 * `worldSize` ranks have joined; rejects after `timeoutMs` if they do not.
 */
export async function initProcessGroup(options: InitProcessGroupOptions = {}): Promise<ProcessGroupInfo> {
  if (current !== null || creating) {
    throw new Error(
      `${OP}: this process already has a process group${creating ? ' being created' : ''}; call destroyProcessGroup() first`,
    );
  }
  const { info, config } = resolve(options);
  creating = true;
  try {
    await c10d.init(config);
  } finally {
    creating = false;
  }
  current = info;
  return { ...info };
}

/** Leaves the group. Collectives still in flight settle (or time out) on their own. */
export function destroyProcessGroup(): void {
  c10d.destroy();
  current = null;
}

export const isInitialized = (): boolean => current !== null;

/** The group, or an error naming the call that needed it. */
export function requireGroup(op: string): ProcessGroupInfo {
  if (current === null) throw new Error(`${op}: no process group; call initProcessGroup() first`);
  return current;
}

export const getRank = (): number => requireGroup('getRank').rank;
export const getWorldSize = (): number => requireGroup('getWorldSize').worldSize;
export const getLocalRank = (): number => requireGroup('getLocalRank').localRank;
export const getLocalWorldSize = (): number => requireGroup('getLocalWorldSize').localWorldSize;
export const getBackend = (): Backend => requireGroup('getBackend').backend;
/** A copy of the group's settings. */
export const getProcessGroup = (): ProcessGroupInfo => ({ ...requireGroup('getProcessGroup') });
