// ZeRO sharding (lib/distributed/zero.ts) on 2 and 3 Gloo processes. Stages 1, 2 and 3 train a
// two-unit MLP (one frozen vector) for 3 steps of 2 micro-batches with global-norm clipping, and
// must equal one process on the union of the ranks' batches (float64, 1e-10); each rank computes
// that reference itself (fixtures/zero_worker.ts). Per-rank bytes, measured through torch.memory(),
// must be what the shard sizes (ceil(n / N) per flat buffer, computed here) predict: 1/N of the
// gradients and optimizer state from stage 2, 1/N of everything at rest in stage 3.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { zeroUnitModules, zeroUnits } from '../../lib/distributed/zero.js';
import { readZeroIndex, ZERO_INDEX, zeroShardFile } from '../../lib/distributed/zero_checkpoint.js';
import { Linear, Module, ModuleList } from '../../lib/nn/index.js';
import { loadSafetensors } from '../../lib/torch/safetensors.js';
import { type ProcessRun, runJob } from './ranks.js';

const ZERO_WORKER = path.join(import.meta.dirname, 'fixtures/zero_worker.ts');

function runZeroJob(worldSize: number, env: Record<string, string> = {}): Promise<ProcessRun[]> {
  return runJob(worldSize, 'zero', { worker: ZERO_WORKER, env, limitMs: 150_000 });
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
// W2 [48, 48], b2 [48], W3 [48, 1], b3 [1]. Matrices and vectors are different optimizer groups
// (weight decay on / off), so each unit has one flat buffer per group: these element counts.
const BUFFERS = [6 * 48, 48, 48 * 48 + 48, 48 + 1];
const FROZEN = 48;

describe.each([2, 3])('ZeRO on %i Gloo processes', (worldSize) => {
  it('stages 1, 2 and 3 equal one process on the union; per-rank bytes are the shards', async () => {
    const runs = await runZeroJob(worldSize);
    const results = runs.map(resultOf);
    const shard = (n: number) => Math.ceil(n / worldSize);
    const trainable = BUFFERS.reduce((n, b) => n + b, 0);
    const trainableShard = BUFFERS.reduce((n, b) => n + shard(b), 0);
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
      // Bytes sent: (N-1) shards per buffer and collective. Stage 3 gathers every buffer (the frozen
      // one too) before each of the 6 micro-steps; stages 1 and 2 all-gather once per step; the
      // worker reduce-scatters after every micro-step in all stages.
      const sent = (elements: number) => f64 * (worldSize - 1) * elements;
      const clips = (3 * 2 * (worldSize - 1) * 8) / worldSize;
      expect(s3.traffic).toEqual({
        allGather: 6 * sent(trainableShard + shard(FROZEN)),
        reduceScatter: 6 * sent(trainableShard),
        allReduce: clips,
      });
      expect(s2.traffic).toEqual({
        allGather: 3 * sent(trainableShard),
        reduceScatter: 6 * sent(trainableShard),
        allReduce: clips,
      });
      expect(s1.traffic).toEqual({
        allGather: 3 * sent(trainableShard),
        reduceScatter: 6 * sent(trainableShard),
        allReduce: clips,
      });
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

// Save on one world size, resume on another: the continuation must equal one process that ran every
// step (each step's global batch being the rows of the ranks that ran it).
describe.each([
  { stage: 3, optimizer: 'sgd', saveOn: 2, resumeOn: 3, resumeStage: 3, tolerance: 1e-10 },
  { stage: 2, optimizer: 'adamw', saveOn: 3, resumeOn: 2, resumeStage: 1, tolerance: 1e-5 },
])('ZeRO sharded checkpoint: stage $stage on $saveOn ranks, resumed as stage $resumeStage on $resumeOn', (c) => {
  it('each rank writes its shard, rank 0 the index last; the resumed run continues the single process', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-zero-'));
    try {
      const saved = [c.saveOn, c.saveOn];
      const hf = path.join(dir, 'hf');
      const first = await runZeroJob(c.saveOn, {
        VLALIGN_ZERO_PLAN: JSON.stringify({
          stage: c.stage,
          optimizer: c.optimizer,
          worlds: saved,
          save: dir,
          consolidated: hf,
        }),
      });
      first.map(resultOf).forEach((r, rank) => expectClose(r.actual, r.expected, c.tolerance, `saving rank ${rank}`));
      const files = fs.readdirSync(dir).sort();
      expect(files).toEqual(
        ['hf', ZERO_INDEX, ...Array.from({ length: c.saveOn }, (_, r) => zeroShardFile(r, c.saveOn))].sort(),
      );
      // The consolidated save: one file per unit from rank 0, the others write nothing; stage 3's
      // parameters are released again after each unit.
      const saving = first.map(resultOf);
      expect(saving[0].consolidated.files).toEqual([
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
      ]);
      expect(saving[1].consolidated.files).toEqual([]);
      if (c.stage === 3) expect(saving[0].consolidated.numelAfter).toEqual([0, 0, 0, 0, 0, 0, 0]);
      const weights = await loadSafetensors(hf);
      try {
        expect(Object.keys(weights).sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
        saving[0].actual.forEach((values: number[], k: number) =>
          expect([weights[`p${k}`]!.toArray()].flat(Infinity as 1)).toEqual(values),
        );
      } finally {
        for (const t of Object.values(weights)) t.dispose();
      }
      const index = readZeroIndex(dir);
      expect(index.worldSize).toBe(c.saveOn);
      // Unit 0's two groups, then unit 1's (its frozen vector first, a buffer of its own in stage 3).
      expect(index.buckets.map((b) => b.total)).toEqual(
        c.stage === 3 ? [BUFFERS[0], BUFFERS[1], FROZEN, BUFFERS[2], BUFFERS[3]] : BUFFERS,
      );
      if (c.optimizer === 'adamw') expect(index.buckets[0]!.numbers).toEqual({ step: 2 });
      const worlds = [...saved, c.resumeOn];
      const resumed = await runZeroJob(c.resumeOn, {
        VLALIGN_ZERO_PLAN: JSON.stringify({
          stage: c.resumeStage,
          optimizer: c.optimizer,
          worlds,
          from: saved.length,
          load: dir,
        }),
      });
      const results = resumed.map(resultOf);
      results.forEach((r, rank) => expectClose(r.actual, r.expected, c.tolerance, `resumed rank ${rank}`));
      // The resumed run moved the parameters on from the saved ones.
      expect(results[0].actual).not.toEqual(resultOf(first[0]).actual);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

// Stage 3 gathering each block inside its forward (hookForward, synchronous collectives): a net of
// 4 blocks (units 0-3) and a root unit (4), trained with and without gradient checkpointing.
describe.each([2, 3])('ZeRO-3 per block on %i Gloo processes', (worldSize) => {
  it('equals one process (1e-10); with checkpointing at most one block is held at a time', async () => {
    const runs = await runZeroJob(worldSize, { VLALIGN_ZERO_PER_UNIT: '1' });
    const results = runs.map(resultOf);
    const ROOT = 4;
    results.forEach((r, rank) => {
      for (const mode of ['plain', 'checkpointed'] as const) {
        expectClose(r[mode].actual, r[mode].expected, 1e-10, `rank ${rank} ${mode}`);
      }
      const { plain, checkpointed } = r;
      // Without checkpointing autograd keeps every block's parameters for backward: all are held
      // when the forward ends, and block k's forward runs with blocks 0..k (and the root) gathered.
      plain.afterForward.forEach((held: number[]) => expect(held).toEqual([0, 1, 2, 3, ROOT]));
      expect(plain.heldSamples.slice(0, 4)).toEqual([
        [0, ROOT],
        [0, 1, ROOT],
        [0, 1, 2, ROOT],
        [0, 1, 2, 3, ROOT],
      ]);
      // With checkpointing each block is gathered for its forward and freed after it, and gathered
      // again for its recompute in backward, after the block above was reduce-scattered and freed.
      checkpointed.afterForward.forEach((held: number[]) => expect(held).toEqual([ROOT]));
      const blocksHeld = checkpointed.heldSamples.map((held: number[]) => held.filter((u) => u !== ROOT).length);
      expect(new Set(blocksHeld)).toEqual(new Set([1])); // its own block only
      expect(checkpointed.heldSamples.length).toBe(3 * 2 * 4 * 2); // steps x micro x blocks x (forward + recompute)
      // Traffic: the checkpointed run gathers each block twice per micro-step (ZeRO-3's 3Ψ(N-1)/N).
      const shard = (n: number) => Math.ceil(n / worldSize);
      const sent = (units: number[]) => 8 * (worldSize - 1) * units.reduce((n, u) => n + shard(plain.unitSizes[u]), 0);
      const blocks = [0, 1, 2, 3];
      expect(plain.traffic.allGather).toBe(6 * sent([...blocks, ROOT]));
      expect(checkpointed.traffic.allGather).toBe(6 * (2 * sent(blocks) + sent([ROOT])));
      expect(checkpointed.traffic.reduceScatter).toBe(6 * sent([...blocks, ROOT]));
    });
  }, 180_000);
});

describe('readZeroIndex', () => {
  it('refuses a directory whose save never wrote the index (a rank died mid-save)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-zero-'));
    try {
      fs.writeFileSync(path.join(dir, zeroShardFile(0, 2)), '');
      expect(() => readZeroIndex(dir)).toThrow(`${ZERO_INDEX} is missing: the save did not finish`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
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
    expect(zeroUnitModules(model)).toEqual([model.blocks.items[0], model.blocks.items[1]]);
  });
});
