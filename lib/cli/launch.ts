// `vlalign launch`: torchrun's job without Python. Starts --nproc-per-node workers on this node with
// the environment torchrun gives its workers (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT, GROUP_RANK, ...), so initProcessGroup() in each finds its place. Like
// torchrun's static rendezvous, nodes do not talk to each other here: every node runs the same
// command with its own --node-rank, and rank 0's process serves the TCPStore.
//
// The first worker that fails (non-zero exit, signal, or failure to start) takes the group down: its
// rank and reason are printed once, the others get SIGTERM (SIGKILL after the grace period), and the
// launcher exits with that worker's code. SIGINT / SIGTERM / SIGHUP sent to the launcher are
// forwarded to every worker (a second one kills them at once).
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** Run the command as an executable and its arguments (torchrun's --no-python), not as a vlalign subcommand. */
  exec: boolean;
  /** Between SIGTERM and SIGKILL when the group is taken down. */
  graceMs: number;
}

export const LAUNCH_DEFAULTS = {
  nnodes: 1,
  nodeRank: 0,
  masterAddr: '127.0.0.1',
  masterPort: 29500,
  exec: false,
  graceMs: 10_000,
} as const;

// lib/cli/launch.ts and dist/cli/launch.js both sit two levels below the package root.
const VLALIGN_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/vlalign.mjs');

function integerOption(value: unknown, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw new RangeError(`Expected ${range} for ${flag} but received ${JSON.stringify(value)}`);
  }
  return n;
}

/** Checks the command line's values; every problem names its flag. */
export function launchOptions(raw: Record<string, unknown>): LaunchOptions {
  const nnodes = integerOption(raw.nnodes ?? LAUNCH_DEFAULTS.nnodes, '--nnodes', 1);
  if (nnodes > 1 && raw.masterAddr === undefined) {
    throw new RangeError(
      '--master-addr is required with --nnodes > 1: the address of node 0, reachable from every node',
    );
  }
  const masterAddr = raw.masterAddr ?? LAUNCH_DEFAULTS.masterAddr;
  if (typeof masterAddr !== 'string' || masterAddr === '')
    throw new RangeError('--master-addr must be a host name or address');
  if (raw.nprocPerNode === undefined) throw new RangeError('--nproc-per-node is required (workers on this node)');
  return {
    nprocPerNode: integerOption(raw.nprocPerNode, '--nproc-per-node', 1),
    nnodes,
    nodeRank: integerOption(raw.nodeRank ?? LAUNCH_DEFAULTS.nodeRank, '--node-rank', 0, nnodes - 1),
    masterAddr,
    masterPort: integerOption(raw.masterPort ?? LAUNCH_DEFAULTS.masterPort, '--master-port', 1, 65535),
    exec: raw.exec === true,
    graceMs: integerOption(raw.graceMs ?? LAUNCH_DEFAULTS.graceMs, '--grace-ms', 0),
  };
}

/** The environment torchrun gives worker `localRank` of this node (its static rendezvous, attempt 0). */
export function workerEnv(
  options: LaunchOptions,
  localRank: number,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const worldSize = options.nnodes * options.nprocPerNode;
  const rank = options.nodeRank * options.nprocPerNode + localRank;
  const env: NodeJS.ProcessEnv = {
    ...base,
    RANK: String(rank),
    LOCAL_RANK: String(localRank),
    WORLD_SIZE: String(worldSize),
    LOCAL_WORLD_SIZE: String(options.nprocPerNode),
    GROUP_RANK: String(options.nodeRank),
    GROUP_WORLD_SIZE: String(options.nnodes),
    ROLE_NAME: 'default',
    ROLE_RANK: String(rank),
    ROLE_WORLD_SIZE: String(worldSize),
    MASTER_ADDR: options.masterAddr,
    MASTER_PORT: String(options.masterPort),
    TORCHELASTIC_RESTART_COUNT: '0',
    TORCHELASTIC_MAX_RESTARTS: '0',
    TORCHELASTIC_RUN_ID: 'none',
    // No agent store: rank 0's process serves the TCPStore, as under torchrun's c10d rendezvous.
    TORCHELASTIC_USE_AGENT_STORE: 'False',
  };
  // torchrun sets 1; we split the cores instead, so N workers do not each start one thread per core.
  if (base.OMP_NUM_THREADS === undefined) {
    env.OMP_NUM_THREADS = String(Math.max(1, Math.floor(os.availableParallelism() / options.nprocPerNode)));
  }
  return env;
}

