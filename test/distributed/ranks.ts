// Runs test jobs: fixtures/worker.ts as several processes on loopback, each with a launcher's
// environment, through run_ts.mjs (the sources under test, not dist/).
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const RUN_TS = path.join(REPO, 'test/train/fixtures/run_ts.mjs');
export const WORKER = path.join(import.meta.dirname, 'fixtures/worker.ts');

/** A port nothing listens on right now (the OS's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ProcessRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** The last `RESULT <json>` line a worker printed. */
export function resultOf(run: ProcessRun): any {
  const line = run.stdout.split('\n').findLast((l) => l.startsWith('RESULT '));
  if (line === undefined)
    throw new Error(`no RESULT line (exit ${run.code ?? run.signal}):\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(line.slice('RESULT '.length));
}

/** Starts a process and collects its output; `done` resolves at exit. */
export function start(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { child: ChildProcess; done: Promise<ProcessRun> } {
  const began = performance.now();
  const child = spawn(file, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<ProcessRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr, elapsedMs: performance.now() - began }),
    );
  });
  return { child, done };
}

export interface JobOptions {
  /** The script every rank runs (default fixtures/worker.ts). */
  worker?: string;
  /** Extra environment for every rank. */
  env?: Record<string, string>;
  /** Ranks whose exit ends the job; the others are then killed (default: all). */
  waitFor?: number[];
  /** Kill everything after this long (ms). */
  limitMs?: number;
}

/** torchrun's variables for `rank` of a one-node job of `worldSize` on loopback. */
export function torchrunEnv(rank: number, worldSize: number, port: number): Record<string, string> {
  return {
    RANK: String(rank),
    LOCAL_RANK: String(rank),
    WORLD_SIZE: String(worldSize),
    LOCAL_WORLD_SIZE: String(worldSize),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
  };
}

/**
 * worldSize workers with torchrun's variables on loopback, `scenario` in VLALIGN_TEST_SCENARIO;
 * resolves once the awaited ranks exit.
 */
export async function runJob(worldSize: number, scenario: string, options: JobOptions = {}): Promise<ProcessRun[]> {
  const port = await freePort();
  const ranks = Array.from({ length: worldSize }, (_, rank) =>
    start(process.execPath, [RUN_TS, options.worker ?? WORKER], {
      ...process.env,
      ...torchrunEnv(rank, worldSize, port),
      OMP_NUM_THREADS: '1',
      VLALIGN_TEST_SCENARIO: scenario,
      ...options.env,
    }),
  );
  const killAll = () => {
    for (const { child } of ranks) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const limit = setTimeout(killAll, options.limitMs ?? 120_000);
  try {
    const awaited = options.waitFor ?? ranks.map((_, r) => r);
    await Promise.all(awaited.map((r) => ranks[r].done));
    killAll();
    return await Promise.all(ranks.map((r) => r.done));
  } finally {
    clearTimeout(limit);
  }
}
