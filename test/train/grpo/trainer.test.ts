// A GRPO step through the trainer with fixed completions (a sampler that returns them) against the
// same step written out by hand from TRL's formulas: rewards from the reward function, group
// advantages (R − mean) / (Bessel std + 1e-4), per-token log-probs of each completion on its own
// unpacked row (prompt and image repeated, materialised logits), the DAPO loss
// −Σ A·exp(lp − sg(lp)) / tokens, its gradient, one SGD step. Float64 tiny Qwen2-VL with an image
// prompt and a text prompt; the parameters after the step agree to 1e-6 of the update (the trainer packs each
// prompt with its completions, and RMSNorm's float32 casts round the summed prompt gradients once
// instead of per row: test/train/pair_forward.test.ts shows exact agreement without those casts),
// and the logged reward metrics are the hand-computed ones.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { models, processing, tiny, torch } from '../../../lib/index.js';
import type { Tensor } from '../../../lib/torch/index.js';
import type { RewardBatch } from '../../../lib/rewards/index.js';
import { createTrainer } from '../../../lib/train/create.js';
import { grpoConfig } from '../../../lib/train/grpo/config.js';
import { readMetricsLog } from '../../../lib/train/metrics_log.js';
import { randomImage } from '../../processing/chats.js';
import { fixedSampler, pngOf, promptDataset, promptRecord } from './prompts_fixture.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-grpo-trainer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const LR = 0.5;
const G = 2;
// Per record id, the G completions the sampler hands back (ordinary vocabulary ids).
const COMPLETIONS: Record<string, number[][]> = {
  a: [
    [40, 41, 42],
    [50, 51, 52, 53, 54],
  ],
  b: [[60, 61], [70]],
};
const reward = (batch: RewardBatch) => batch.completionIds!.map((ids) => ids.length / 10 + (ids[0]! % 3));

const dataset = async () =>
  promptDataset([promptRecord('a', 'Where is it?', await pngOf(4)), promptRecord('b', 'Say two words.')]);

describe('GrpoMethod through the trainer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(root, 'qwen2_vl');
    await tiny.writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 9 });
  }, 120_000);

  it('one step with fixed completions equals the hand-written GRPO step (DAPO, on-policy)', async () => {
    const load = async () => (await models.fromPretrained(dir)).to({ dtype: 'float64' });
    const processor = await processing.fromPretrained(dir);
    const policy = await load();
    const outputDir = join(root, 'run');
    const args = grpoConfig({
      outputDir,
      perDeviceTrainBatchSize: 4,
      numGenerations: G,
      maxSteps: 1,
      learningRate: LR,
      lrSchedulerType: 'constant',
      optim: 'sgd',
      maxGradNorm: 0,
      reportTo: ['none'],
      saveStrategy: 'no',
      loggingSteps: 1,
      gradientCheckpointing: false,
    });
    const sampler = fixedSampler(COMPLETIONS);
    const trainer = createTrainer({
      method: 'grpo',
      args,
      model: policy,
      processor,
      trainDataset: await dataset(),
      rewards: [{ name: 'len', fn: reward }],
      sampler,
    });
    await trainer.train();

    // The step by hand, on a fresh copy of the initial weights.
    const reference = await load();
    const params = reference.parameters();
    const rewards: number[] = [];
    const advantages: number[] = [];
    const rows: Array<{ ids: number[]; completion: number[]; inputs: Awaited<ReturnType<typeof processor.process>> }> =
      [];
    const records = await dataset();
    for (let i = 0; i < records.length; i++) {
      const record = (await records.get(i))!;
      const images = record.images.length ? [randomImage(56, 56, 4)] : [];
      const inputs = await processor.process([{ prompt: record.prompt, images }]);
      const ids = Array.from(inputs.inputIds.contiguous().data() as BigInt64Array, Number);
      const group = COMPLETIONS[record.id]!.map((c) => c.length / 10 + (c[0]! % 3));
      const mean = group.reduce((a, b) => a + b, 0) / G;
      const std = Math.sqrt(group.reduce((a, r) => a + (r - mean) ** 2, 0) / (G - 1));
      for (const [k, completion] of COMPLETIONS[record.id]!.entries()) {
        rewards.push(group[k]!);
        advantages.push((group[k]! - mean) / (std + 1e-4));
        rows.push({ ids, completion, inputs });
      }
    }
    const tokens = rows.reduce((n, r) => n + r.completion.length, 0);
    const loss = rows
      .map((row, s) => {
        const all = [...row.ids, ...row.completion];
        const out = reference.forward({
          inputIds: torch.tensor([all], { dtype: 'int64' }),
          pixelValues: row.inputs.pixelValues?.to({ dtype: 'float64' }) ?? null,
          imageGridThw: (row.inputs as { imageGridThw: Tensor | null }).imageGridThw,
        });
        const logprobs = out.logits!.select(0, 0).logSoftmax(-1);
        const lp = torch.stack(row.completion.map((t, k) => logprobs.select(0, row.ids.length - 1 + k).select(0, t)));
        return lp.sub(lp.detach()).exp().mul(-advantages[s]!).sum();
      })
      .reduce((a, b) => a.add(b))
      .div(tokens);
    const grads = torch.autograd.grad(loss, params, { allowUnused: true });
    const trained = policy.parameters();
    let moved = 0;
    params.forEach((p, k) => {
      const step = grads[k]?.mul(LR) ?? null;
      const expected = step ? p.detach().sub(step) : p.detach();
      const diff = trained[k]!.to({ dtype: 'float64' }).sub(expected).abs().max().item() as number;
      // Relative to the update's size: float32 rounding of the casts leaves ~1e-7; a packing error would not.
      const scale = step ? (step.abs().max().item() as number) : 0;
      expect(diff, `parameter ${k}`).toBeLessThanOrEqual(1e-6 * scale);
      if (grads[k] && (grads[k]!.abs().max().item() as number) > 0) moved++;
    });
    expect(moved).toBeGreaterThan(params.length / 2);

    const [entry] = readMetricsLog(join(outputDir, 'metrics.jsonl')).filter((e) => typeof e.loss === 'number');
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    expect(entry!.reward).toBeCloseTo(mean, 12);
    expect(entry!['rewards/len/mean']).toBeCloseTo(mean, 12);
    expect(entry!.loss).toBeCloseTo(loss.item() as number, 10);
    expect(entry!['completions/mean_length']).toBeCloseTo(tokens / rows.length, 12);
    expect(entry!.frac_reward_zero_std).toBe(0);
  }, 180_000);
});
