// ZeRO sharding (lib/distributed/zero.ts) on 2 and 3 Gloo processes. Stages 1, 2 and 3 train a
// two-unit MLP (one frozen vector) for 3 steps of 2 micro-batches with global-norm clipping, and
// must equal one process on the union of the ranks' batches (float64, 1e-10); each rank computes
// that reference itself (fixtures/zero_worker.ts). Per-rank bytes, measured through torch.memory(),
// must be what the shard sizes (ceil(n / N) per flat buffer, computed here) predict: 1/N of the
// gradients and optimizer state from stage 2, 1/N of everything at rest in stage 3.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { zeroUnits } from '../../lib/distributed/zero.js';
import { Linear, Module, ModuleList } from '../../lib/nn/index.js';
import { freePort, type ProcessRun, RUN_TS, start } from './ranks.js';

const ZERO_WORKER = path.join(import.meta.dirname, 'fixtures/zero_worker.ts');

async function runZeroJob(worldSize: number): Promise<ProcessRun[]> {
  const port = await freePort();
  const ranks = Array.from({ length: worldSize }, (_, rank) =>
    start(process.execPath, [RUN_TS, ZERO_WORKER], {
      ...process.env,
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: String(worldSize),
      LOCAL_WORLD_SIZE: String(worldSize),
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      OMP_NUM_THREADS: '1',
    }),
  );
  const killAll = () => {
    for (const { child } of ranks) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const limit = setTimeout(killAll, 150_000);
  try {
    return await Promise.all(ranks.map((r) => r.done));
  } finally {
    clearTimeout(limit);
  }
}

function resultOf(run: ProcessRun): any {
  const line = run.stdout.split('\n').findLast((l) => l.startsWith('RESULT '));
  if (line === undefined)
    throw new Error(`no RESULT line (exit ${run.code ?? run.signal}):\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(line.slice('RESULT '.length)).result;
}

function expectClose(actual: number[][], expected: number[][], tolerance: number, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  expected.forEach((e, k) => {
    expect(actual[k]!.length, `${what} param ${k}`).toBe(e.length);
    const bad = e.findIndex((v, i) => !(Math.abs(actual[k]![i]! - v) <= tolerance));
    expect(bad, `${what} param ${k}: element ${bad} is ${actual[k]![bad]}, expected ${e[bad]}`).toBe(-1);
  });
}

// The worker's model (D = 6, H = 48): unit 0 = W1 [6, 48], b1 [48]; unit 1 = frozen scale [48],
// W2 [48, 48], b2 [48], W3 [48, 1], b3 [1].
const UNIT0 = 6 * 48 + 48;
const UNIT1 = 48 * 48 + 48 + 48 + 1;
const FROZEN = 48;

describe.each([2, 3])('ZeRO on %i Gloo processes', (worldSize) => {
  it('stages 1, 2 and 3 equal one process on the union; per-rank bytes are the shards', async () => {
    const runs = await runZeroJob(worldSize);
    const results = runs.map(resultOf);
    const shard = (n: number) => Math.ceil(n / worldSize);
    const trainable = UNIT0 + UNIT1;
    const trainableShard = shard(UNIT0) + shard(UNIT1);
    const f64 = 8;
    // One process holds parameters, gradients and SGD's momentum, all float64.
    const single = f64 * (trainable + FROZEN + trainable + trainable);
    results.forEach((r, rank) => {
      expect(r.elements).toEqual({ trainable, frozen: FROZEN });
      for (const stage of [1, 2, 3]) {
        const s = r.stages[stage];
        const what = `rank ${rank} stage ${stage}`;
        expectClose(s.actual, s.expected, 1e-10, what);
        // Clipping was active (norms above 0.05) and the norm is the global one.
        expect(Math.min(...s.norms), what).toBeGreaterThan(0.05);
        expect(s.norms, what).toEqual(results[0].stages[stage].norms);
        // bytes() reports what torch.memory() sees (stages 1 and 2 keep the frozen vector outside ZeRO).
        const reported = s.afterReduce.bytes;
        const frozenOutside = stage < 3 ? f64 * FROZEN : 0;
        expect(reported.parameters + reported.gradients + reported.optimizer + frozenOutside, what).toBe(
          s.afterReduce.native,
        );
      }
      const [s1, s2, s3] = [r.stages[1], r.stages[2], r.stages[3]];
      // Stage 1: full parameters and gradients, plus the shards of parameters, gradients and momentum.
      expect(s1.afterReduce.native).toBe(f64 * (trainable + FROZEN + trainableShard + trainable + 2 * trainableShard));
      expect(s1.afterReduce.bytes.optimizer).toBe(f64 * trainableShard);
      // Stage 2: the full gradients are gone once reduce-scattered.
      expect(s2.afterReduce.native).toBe(f64 * (trainable + FROZEN + 3 * trainableShard));
      expect(s2.afterReduce.bytes.gradients + s2.afterReduce.bytes.optimizer).toBe(f64 * 2 * trainableShard);
      // Stage 3: only shards (the frozen vector's too); the parameters are empty between steps.
      const stage3 = f64 * (trainableShard + shard(FROZEN) + 2 * trainableShard);
      expect(s3.afterReduce.native).toBe(stage3);
      expect(s3.afterReduce.native / single).toBeLessThan(1 / worldSize + 0.01);
      expect(s3.atRest.native).toBe(f64 * (trainableShard + shard(FROZEN) + trainableShard));
      expect(s3.shapesAtRest).toEqual([0, 0, 0, 0, 0, 0, 0]);
      // AdamW (float32 parameters, two float32 moments) on stage 3: the same update up to float32
      // rounding of the gradients' different summation order.
      expectClose(r.adamw.actual, r.adamw.expected, 1e-5, `rank ${rank} AdamW`);
      expect(r.adamw.afterReduce.native).toBe(
        4 * (trainableShard + shard(FROZEN) + trainableShard + 2 * trainableShard),
      );
    });
    // The ranks trained on different rows: had nothing been reduced, they could not all match.
    expect(
      results.every((r) => JSON.stringify(r.stages[3].actual) === JSON.stringify(results[0].stages[3].actual)),
    ).toBe(true);
  }, 180_000);
});

class Tower extends Module {
  readonly embed = this.registerModule('embed', new Linear(2, 3));
  readonly blocks = this.registerModule(
    'blocks',
    new ModuleList([new Linear(3, 3), new Linear(3, 3, { bias: false })]),
  );
  readonly head = this.registerModule('head', new Linear(3, 1));
}

describe('zeroUnits', () => {
  it('makes each ModuleList item a unit and puts the other parameters in a last root unit', () => {
    const model = new Tower();
    const units = zeroUnits(model);
    expect(units.length).toBe(3);
    expect(units[0]).toEqual([model.blocks.items[0]!.weight, model.blocks.items[0]!.bias]);
    expect(units[1]).toEqual([model.blocks.items[1]!.weight]);
    expect(units[2]).toEqual([model.embed.weight, model.embed.bias, model.head.weight, model.head.bias]);
  });
});
