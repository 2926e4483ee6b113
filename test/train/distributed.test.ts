// Data-parallel training on 2 Gloo processes (fixtures/distributed_worker.ts) against the same
// training in one process with the same global batch (global_batch_size 4: accumulation 4 alone, 2
// per rank on two ranks). Float64 tiny Qwen2-VL with images, plain SGD (the fused AdamW takes
// float32 only), per-device batch 1 (one GRPO group), so every micro-batch is the same rows in both
// runs and only the order of the gradient sums differs (the ranks' partial sums, then DDP's
// all-reduce): losses and final parameters agree to 1e-10. Checked: SFT (token mean over the
// global window, a short last window), MPO's sigmoid + bco_pair + sft mix with a frozen reference,
// GRPO (each rank samples its prompts' groups; advantages per group; DAPO's global token mean);
// the shards each rank read; rank 1 writes no file; bco_pair's running mean is the same on both
// ranks and counts both ranks' batches; kill -9 of rank 0 after checkpoint-2, then a 2-rank resume,
// continues to the uninterrupted run's exact parameters and log. ZeRO (zero_stage 1 and 2): SFT
// equals one process (unclipped: one process clips with float32 norms), shards beside checkpoint-2,
// kill -9 + 2-rank resume from the shards identical, a ZeRO checkpoint resumed without ZeRO refused.
// ZeRO-3 (zero_stage 3, every block gathered inside its forward): SFT with gradient checkpointing on
// rows of which some are text-only (a micro-step where one rank has images and the other none) and
// DPO with a frozen reference equal one process on the union (1e-10; eval loss and the eval hook's
// greedy generation run on every rank); GRPO on real sampled completions whose lengths differ by
// rank (lockstep decoding) equals the same run at stage 0; parameter bytes per rank between steps
// are half the model's (+ padding); the final save is a plain HF directory that loads to the trained
// parameters; kill -9 + 2-rank resume identical, a 4-rank resume of a 2-rank checkpoint (1e-10).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { loadSafetensors } from '../../lib/torch/safetensors.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';
import { freePort, resultOf, start, torchrunEnv, type ProcessRun } from '../distributed/ranks.js';

