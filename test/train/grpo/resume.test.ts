// GRPO resumes exactly: a run of 4 steps with real sampling (the shared-prefill rollout, seeded by
// the run) and num_iterations 2 (each generation feeds two optimizer steps), against runs resumed
// from checkpoint-1 (inside a generation: its completions come from the checkpoint, not a new
// sample) and checkpoint-2 (between generations: the next sample draws from the restored RNG). The
// logged losses and rewards and the final weights are identical.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { models, processing, tiny } from '../../../lib/index.js';
import type { PromptRecord } from '../../../lib/data/records.js';
import type { RewardBatch } from '../../../lib/rewards/index.js';
import { createTrainer } from '../../../lib/train/create.js';
import { grpoConfig, type GrpoConfigInput } from '../../../lib/train/grpo/config.js';
import { readMetricsLog } from '../../../lib/train/metrics_log.js';
import { pngOf, promptDataset, promptRecord } from './prompts_fixture.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-grpo-resume-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Rewards that vary with the sampled tokens, so different samples give different losses.
const reward = (batch: RewardBatch) => batch.completionIds!.map((ids) => (ids.reduce((a, b) => a + b, 0) % 7) / 7);

let checkpoint: string;
let records: PromptRecord[];

beforeAll(async () => {
  checkpoint = join(root, 'qwen2_vl');
  await tiny.writeTinyCheckpoint(checkpoint, 'qwen2_vl', { seed: 2 });
  records = [
    promptRecord('a', 'Where is it?', await pngOf(1)),
    promptRecord('b', 'Say two words.'),
    promptRecord('c', 'What colour?', await pngOf(3)),
    promptRecord('d', 'Count.'),
  ];
}, 120_000);

const dataset = () => promptDataset(records);

async function run(outputDir: string, extra: Partial<GrpoConfigInput> = {}) {
  const args = grpoConfig({
    outputDir,
    perDeviceTrainBatchSize: 4,
    numGenerations: 2,
    numIterations: 2,
    maxCompletionLength: 6,
    maxSteps: 4,
    learningRate: 1e-3,
    saveSteps: 1,
    loggingSteps: 1,
    reportTo: ['none'],
    gradientCheckpointing: false,
    seed: 7,
    ...extra,
  });
  const model = await models.fromPretrained(checkpoint);
  const processor = await processing.fromPretrained(checkpoint, { paddingSide: 'left' });
  const trainer = createTrainer({
    method: 'grpo',
    args,
    model,
    processor,
    trainDataset: dataset(),
    rewards: [{ name: 'sum7', fn: reward }],
  });
  await trainer.train();
  model.dispose();
}

const steps = (dir: string) => readMetricsLog(join(dir, 'metrics.jsonl')).filter((e) => typeof e.loss === 'number');

describe('GRPO resume', () => {
  it('from inside a generation and from between generations, the run continues identically', async () => {
    const straight = join(root, 'straight');
    await run(straight);
    const logged = steps(straight);
    expect(logged.map((e) => e.step)).toEqual([1, 2, 3, 4]);
    // Reward metrics are logged once per generation (steps 1 and 3), as TRL logs them; the two
    // generations' completions differ, and so do their rewards.
    expect(logged.map((e) => 'reward' in e)).toEqual([true, false, true, false]);
    expect(logged[0]!.reward).not.toBe(logged[2]!.reward);
    for (const from of [1, 2]) {
      const resumed = join(root, `resumed-${from}`);
      cpSync(join(straight, `checkpoint-${from}`), join(resumed, `checkpoint-${from}`), { recursive: true });
      await run(resumed, { resumeFromCheckpoint: true });
      const again = steps(resumed).filter((e) => e.step > from);
      const expected = logged.filter((e) => e.step > from);
      expect(again.map((e) => [e.step, e.loss, e.reward])).toEqual(expected.map((e) => [e.step, e.loss, e.reward]));
      const weights = (dir: string) => readFileSync(join(dir, 'model.safetensors'));
      expect(weights(resumed).equals(weights(straight)), `resumed from checkpoint-${from}`).toBe(true);
    }
  }, 600_000);
});
