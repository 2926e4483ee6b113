// `vlalign launch`: workers get torchrun's environment and form a group; a failing worker takes the
// group down, is named once, and its exit code becomes the launcher's.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { launchOptions, launchWorkers, workerEnv } from '../../lib/cli/launch.js';
import { main } from '../../lib/cli/main.js';
import { freePort, RUN_TS, WORKER } from './ranks.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-launch-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const WORKER_COMMAND = [process.execPath, RUN_TS, WORKER];

function outDir(name: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  return dir;
}

const readRank = (dir: string, rank: number) =>
  JSON.parse(fs.readFileSync(path.join(dir, `rank-${rank}.json`), 'utf8'));

describe('workerEnv', () => {
  it("gives each worker torchrun's variables for its node and local rank", () => {
    const options = launchOptions({
      nprocPerNode: '4',
      nnodes: '2',
      nodeRank: '1',
      masterAddr: 'node0',
      masterPort: '1234',
    });
    const env = workerEnv(options, 2, { PATH: '/bin', OMP_NUM_THREADS: '3' });
    expect(env).toMatchObject({
      PATH: '/bin',
      RANK: '6',
      LOCAL_RANK: '2',
      WORLD_SIZE: '8',
      LOCAL_WORLD_SIZE: '4',
      GROUP_RANK: '1',
      GROUP_WORLD_SIZE: '2',
      MASTER_ADDR: 'node0',
      MASTER_PORT: '1234',
      TORCHELASTIC_USE_AGENT_STORE: 'False',
      OMP_NUM_THREADS: '3',
    });
    // Unset OMP_NUM_THREADS: the cores are split between the node's workers.
    expect(workerEnv(options, 0, {}).OMP_NUM_THREADS).toBe(
      String(Math.max(1, Math.floor(os.availableParallelism() / 4))),
    );
  });

  it('names the flag that is wrong', () => {
    expect(() => launchOptions({})).toThrow('--nproc-per-node is required');
    expect(() => launchOptions({ nprocPerNode: '0' })).toThrow(
      'Expected an integer >= 1 for --nproc-per-node but received "0"',
    );
    expect(() => launchOptions({ nprocPerNode: '2', nnodes: '2' })).toThrow(
      /--master-addr is required with --nnodes > 1/,
    );
    expect(() => launchOptions({ nprocPerNode: '2', nnodes: '2', nodeRank: '2', masterAddr: 'a' })).toThrow(
      'Expected an integer in [0, 1] for --node-rank but received "2"',
    );
  });
});

describe('launchWorkers', () => {
  it('runs 2 workers that find their ranks in the environment and all-reduce', async () => {
    const dir = outDir('ok');
    const options = launchOptions({ nprocPerNode: '2', masterPort: String(await freePort()), exec: true });
    const env = { ...process.env, VLALIGN_TEST_SCENARIO: 'launched', VLALIGN_TEST_OUT: dir, OMP_NUM_THREADS: '1' };
    const lines: string[] = [];
    const result = await launchWorkers(options, WORKER_COMMAND, { env, log: (l) => lines.push(l) });
    expect(result).toEqual({ exitCode: 0 });
    expect(lines).toEqual([]);
    for (const rank of [0, 1]) {
      const { result: r } = readRank(dir, rank);
      expect(r.sum).toBe(3);
      expect(r.group).toMatchObject({ rank, worldSize: 2, localRank: rank, localWorldSize: 2, launcher: 'torchrun' });
      expect(r.env).toMatchObject({
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: '2',
        MASTER_ADDR: '127.0.0.1',
      });
    }
  }, 120_000);

  it("stops the group when a worker fails, names its rank once, and exits with the worker's code", async () => {
    const dir = outDir('fail');
    const options = launchOptions({
      nprocPerNode: '2',
      masterPort: String(await freePort()),
      exec: true,
      graceMs: '5000',
    });
    const env = {
      ...process.env,
      VLALIGN_TEST_SCENARIO: 'launched',
      VLALIGN_TEST_OUT: dir,
      VLALIGN_TEST_FAIL_RANK: '1',
    };
    const lines: string[] = [];
    const started = performance.now();
    const result = await launchWorkers(options, WORKER_COMMAND, { env, log: (l) => lines.push(l) });
    expect(result).toEqual({ exitCode: 3, failed: { rank: 1, localRank: 1, reason: 'exited with code 3' } });
    expect(lines).toEqual(['vlalign launch: rank 1 (local rank 1) exited with code 3; stopping the other 1 workers']);
    // Rank 0 was waiting for 120 s; SIGTERM ended it well before.
    expect(readRank(dir, 0)).toEqual({ rank: 0, waiting: true });
    expect(performance.now() - started).toBeLessThan(60_000);
  }, 120_000);

  it('names a worker that cannot start', async () => {
    const options = launchOptions({ nprocPerNode: '1', exec: true });
    const lines: string[] = [];
    const result = await launchWorkers(options, ['/nonexistent/worker'], { log: (l) => lines.push(l) });
    expect(result).toMatchObject({ exitCode: 127, failed: { rank: 0 } });
    expect(lines[0]).toMatch(
      /^vlalign launch: rank 0 \(local rank 0\) could not start: spawn \/nonexistent\/worker ENOENT/,
    );
  });
});

describe('vlalign launch (command line)', () => {
  it('parses its flags and the command after --, and sets the exit code', async () => {
    const dir = outDir('cli');
    const saved = { ...process.env };
    Object.assign(process.env, { VLALIGN_TEST_SCENARIO: 'launched', VLALIGN_TEST_OUT: dir, OMP_NUM_THREADS: '1' });
    try {
      const port = String(await freePort());
      await main([
        'node',
        'vlalign',
        'launch',
        '--nproc-per-node',
        '2',
        '--master-port',
        port,
        '--exec',
        '--',
        ...WORKER_COMMAND,
      ]);
      expect(process.exitCode ?? 0).toBe(0);
      expect(readRank(dir, 1).result.sum).toBe(3);
    } finally {
      process.env = saved;
      process.exitCode = 0;
    }
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await main(['node', 'vlalign', 'launch', '--nproc-per-node', 'two', '--', 'train', 'x.yaml']);
      expect(process.exitCode).toBe(1);
      expect(stderr).toHaveBeenCalledWith(
        'vlalign: Expected an integer >= 1 for --nproc-per-node but received "two"\n',
      );
    } finally {
      stderr.mockRestore();
      process.exitCode = 0;
    }
  }, 120_000);
});