export interface LaunchResult {
  exitCode: number;
  /** The worker that took the group down, if one did. */
  failed?: { rank: number; localRank: number; reason: string };
}

const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const signalExitCode = (signal: NodeJS.Signals): number => 128 + (os.constants.signals[signal] ?? 0);

function exitReason(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
}

/**
 * Runs the workers until all have exited; resolves to the launcher's exit code and the failed worker.
 * `command` is a vlalign subcommand with its arguments (`train recipe.yaml`), or with `exec` an
 * executable and its arguments. Workers inherit `io.env` (default process.env) plus torchrun's variables.
 */
export function launchWorkers(
  options: LaunchOptions,
  command: readonly string[],
  io: { log?: (line: string) => void; env?: NodeJS.ProcessEnv } = {},
): Promise<LaunchResult> {
  const log = io.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (command.length === 0) throw new RangeError('launch: no command after -- (e.g. `-- train recipe.yaml`)');
  const [file, args] = options.exec ? [command[0], command.slice(1)] : [process.execPath, [VLALIGN_BIN, ...command]];
  return new Promise((resolve) => {
    const running = new Set<ChildProcess>();
    let result: LaunchResult | null = null;
    let killTimer: NodeJS.Timeout | undefined;

    const stopAll = (signal: NodeJS.Signals) => {
      for (const child of running) child.kill(signal);
      killTimer ??= setTimeout(() => {
        for (const child of running) child.kill('SIGKILL');
      }, options.graceMs);
    };
    const onSignal = (signal: NodeJS.Signals) => {
      if (result !== null) {
        for (const child of running) child.kill('SIGKILL'); // a second signal: no more waiting
        return;
      }
      result = { exitCode: signalExitCode(signal) };
      log(`vlalign launch: ${signal} received; stopping ${running.size} workers`);
      stopAll(signal);
    };
    const fail = (localRank: number, reason: string, exitCode: number) => {
      if (result !== null) return;
      const rank = options.nodeRank * options.nprocPerNode + localRank;
      result = { exitCode, failed: { rank, localRank, reason } };
      const others = running.size;
      log(`vlalign launch: rank ${rank} (local rank ${localRank}) ${reason}; stopping the other ${others} workers`);
      stopAll('SIGTERM');
    };
    const finish = () => {
      clearTimeout(killTimer);
      for (const signal of FORWARDED_SIGNALS) process.off(signal, onSignal);
      resolve(result ?? { exitCode: 0 });
    };

    for (const signal of FORWARDED_SIGNALS) process.on(signal, onSignal);
    for (let localRank = 0; localRank < options.nprocPerNode; localRank++) {
      const child = spawn(file, args, { env: workerEnv(options, localRank, io.env), stdio: 'inherit' });
      running.add(child);
      child.on('error', (error) => {
        // Failed to start (no such executable): 'exit' may not follow.
        running.delete(child);
        fail(localRank, `could not start: ${error.message}`, 127);
        if (running.size === 0) finish();
      });
      child.on('exit', (code, signal) => {
        if (!running.delete(child)) return;
        if (code !== 0)
          fail(localRank, exitReason(code, signal), signal !== null ? signalExitCode(signal) : (code ?? 1));
        if (running.size === 0) finish();
      });
    }
  });
}

/** Registers `vlalign launch` on the program. */
export function registerLaunchCommand(cli: Command): void {
  cli
    .command('launch')
    .description(
      "Start --nproc-per-node workers on this node with torchrun's environment: `vlalign launch --nproc-per-node 2 -- train recipe.yaml`",
    )
    .argument('<command...>', 'after --: a vlalign subcommand and its arguments (with --exec: any executable)')
    .option('--nproc-per-node <n>', 'workers on this node')
    .option('--nnodes <n>', 'nodes in the job', String(LAUNCH_DEFAULTS.nnodes))
    .option('--node-rank <n>', "this node's rank (0 serves the rendezvous)", String(LAUNCH_DEFAULTS.nodeRank))
    .option('--master-addr <host>', "node 0's address (required with --nnodes > 1)")
    .option('--master-port <port>', 'the rendezvous port on node 0', String(LAUNCH_DEFAULTS.masterPort))
    .option('--exec', "run the command as an executable (torchrun's --no-python), not a vlalign subcommand")
    .option(
      '--grace-ms <ms>',
      'after a failure or a signal, wait this long before SIGKILL',
      String(LAUNCH_DEFAULTS.graceMs),
    )
    .action(async (command: string[], raw: Record<string, unknown>) => {
      const result = await launchWorkers(launchOptions(raw), command);
      process.exitCode = result.exitCode;
    });
}
