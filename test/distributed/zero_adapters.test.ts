// ZeRO (lib/distributed/zero.ts) with LoRA / DoRA adapters and 4-bit (QLoRA) bases, on 2 and 3 Gloo
// processes (fixtures/zero_adapter_worker.ts, the net of fixtures/zero_adapter_net.ts: 3 blocks of
// two 64 x 64 projections with LoRA r = 4 on both, a frozen input and output layer).
// - LoRA at stages 1, 2 and 3 (and 3 gathered per block with checkpointing), DoRA at 2 and 3: every
//   tensor after 3 steps of 2 micro-batches equals one process on the union of the batches (float64,
//   1e-10), the frozen base included.
// - Per-rank bytes at rest at stage 3, through torch.memory(): the shard sizes computed here from the
//   architecture (ceil(n / N) per flat buffer), the frozen base's being about 1/N of it.
// - QLoRA / QDoRA and a bfloat16 LoRA at stage 3: the first micro-step's loss and adapter gradients
//   equal one process on the same rows; every frozen tensor gathered back (packed 4-bit bytes and
//   quant state; bfloat16 weights, which Gloo moves as float32) equals the one process's bit for
//   bit; training equals one process (float32 at 1e-5; bfloat16 at 2^-6).
// - saveZeroAdapter: the same bytes as one process's saveAdapter of the same state, and our
//   loadAdapter reads it back.
// - A sharded save of LoRA at stage 3 on N ranks resumed on another world size (and stage).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readZeroIndex, zeroShardFile } from '../../lib/distributed/zero_checkpoint.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';
import { readSafetensorsHeader } from '../../lib/torch/safetensors.js';
import { type ProcessRun, runJob } from './ranks.js';

const WORKER = path.join(import.meta.dirname, 'fixtures/zero_adapter_worker.ts');

function runAdapterJob(worldSize: number, env: Record<string, string>): Promise<ProcessRun[]> {
  return runJob(worldSize, 'zero-adapters', { worker: WORKER, env, limitMs: 280_000 });
}