const RUN_TS = path.join(import.meta.dirname, 'fixtures/run_ts.mjs');
const WORKER = path.join(import.meta.dirname, 'fixtures/distributed_worker.ts');
const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-distributed-train-'));
const dataDir = path.join(root, '.data');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(() => {
  const script = path.join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', dataDir], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
  // sft/mixed.jsonl: the SFT rows with rows 1 and 4 made text-only (no image, no image part).
  const rows = fs
    .readFileSync(path.join(dataDir, 'sft', 'train.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line, k) => {
      const row = JSON.parse(line) as { messages: Array<{ content: Array<{ type: string }> }>; images?: string[] };
      if (k % 3 !== 1) return row;
      const messages = row.messages.map((m) => ({ ...m, content: m.content.filter((c) => c.type !== 'image') }));
      return { messages };
    });
  fs.writeFileSync(path.join(dataDir, 'sft', 'mixed.jsonl'), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
}, 60_000);

interface Spec {
  out: string;
  scenarios: string[];
  openGroup?: boolean;
  killAfterSave?: number;
  resume?: boolean;
}

/** worldSize workers (torchrun's variables when worldSize > 1, none alone); resolves when all exit. */
async function job(worldSize: number, spec: Spec): Promise<ProcessRun[]> {
  const port = await freePort();
  const env = (rank: number): NodeJS.ProcessEnv => {
    const base = { ...process.env, OMP_NUM_THREADS: '1', DIST_SPEC: JSON.stringify({ dataDir, ...spec }) };
    for (const name of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']) {
      delete base[name];
    }
    if (worldSize === 1) return base;
    return { ...base, ...torchrunEnv(rank, worldSize, port) };
  };
  const ranks = Array.from({ length: worldSize }, (_, r) => start(process.execPath, [RUN_TS, WORKER], env(r)));
  const limit = setTimeout(() => {
    for (const { child } of ranks) if (child.exitCode === null) child.kill('SIGKILL');
  }, 300_000);
  try {
    return await Promise.all(ranks.map((r) => r.done));
  } finally {
    clearTimeout(limit);
  }
}

const paramsOf = (out: string, scenario: string, rank: number, when = ''): Float64Array => {
  const bytes = fs.readFileSync(path.join(out, 'params', `${scenario}-rank${rank}${when}.bin`));
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
};

function maxAbsDiff(a: Float64Array, b: Float64Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const trainLog = (out: string, scenario: string) =>
  readMetricsLog(path.join(out, scenario, 'metrics.jsonl')).filter((e) => 'loss' in e);

describe('distributed training (2 Gloo ranks) equals one process with the same global batch', () => {
  const single = path.join(root, 'single');
  const double = path.join(root, 'double');
  let one: any;
  let two: any[];

  beforeAll(async () => {
    const [alone, pair] = await Promise.all([
      job(1, { out: single, scenarios: ['sft', 'dpo', 'grpo'] }),
      job(2, { out: double, scenarios: ['sft', 'dpo', 'grpo', 'bco'], openGroup: true }),
    ]);
    one = resultOf(alone[0]!);
    two = pair.map(resultOf);
  }, 200_000);

  it.each(['sft', 'dpo', 'grpo'])('%s: the same losses, metrics and final parameters (1e-10)', (scenario) => {
    expect(two[0].results[scenario].globalStep).toBe(one.results[scenario].globalStep);
    const a = trainLog(single, scenario);
    const b = trainLog(double, scenario);
    expect(b.map((e) => e.step)).toEqual(a.map((e) => e.step));
    expect(a.length).toBeGreaterThan(1);
    for (const [i, entry] of a.entries()) {
      for (const key of ['loss', 'grad_norm', 'learning_rate', 'num_tokens', 'rewards/accuracies', 'reward']) {
        if (!(key in entry)) continue;
        expect(
          Math.abs((b[i]![key] as number) - (entry[key] as number)),
          `${scenario} step ${i + 1} ${key}`,
        ).toBeLessThan(1e-10 * Math.max(1, Math.abs(entry[key] as number)));
      }
    }
    const rank0 = paramsOf(double, scenario, 0);
    // DDP: both ranks hold the same parameters, bit for bit.
    expect(maxAbsDiff(rank0, paramsOf(double, scenario, 1))).toBe(0);
    const alone = paramsOf(single, scenario, 0);
    const moved = maxAbsDiff(alone, paramsOf(single, scenario, 0, '.initial'));
    expect(moved).toBeGreaterThan(1e-4); // training moved the weights
    expect(maxAbsDiff(rank0, alone)).toBeLessThan(1e-10);
  });

  it('each rank read its DistributedSampler shard: disjoint, together the epoch the single process read', () => {
    for (const scenario of ['sft', 'dpo']) {
      const rows = scenario === 'sft' ? 6 : 8;
      const order = (one.results[scenario].reads as string[]).slice(0, rows);
      const shards = two.map((r) => (r.results[scenario].reads as string[]).slice(0, rows / 2));
      expect(new Set(order).size).toBe(rows);
      // rank r's k-th sample is element r + 2k of the epoch's permutation.
      shards.forEach((shard, r) => {
        expect(shard).toEqual(order.filter((_, j) => j % 2 === r));
      });
      expect(new Set([...shards[0]!, ...shards[1]!]).size).toBe(rows);
    }
  });

  it('GRPO: every group advantage of the 2-rank run is the single process one', () => {
    const rows = (out: string) =>
      fs
        .readFileSync(path.join(out, 'grpo', 'completions.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step: number; prompt: string; completion: string; advantage: number });
    const key = (r: { step: number; prompt: string; completion: string }) => `${r.step}|${r.prompt}|${r.completion}`;
    const a = new Map(rows(single).map((r) => [key(r), r.advantage]));
    const b = rows(double);
    expect(b.length).toBe(a.size); // rank 0 logged both ranks' groups
    expect(a.size).toBe(2 * 4 * 2); // 2 steps x 4 prompts x 2 completions
    for (const r of b) expect(Math.abs(r.advantage - a.get(key(r))!)).toBeLessThan(1e-12);
    expect(b.some((r) => Math.abs(r.advantage) > 0.5)).toBe(true);
  });

  it('only rank 0 writes: rank 1 opened no file under the output folder, one TensorBoard file per run', () => {
    expect(two[1].written).toEqual([]);
    for (const scenario of ['sft', 'dpo', 'grpo', 'bco']) {
      const events = fs.readdirSync(path.join(double, scenario, 'runs')).filter((f) => f.startsWith('events.'));
      expect(events).toHaveLength(1);
      expect(fs.existsSync(path.join(double, scenario, 'checkpoint-2', 'trainer_state.json'))).toBe(true);
    }
  });

  it("bco_pair's running mean: the same on both ranks, updated with both ranks' batch means", () => {
    const [r0, r1] = two.map((r) => r.results.bco.running);
    expect(r1).toEqual(r0);
    // 4 steps x 2 micro-batches per rank, each update counting one batch mean per rank.
    expect(r0.count).toBeCloseTo(4 * 2 * 2, 9);
    expect(Number.isFinite(r0.mean) && r0.mean !== 0).toBe(true);
  });

  it('kill -9 of rank 0 after checkpoint-2, resumed on 2 ranks: the uninterrupted run exactly', async () => {
    const out = path.join(root, 'killed');
    const killed = await job(2, { out, scenarios: ['dpo'], killAfterSave: 2 });
    expect(killed[0]!.signal).toBe('SIGKILL');
    expect(killed[1]!.code).not.toBe(0); // its next collective finds rank 0 gone
    expect(fs.existsSync(path.join(out, 'dpo', 'checkpoint-2'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'dpo', 'checkpoint-4'))).toBe(false);
    const resumed = (await job(2, { out, scenarios: ['dpo'], resume: true })).map(resultOf);
    expect(resumed[0].results.dpo.globalStep).toBe(4);
    expect(maxAbsDiff(paramsOf(out, 'dpo', 0), paramsOf(double, 'dpo', 0))).toBe(0);
    expect(maxAbsDiff(paramsOf(out, 'dpo', 1), paramsOf(double, 'dpo', 0))).toBe(0);
    const strip = (entries: ReturnType<typeof trainLog>) =>
      entries.map(({ loss, grad_norm, step }) => ({ loss, grad_norm, step }));
    expect(strip(trainLog(out, 'dpo'))).toEqual(strip(trainLog(double, 'dpo')));
  }, 200_000);
});

describe('ZeRO in the trainer (zero_stage 1 and 2, 2 Gloo ranks) equals one process with the same global batch', () => {
  const single = path.join(root, 'zero-single');
  const double = path.join(root, 'zero-double');

  it('SFT: the same losses and final parameters (1e-10), the shards saved beside each checkpoint', async () => {
    const [alone, pair] = await Promise.all([
      job(1, { out: single, scenarios: ['sft-noclip'] }),
      job(2, { out: double, scenarios: ['sft-zero1', 'sft-zero2'] }),
    ]);
    resultOf(alone[0]!);
    pair.forEach((r) => resultOf(r));
    const reference = paramsOf(single, 'sft-noclip', 0);
    expect(maxAbsDiff(reference, paramsOf(single, 'sft-noclip', 0, '.initial'))).toBeGreaterThan(1e-4);
    for (const scenario of ['sft-zero1', 'sft-zero2']) {
      const rank0 = paramsOf(double, scenario, 0);
      // The ranks all-gathered the same shards: identical parameters.
      expect(maxAbsDiff(rank0, paramsOf(double, scenario, 1))).toBe(0);
      expect(maxAbsDiff(rank0, reference), scenario).toBeLessThan(1e-10);
      const a = trainLog(single, 'sft-noclip');
      const b = trainLog(double, scenario);
      expect(b.map((e) => e.step)).toEqual(a.map((e) => e.step));
      for (const [i, entry] of a.entries()) {
        // grad_norm: one process reports clip_grad_norm_'s float32 norms, ZeRO a float64 norm.
        for (const [key, tolerance] of [
          ['loss', 1e-10],
          ['grad_norm', 1e-6],
        ] as const) {
          const diff = Math.abs((b[i]![key] as number) - (entry[key] as number));
          expect(diff, `${scenario} step ${i + 1} ${key}`).toBeLessThan(
            tolerance * Math.max(1, Math.abs(entry[key] as number)),
          );
        }
      }
      // Every rank's shard and rank 0's index beside checkpoint-2.
      const zeroDir = path.join(double, scenario, 'zero-checkpoint-2');
      expect(fs.readdirSync(zeroDir).sort()).toEqual([
        'zero-index.json',
        'zero-rank-00000-of-00002.safetensors',
        'zero-rank-00001-of-00002.safetensors',
      ]);
    }
  }, 200_000);

  it('kill -9 of rank 0 after checkpoint-2, resumed on 2 ranks from the shards: the uninterrupted run exactly', async () => {
    const out = path.join(root, 'zero-killed');
    const killed = await job(2, { out, scenarios: ['sft-zero2'], killAfterSave: 2 });
    expect(killed[0]!.signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(out, 'sft-zero2', 'zero-checkpoint-2', 'zero-index.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'sft-zero2', 'checkpoint-3'))).toBe(false);
    const resumed = (await job(2, { out, scenarios: ['sft-zero2'], resume: true })).map(resultOf);
    expect(resumed[0].results['sft-zero2'].globalStep).toBe(3);
    expect(maxAbsDiff(paramsOf(out, 'sft-zero2', 0), paramsOf(double, 'sft-zero2', 0))).toBe(0);
    expect(maxAbsDiff(paramsOf(out, 'sft-zero2', 1), paramsOf(double, 'sft-zero2', 0))).toBe(0);
    // A ZeRO checkpoint resumed without ZeRO would lose the sharded optimizer state: refused.
    const alone = await job(1, { out, scenarios: ['sft-noclip-resume'], resume: true });
    expect(alone[0]!.stderr + alone[0]!.stdout).toContain('its optimizer state is sharded in');
  }, 200_000);
});

describe('ZeRO-3 in the trainer (zero_stage 3, 2 Gloo ranks): ranks in lockstep', () => {
  const single = path.join(root, 'zero3-single');
  const double = path.join(root, 'zero3-double');
  let two: any[];

  beforeAll(async () => {
    const [alone, pair] = await Promise.all([
      job(1, { out: single, scenarios: ['mixed-noclip', 'dpo-noclip', 'dpo-lora-noclip', 'dpo-pre-noclip'] }),
      job(2, {
        out: double,
        scenarios: ['mixed-zero3', 'dpo-zero3', 'dpo-lora-zero3', 'dpo-pre-zero3', 'rollout', 'rollout-zero3'],
      }),
    ]);
    resultOf(alone[0]!); // finished with its RESULT line
    two = pair.map(resultOf);
  }, 400_000);

  // Losses (and eval losses) per step, then the final parameters, against `reference`'s run.
  function expectSameRun(out: string, scenario: string, refOut: string, reference: string): void {
    for (const filter of [(e: any) => 'loss' in e, (e: any) => 'eval_loss' in e]) {
      const read = (dir: string, name: string) =>
        readMetricsLog(path.join(dir, name, 'metrics.jsonl')).filter(filter) as Array<Record<string, number>>;
      const a = read(refOut, reference);
      const b = read(out, scenario);
      expect(b.map((e) => e.step)).toEqual(a.map((e) => e.step));
      for (const [i, entry] of a.entries()) {
        for (const key of ['loss', 'eval_loss', 'eval_exact_match', 'rewards/accuracies', 'reward']) {
          if (!(key in entry)) continue;
          expect(Math.abs(b[i]![key]! - entry[key]!), `${scenario} step ${entry.step} ${key}`).toBeLessThan(
            1e-10 * Math.max(1, Math.abs(entry[key]!)),
          );
        }
      }
    }
    const rank0 = paramsOf(out, scenario, 0);
    expect(maxAbsDiff(rank0, paramsOf(out, scenario, 1))).toBe(0);
    const alone = paramsOf(refOut, reference, 0);
    expect(maxAbsDiff(alone, paramsOf(refOut, reference, 0, '.initial'))).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(rank0, alone), scenario).toBeLessThan(1e-10);
  }

  // A micro-step at which one rank's micro-batch had images and the other's had none.
  const mixedStep = (scenario: string): number => {
    const [a, b] = two.map((r) => r.results[scenario].images as boolean[]);
    return a!.findIndex((has, k) => has !== b![k]);
  };

  it('SFT, one rank text-only at a micro-step, gradient checkpointing: one process on the union (1e-10)', () => {
    expect(mixedStep('mixed-zero3')).toBeGreaterThanOrEqual(0);
    expectSameRun(double, 'mixed-zero3', single, 'mixed-noclip');
    // The eval hook's greedy answers ran on every rank (each forward is a collective), logged once.
    expect(two[1].results['mixed-zero3'].promptReads).toEqual(['p0', 'p1']);
    const evals = trainLogOf(double, 'mixed-zero3').filter((e) => 'eval_exact_match' in e);
    expect(evals.map((e) => e.step)).toEqual([2]);
  });

  it('DPO with a frozen reference, one rank text-only at a micro-step: one process on the union (1e-10)', () => {
    expect(mixedStep('dpo-zero3')).toBeGreaterThanOrEqual(0);
    expectSameRun(double, 'dpo-zero3', single, 'dpo-noclip');
  });

  it('DPO with LoRA (reference = the adapter-disabled policy) and with precomputed reference log-probs: one process (1e-10)', async () => {
    for (const kind of ['lora', 'pre']) {
      expect(mixedStep(`dpo-${kind}-zero3`)).toBeGreaterThanOrEqual(0);
      expectSameRun(double, `dpo-${kind}-zero3`, single, `dpo-${kind}-noclip`);
    }
    // The precompute pass ran on every rank in lockstep; rank 0 alone wrote the cache.
    expect(fs.readdirSync(path.join(double, 'ref-cache', 'ref_logps'))).toHaveLength(1);
    expect(two[1].written.filter((f: string) => f.includes('ref-cache'))).toEqual([]);
    // LoRA's final save is the adapter in PEFT's layout, written unit by unit from the shards: the
    // single process's file, tensor by tensor (1e-10).
    const file = (out: string, scenario: string) => path.join(out, scenario, 'adapter_model.safetensors');
    const [a, b] = await Promise.all([
      loadSafetensors(file(single, 'dpo-lora-noclip')),
      loadSafetensors(file(double, 'dpo-lora-zero3')),
    ]);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    expect(Object.keys(a).length).toBeGreaterThan(0);
    for (const [name, t] of Object.entries(a)) {
      const diff = torch.tidy(() => t.sub(b[name]!).abs().max().item() as number);
      expect(diff, name).toBeLessThan(1e-10);
    }
  });

  it('GRPO: completions of other lengths per rank (lockstep decoding) equal the stage-0 run', () => {
    const lengths = (scenario: string) => two.map((r) => r.results[scenario].lengths as number[][]);
    // The same completions as DDP, sampled with the same random numbers ...
    expect(lengths('rollout-zero3')).toEqual(lengths('rollout'));
    // ... and at some generation one rank decoded longer than the other, so the other idled.
    const [a, b] = lengths('rollout-zero3');
    expect(a!.some((gen, g) => Math.max(...gen) !== Math.max(...b![g]!))).toBe(true);
    expect(mixedStep('rollout-zero3')).toBeGreaterThanOrEqual(0);
    expectSameRun(double, 'rollout-zero3', double, 'rollout');
  });

  it('parameter bytes per rank between steps: the shards, half the model (+ padding), nothing else', () => {
    for (const scenario of ['mixed-zero3', 'dpo-zero3', 'dpo-lora-zero3', 'rollout-zero3']) {
      for (const r of two) {
        const { bytes, totalBytes } = r.results[scenario];
        expect(bytes.length).toBeGreaterThan(0);
        for (const b of bytes) {
          // Each flat buffer is padded to a multiple of 2 elements: at most one float64 per buffer.
          expect(b.parameters).toBeGreaterThanOrEqual(totalBytes / 2);
          expect(b.parameters - totalBytes / 2).toBeLessThanOrEqual(8 * 16);
          expect(b.gradients).toBe(0); // plain SGD: no optimizer state, gradients consumed by the step
          expect(b.optimizer).toBe(0);
        }
      }
    }
  });

  it('the final save is a plain Hugging Face directory holding the trained parameters; shards beside each checkpoint', () => {
    for (const scenario of ['mixed-zero3', 'dpo-zero3', 'rollout-zero3']) {
      const dir = path.join(double, scenario);
      expect(two[0].results[scenario].savedDiff).toBe(0);
      expect(fs.existsSync(path.join(dir, 'config.json'))).toBe(true);
      const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
      expect(Object.keys(index.weight_map).length).toBeGreaterThan(0);
      expect(fs.readdirSync(path.join(dir, 'zero-checkpoint-2')).sort()).toEqual([
        'zero-index.json',
        'zero-rank-00000-of-00002.safetensors',
        'zero-rank-00001-of-00002.safetensors',
      ]);
      // checkpoint-N holds the HF weights too (gathered for the save), so it loads alone.
      expect(fs.readdirSync(path.join(dir, 'checkpoint-2')).some((f) => f.endsWith('.safetensors'))).toBe(true);
    }
  });

  it('kill -9 of rank 0 after checkpoint-2, resumed on 2 ranks: the uninterrupted run exactly', async () => {
    const out = path.join(root, 'zero3-killed');
    const killed = await job(2, { out, scenarios: ['mixed-zero3'], killAfterSave: 2 });
    expect(killed[0]!.signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(out, 'mixed-zero3', 'zero-checkpoint-2', 'zero-index.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'mixed-zero3', 'checkpoint-3'))).toBe(false);
    const resumed = (await job(2, { out, scenarios: ['mixed-zero3'], resume: true })).map(resultOf);
    expect(resumed[0].results['mixed-zero3'].globalStep).toBe(3);
    for (const r of [0, 1])
      expect(maxAbsDiff(paramsOf(out, 'mixed-zero3', r), paramsOf(double, 'mixed-zero3', 0))).toBe(0);
    const strip = (entries: ReturnType<typeof trainLog>) => entries.map(({ loss, step }) => ({ loss, step }));
    expect(strip(trainLog(out, 'mixed-zero3'))).toEqual(strip(trainLog(double, 'mixed-zero3')));
  }, 300_000);

  it('a 2-rank checkpoint resumed on 4 ranks (shards resharded): the uninterrupted run (1e-10)', async () => {
    const out = path.join(root, 'zero3-resharded');
    const killed = await job(2, { out, scenarios: ['dpo-zero3'], killAfterSave: 2 });
    expect(killed[0]!.signal).toBe('SIGKILL');
    const resumed = (await job(4, { out, scenarios: ['dpo-zero3'], resume: true })).map(resultOf);
    expect(resumed[0].results['dpo-zero3'].globalStep).toBe(4);
    const reference = paramsOf(double, 'dpo-zero3', 0);
    for (const r of [0, 1, 2, 3]) expect(maxAbsDiff(paramsOf(out, 'dpo-zero3', r), reference)).toBeLessThan(1e-10);
    // A quarter of the model on each of the 4 ranks now.
    const { bytes, totalBytes } = resumed[0].results['dpo-zero3'];
    expect(bytes.at(-1).parameters - totalBytes / 4).toBeLessThanOrEqual(8 * 16 * 3);
    const a = trainLog(double, 'dpo-zero3');
    const b = trainLog(out, 'dpo-zero3');
    expect(b.map((e) => e.step)).toEqual(a.map((e) => e.step));
    for (const [i, e] of a.entries()) expect(Math.abs((b[i]!.loss as number) - (e.loss as number))).toBeLessThan(1e-10);
  }, 300_000);
});

const trainLogOf = (out: string, scenario: string) => readMetricsLog(path.join(out, scenario, 'metrics.jsonl'));
