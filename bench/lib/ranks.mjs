// Runs one distributed job for a benchmark: worldSize processes on loopback, each with the
// variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), started together; every rank prints one JSON line last on stdout.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

/** A port nothing listens on right now (the OS's pick); a fresh one per job avoids TIME_WAIT. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function startRank(command, args, env) {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

function lastJsonLine(run, what) {
  const lines = run.stdout.trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]);
  } catch {
    throw new Error(`${what} printed no JSON line:\n${run.stdout}\n${run.stderr}`);
  }
}

/**
 * Starts `command args` as ranks 0..worldSize-1 and resolves to each rank's last JSON line, in rank
 * order. A rank that fails (or a job past timeoutMs) kills the others and rejects with the first
 * failure's stderr.
 */
export async function runRanks(command, args, worldSize, { env = {}, timeoutMs = 20 * 60 * 1000 } = {}) {
  const port = await freePort();
  const ranks = Array.from({ length: worldSize }, (_, rank) =>
    startRank(command, args, {
      ...process.env,
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: String(worldSize),
      LOCAL_WORLD_SIZE: String(worldSize),
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      ...env,
    }),
  );
  const killAll = () => {
    for (const { child } of ranks) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const limit = setTimeout(killAll, timeoutMs);
  try {
    // The first rank to fail ends the job at once, so its peers do not wait out the timeout.
    const runs = await Promise.all(
      ranks.map(async ({ done }, rank) => {
        const run = await done;
        if (run.code !== 0) {
          killAll();
          const what = `rank ${rank}/${worldSize} of ${command} ${args.join(' ')}`;
          throw new Error(`${what} exited with ${run.code ?? run.signal}:\n${run.stderr.slice(-4000)}`);
        }
        return run;
      }),
    );
    return runs.map((run, rank) => lastJsonLine(run, `rank ${rank}/${worldSize} of ${command}`));
  } finally {
    clearTimeout(limit);
    killAll();
  }
}

/** Bytes this process has written through write-like system calls, sockets included (Linux). */
export function writtenBytes() {
  const m = /^wchar:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/io', 'utf8'));
  if (m === null) throw new Error('/proc/self/io has no wchar line');
  return Number(m[1]);
}