function resultOf(run: ProcessRun): any {
  const line = run.stdout.split('\n').findLast((l) => l.startsWith('RESULT '));
  if (line === undefined)
    throw new Error(`no RESULT line (exit ${run.code ?? run.signal}):\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(line.slice('RESULT '.length)).result;
}

function expectClose(
  actual: Record<string, number[]>,
  expected: Record<string, number[]>,
  tolerance: number,
  what: string,
): void {
  expect(Object.keys(actual).sort(), what).toEqual(Object.keys(expected).sort());
  for (const [name, e] of Object.entries(expected)) {
    const a = actual[name]!;
    expect(a.length, `${what} ${name}`).toBe(e.length);
    const bad = e.findIndex((v, i) => !(Math.abs(a[i]! - v) <= tolerance));
    expect(bad, `${what} ${name}: element ${bad} is ${a[bad]}, expected ${e[bad]}`).toBe(-1);
  }
}

// The net's element counts per unit (fixtures/zero_adapter_net.ts: D = 8, H = 64, r = 4, 3 blocks).
const [D, H, R, BLOCKS] = [8, 64, 4, 3];
const projection = H * H + H; // weight + bias
const blockFrozen = 2 * projection;
const blockLora = 2 * (R * H + H * R);
const blockDora = blockLora + 2 * H; // + the magnitude vectors
const rootFrozen = D * H + H + H + 1;
// A 4-bit projection (NF4, blocksize 64, double quantisation): packed codes n/2 bytes and absmax
// (uint8, one per 64 elements) in the uint8 buffer; the float32 buffer holds the bias, the 16-entry
// code, the nested absmax (one per 256 blocks), the 256-entry nested code and the offset.
const n = H * H;
const fourBitBytes = n / 2 + n / 64;
const fourBitFloats = H + 16 + Math.ceil(n / 64 / 256) + 256 + 1;

describe.each([2, 3])('ZeRO with adapters on %i Gloo processes', (worldSize) => {
  it('LoRA, DoRA and QLoRA equal one process; the frozen base is sharded; saveZeroAdapter is saveAdapter', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-zero-adapters-'));
    try {
      const runs = await runAdapterJob(worldSize, { VLALIGN_ZERO_ADAPTER_DIR: dir });
      const results = runs.map(resultOf);
      const shard = (count: number) => Math.ceil(count / worldSize);
      const f64 = 8;
      results.forEach((r, rank) => {
        for (const [name, c] of Object.entries({ ...r.lora, dora2: r.dora[2], doraPerBlock: r.dora.perBlock }))
          expectClose((c as any).actual, (c as any).expected, 1e-10, `rank ${rank} ${name}`);
        // Stage 3 at rest: the shards of each block's frozen and trainable buffers and of the root.
        const frozenShards = BLOCKS * shard(blockFrozen) + shard(rootFrozen);
        const frozenFull = BLOCKS * blockFrozen + rootFrozen;
        expect(r.lora[3].atStart.native).toBe(f64 * (frozenShards + BLOCKS * shard(blockLora)));
        expect(r.dora.perBlock.atStart.native).toBe(f64 * (frozenShards + BLOCKS * shard(blockDora)));
        expect(frozenShards / frozenFull).toBeLessThan(1 / worldSize + 0.01);
        // Stages 1 and 2 keep the base whole on every rank and shard the adapter only.
        expect(r.lora[2].atStart.native).toBe(f64 * (frozenFull + BLOCKS * blockLora + BLOCKS * shard(blockLora)));
        // The frozen base is never reduce-scattered: only the adapter's shards are (6 micro-steps).
        expect(r.lora[3].traffic.reduceScatter).toBe(6 * f64 * (worldSize - 1) * BLOCKS * shard(blockLora));
        // saveZeroAdapter at stage 3 all-gathers the adapter's buffers, one unit at a time, not the base.
        expect(r.lora[3].savedGathered).toBe(f64 * (worldSize - 1) * BLOCKS * shard(blockLora));
        expect(r.dora.perBlock.savedGathered).toBe(f64 * (worldSize - 1) * BLOCKS * shard(blockDora));
        // Stage 2 holds the full adapter on every rank: its save gathers nothing.
        expect(r.lora[2].savedGathered).toBe(0);

        for (const name of ['qlora', 'qdora', 'bf16']) {
          const q = r[name];
          const what = `rank ${rank} ${name}`;
          // The same bytes in, the same numbers out: ZeRO's gathered base and one process's.
          expect(q.firstStep.zeroLoss, what).toBe(q.firstStep.singleLoss);
          expect(q.firstStep.zeroGrads, what).toEqual(q.firstStep.singleGrads);
          expect(q.gathered, what).toEqual(q.singleFrozen);
          expect(q.quantized, what).toBe(name === 'bf16' ? 0 : 2 * BLOCKS);
        }
        for (const name of ['qlora', 'qdora']) {
          const q = r[name];
          const what = `rank ${rank} ${name}`;
          expectClose(q.trained.actual, q.trained.expected, 1e-5, what);
          const adapter = name === 'qdora' ? blockDora : blockLora;
          // uint8 codes + absmax and float32 biases + quant state, a shard of each per block.
          const frozenBytes = BLOCKS * (shard(2 * fourBitBytes) + 4 * shard(2 * fourBitFloats));
          expect(q.atStart.native, what).toBe(frozenBytes + 4 * shard(rootFrozen) + 4 * BLOCKS * shard(adapter));
          const wholeBase = BLOCKS * (2 * fourBitBytes + 4 * 2 * fourBitFloats) + 4 * rootFrozen;
          expect((frozenBytes + 4 * shard(rootFrozen)) / wholeBase, what).toBeLessThan(1 / worldSize + 0.01);
        }
        // bfloat16 (Gloo moves it as float32): 2 bytes per element at rest; training follows one
        // process up to bfloat16 rounding (the mean gradient is rounded once, from float32).
        const bf16 = r.bf16;
        expect(bf16.atStart.native).toBe(
          2 * (BLOCKS * shard(blockFrozen) + shard(rootFrozen) + BLOCKS * shard(blockLora)),
        );
        expectClose(bf16.trained.actual, bf16.trained.expected, 2 ** -6, `rank ${rank} bf16`);
        // ... which is meaningful: training moved the adapter by far more than that.
        const moved = Object.keys(bf16.trained.initial)
          .filter((k) => k.includes('lora_'))
          .map((k) =>
            Math.max(
              ...bf16.trained.initial[k].map((v: number, i: number) => Math.abs(v - bf16.trained.expected[k][i])),
            ),
          );
        expect(Math.min(...moved)).toBeGreaterThan(2 ** -3);
        expect(bf16.trained.actual).toEqual(results[0].bf16.trained.actual);
      });
      // The PEFT files from ZeRO are the files one process writes of the same state, byte for byte.
      for (const name of ['lora', 'lora2', 'dora']) {
        for (const file of ['adapter_model.safetensors', 'adapter_config.json']) {
          const zero = fs.readFileSync(path.join(dir, name, 'zero', file));
          const single = fs.readFileSync(path.join(dir, name, 'single', file));
          expect(zero.equals(single), `${name} ${file}`).toBe(true);
        }
        expect(fs.readdirSync(path.join(dir, name, 'zero')).sort()).toEqual([
          'adapter_config.json',
          'adapter_model.safetensors',
        ]);
      }
      const saved = results[0].lora[3];
      expect(saved.files).toEqual(['adapter_model.safetensors', 'adapter_config.json']);
      expect(results[1].lora[3].files).toEqual([]);
      // loadAdapter on a fresh base reads back the trained adapter.
      expect(saved.loaded).toEqual(saved.adapter);
      expect(results[0].dora.perBlock.loaded).toEqual(results[0].dora.perBlock.adapter);
      expect(Object.keys(saved.adapter).length).toBe(2 * 2 * BLOCKS);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

// Stage 3 saved with its frozen buffers and resumed at stage 3; saved without them (excludeFrozen) and
// resumed at stage 2, whose layout has no frozen buffers (the base stays whole there).
describe.each([
  { stage: 3, saveOn: 2, resumeOn: 3, resumeStage: 3, excludeFrozen: false },
  { stage: 3, saveOn: 3, resumeOn: 2, resumeStage: 2, excludeFrozen: true },
])(
  'ZeRO LoRA sharded checkpoint: stage $stage on $saveOn ranks (excludeFrozen $excludeFrozen), resumed as stage $resumeStage on $resumeOn',
  (c) => {
    it('the resumed run continues one process that ran every step (1e-10)', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-zero-lora-'));
      try {
        const saved = [c.saveOn, c.saveOn];
        const first = await runAdapterJob(c.saveOn, {
          VLALIGN_ZERO_ADAPTER_PLAN: JSON.stringify({
            dtype: 'float64',
            stage: c.stage,
            worlds: saved,
            save: dir,
            excludeFrozen: c.excludeFrozen,
          }),
        });
        first.map(resultOf).forEach((r, rank) => expectClose(r.actual, r.expected, 1e-10, `saving rank ${rank}`));
        // Per block a trainable buffer (the factors) and, unless excluded, a frozen one (the projections),
        // then the root's frozen buffer.
        const index = readZeroIndex(dir);
        const buffers = c.excludeFrozen
          ? Array.from({ length: BLOCKS }, () => blockLora)
          : [...Array.from({ length: BLOCKS }, () => [blockFrozen, blockLora]).flat(), rootFrozen];
        expect(index.buckets.map((b) => b.total)).toEqual(buffers);
        expect(index.frozenExcluded ?? false).toBe(c.excludeFrozen);
        const shardFile = path.join(dir, zeroShardFile(0, c.saveOn));
        const paramBytes = 8 * buffers.reduce((n, b) => n + Math.ceil(b / c.saveOn), 0);
        const momentumBytes = 8 * BLOCKS * Math.ceil(blockLora / c.saveOn);
        const header = await readSafetensorsHeader(shardFile);
        expect(fs.statSync(shardFile).size - header.dataStart).toBe(paramBytes + momentumBytes);
        const resumed = await runAdapterJob(c.resumeOn, {
          VLALIGN_ZERO_ADAPTER_PLAN: JSON.stringify({
            dtype: 'float64',
            stage: c.resumeStage,
            worlds: [...saved, c.resumeOn],
            from: saved.length,
            load: dir,
          }),
        });
        const results = resumed.map(resultOf);
        results.forEach((r, rank) => expectClose(r.actual, r.expected, 1e-10, `resumed rank ${rank}`));
        expect(results[0].actual).not.toEqual(resultOf(first[0]).actual);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }, 300_000);
  },
);

// The tiny Qwen2-VL loaded 4-bit with LoRA on q_proj / v_proj, ZeRO stage 3 per block with gradient
// checkpointing (fixtures/zero_qlora_worker.ts), as a trainer would run QLoRA.
describe('ZeRO-3 QLoRA on the tiny Qwen2-VL, 2 Gloo processes', () => {
  it('follows one process, shards the 4-bit base 1/N and saves the adapter as one process does', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-zero-qlora-'));
    try {
      const checkpoint = path.join(dir, 'tiny');
      await writeTinyCheckpoint(checkpoint, 'qwen2_vl');
      const runs = await runJob(2, 'zero-qlora', {
        worker: path.join(import.meta.dirname, 'fixtures/zero_qlora_worker.ts'),
        env: { VLALIGN_ZERO_QLORA_DIR: checkpoint, VLALIGN_ZERO_QLORA_OUT: dir },
        limitMs: 280_000,
      });
      const results = runs.map(resultOf);
      results.forEach((r, rank) => {
        const what = `rank ${rank}`;
        expect(r.quantized, what).toBeGreaterThan(0);
        expect(r.singleGradsNonZero, what).toBe(true);
        expect(r.zeroFirst, what).toBe(r.singleFirst);
        expect(r.actual.length, what).toBe(r.expected.length);
        r.expected.forEach((e: number[], k: number) => {
          const bad = e.findIndex((v, i) => !(Math.abs(r.actual[k][i] - v) <= 1e-5));
          expect(bad, `${what} adapter tensor ${k} element ${bad}`).toBe(-1);
        });
        // The frozen base (4-bit codes, quant state, embeddings, norms, lm_head) at rest: the shards.
        expect(r.frozenAtRest / r.wholeBytes, what).toBeLessThan(0.5 + 0.01);
        // Everything else this rank holds: the rotary tables (float32 inv_freq), which ZeRO leaves whole.
        expect(r.outside.map(([name]: [string]) => name).sort(), what).toEqual(['model.inv_freq', 'visual.inv_freq']);
        const outside = r.outside.reduce((n: number, [, bytes]: [string, number]) => n + bytes, 0);
        expect(r.atRest.native, what).toBe(r.atRest.bytes.parameters + outside);
      });
      expect(results[0].files).toEqual(['adapter_model.safetensors', 'adapter_config.json']);
      for (const file of ['adapter_model.safetensors', 'adapter_config.json'])
        expect(
          fs.readFileSync(path.join(dir, 'zero', file)).equals(fs.readFileSync(path.join(dir, 'single', file))),
        ).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
