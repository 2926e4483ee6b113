// Jobs placed by the environment alone: torchrun's variables set by hand (what `torchrun --no-python
// ... vlalign train` gives a worker), and Python's own torchrun (Debian's python3-torch), whose
// static rendezvous has its agent serve the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PYTHON } from '../peers/python.js';
import { freePort, resultOf, RUN_TS, runJob, start, WORKER } from './ranks.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-torchrun-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('the torchrun environment', () => {
  it('places each worker: rank, world size, local rank, master, with no launcher of ours', async () => {
    const runs = await runJob(2, 'launched', {
      env: { GROUP_RANK: '0', ROLE_RANK: '0', TORCHELASTIC_RESTART_COUNT: '0', TORCHELASTIC_USE_AGENT_STORE: 'False' },
    });
    runs.forEach((run, rank) => {
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      const { result } = resultOf(run);
      expect(result.sum).toBe(3);
      expect(result.group).toMatchObject({ rank, worldSize: 2, localRank: rank, launcher: 'torchrun' });
    });
  }, 120_000);

  it("runs under Python's torchrun --no_python, joining the store its agent serves", async () => {
    const dir = path.join(root, 'python');
    fs.mkdirSync(dir);
    const port = String(await freePort());
    const torchrun = start(
      PYTHON,
      [
        '-m',
        'torch.distributed.run',
        '--nproc_per_node',
        '2',
        '--master_port',
        port,
        // torch 1.13's Std.from_str finds no flag for '0' (the default) under Python 3.11's IntFlag
        // iteration; '1' (stdout to a log file, also teed) is read correctly.
        '--redirects',
        '1',
        '--tee',
        '1',
        '--no_python',
        process.execPath,
        RUN_TS,
        WORKER,
      ],
      { ...process.env, VLALIGN_TEST_SCENARIO: 'launched', VLALIGN_TEST_OUT: dir, OMP_NUM_THREADS: '1' },
    );
    const run = await torchrun.done;
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    for (const rank of [0, 1]) {
      const { result } = JSON.parse(fs.readFileSync(path.join(dir, `rank-${rank}.json`), 'utf8'));
      expect(result.sum).toBe(3);
      expect(result.group).toMatchObject({ rank, worldSize: 2, masterPort: Number(port) });
      expect(result.env.TORCHELASTIC_USE_AGENT_STORE).toBe('True');
    }
  }, 180_000);
});
