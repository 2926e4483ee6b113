// Save → load of a training run on the tiny Qwen2-VL golden checkpoint: a LoRA adapter (PEFT files),
// AdamW + cosine schedule, the CPU generator, a loss's running moments and the data position. The
// resumed run must match the uninterrupted one bit for bit, two steps after the resume.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { fromPretrained } from '../../lib/models/index.js';
import { getPeftModel } from '../../lib/adapters/index.js';
import { AdamW, LRScheduler } from '../../lib/optim/index.js';
import { RunningMoments } from '../../lib/losses/running_moments.js';
import {
  CheckpointManager,
  loadCheckpoint,
  restoreTraining,
  trainerState,
  trainingWriters,
} from '../../lib/train/index.js';
import { goldenDir } from '../models/golden.js';
import { perturb } from '../adapters/helpers.js';

const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-resume-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const ATTENTION = String.raw`^model\.layers\..*\.(q|k|v)_proj$`;

async function buildRun() {
  const model = await fromPretrained(goldenDir('qwen2_vl'));
  const adapter = getPeftModel(model, { targetModules: ATTENTION });
  const optimizer = new AdamW(adapter.trainableParameters(), { lr: 1e-2, weightDecay: 0.01 });
  const scheduler = new LRScheduler(optimizer, { name: 'cosine', totalSteps: 10, warmupSteps: 2 });
  return { model, adapter, optimizer, scheduler, moments: new RunningMoments() };
}
type Run = Awaited<ReturnType<typeof buildRun>>;

// A gradient that depends only on the weights and the step (not on the generator): sin(k·p).
function trainStep(run: Run, k: number): void {
  for (const [, p] of run.adapter.trainableParameters()) p.grad = torch.noGrad(() => p.detach().mul(k).sin());
  run.optimizer.step();
  run.scheduler.step();
  run.moments.update([k, -k / 3]);
}

const adapterTensors = (run: Run): Map<string, Tensor> =>
  new Map([...run.adapter.adapterStateDict()].map(([n, t]) => [n, t.clone()]));
const sameTensors = (a: Map<string, Tensor>, b: Map<string, Tensor>): boolean =>
  a.size === b.size && [...a].every(([n, t]) => b.get(n)?.equal(t) === true);

describe('trainingWriters / restoreTraining', () => {
  it('an adapter run resumed from checkpoint-3 matches the uninterrupted run exactly', async () => {
    const first = await buildRun();
    perturb(first.adapter);
    for (let k = 1; k <= 3; k++) trainStep(first, k);
    const parts = {
      adapter: first.adapter,
      optimizer: first.optimizer,
      scheduler: first.scheduler,
      stateful: { loss: first.moments },
    };
    const data = { epoch: 1, index: 12, seed: 42 };
    const dir = await new CheckpointManager(path.join(root, 'lora')).save(
      trainerState({ global_step: 3 }),
      trainingWriters(parts, data),
    );
    const atSave = adapterTensors(first);
    const momentsAtSave = first.moments.stateDict();
    const nextRandom = torch.rand([6]);
    for (let k = 4; k <= 5; k++) trainStep(first, k);

    expect(Object.keys(loadCheckpoint(dir).files).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'optimizer.safetensors',
      'resume_state.json',
      'rng_state.safetensors',
      'trainer_state.json',
    ]);
    const header = await torch.readSafetensorsHeader(path.join(dir, 'adapter_model.safetensors'));
    expect(Object.keys(header.tensors).every((n) => n.startsWith('base_model.model.'))).toBe(true);

    const resumed = await buildRun();
    torch.manualSeed(999); // a different generator state, which the checkpoint must replace
    const position = await restoreTraining(dir, {
      adapter: resumed.adapter,
      optimizer: resumed.optimizer,
      scheduler: resumed.scheduler,
      stateful: { loss: resumed.moments },
    });
    expect(position).toEqual(data);
    expect(sameTensors(adapterTensors(resumed), atSave)).toBe(true);
    expect(torch.rand([6]).equal(nextRandom)).toBe(true);
    // The moments of 1, -1/3, 2, -2/3, 3, -1: mean 2/3, population variance 140/54 - 4/9 = 58/27.
    const restored = resumed.moments.stateDict();
    expect(restored.count).toBe(6);
    expect(restored.mean).toBeCloseTo(2 / 3, 12);
    expect(restored.var).toBeCloseTo(58 / 27, 12);
    expect(restored).toEqual(momentsAtSave);
    for (let k = 4; k <= 5; k++) trainStep(resumed, k);
    expect(resumed.scheduler.lastLr).toEqual(first.scheduler.lastLr);
    expect(sameTensors(adapterTensors(resumed), adapterTensors(first))).toBe(true);
    expect(resumed.moments.stateDict()).toEqual(first.moments.stateDict());
  });

  it('a full fine-tune checkpoint is an HF model directory, restored in place', async () => {
    const trained = await fromPretrained(goldenDir('qwen2_vl'));
    torch.noGrad(() => {
      for (const [, p] of trained.namedParameters()) p.add_(p.detach().cos().mul(1e-3));
    });
    const dir = await new CheckpointManager(path.join(root, 'full')).save(
      trainerState({ global_step: 1 }),
      trainingWriters({ model: trained }, null),
    );
    const fresh = await fromPretrained(goldenDir('qwen2_vl'));
    expect(await restoreTraining(dir, { model: fresh })).toBeNull();
    const reloaded = await fromPretrained(dir);
    for (const [name, t] of trained.stateDict()) {
      expect(fresh.stateDict().get(name)!.equal(t)).toBe(true);
      expect(reloaded.stateDict().get(name)!.equal(t)).toBe(true);
    }
  });

  it('names the checkpoint file when a stateful part has no saved state', async () => {
    const moments = new RunningMoments();
    const dir = await new CheckpointManager(path.join(root, 'missing')).save(
      trainerState({ global_step: 1 }),
      trainingWriters({}, null),
    );
    await expect(restoreTraining(dir, { stateful: { loss: moments } })).rejects.toThrow(
      `${path.join(dir, 'resume_state.json')}: no state for 'loss'`,
    );
  });
});
