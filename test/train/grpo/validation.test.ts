// GRPO validation as verl reports it: N completions per prompt scored by the rewards; per prompt the
// mean, the best and the majority-vote reward, averaged over prompts, overall and per data_source;
// worked out by hand for fixed completions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { models, processing, tiny } from '../../../lib/index.js';
import type { RewardBatch } from '../../../lib/rewards/index.js';
import { createTrainer } from '../../../lib/train/create.js';
import { grpoConfig } from '../../../lib/train/grpo/config.js';
import { answerOf } from '../../../lib/train/grpo/validation.js';
import { fixedSampler, promptDataset, promptRecord } from './prompts_fixture.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-grpo-val-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('answerOf', () => {
  it('votes with the last \\boxed{}, else the last <answer>, else the text', () => {
    expect(answerOf('so \\boxed{1} or rather \\boxed{\\frac{1}{2}} ')).toBe('\\frac{1}{2}');
    expect(answerOf('<think>x</think><answer> B </answer>')).toBe('B');
    expect(answerOf('<answer>A</answer> then <answer>C</answer>')).toBe('C');
    expect(answerOf('  plain  ')).toBe('plain');
    expect(answerOf('\\boxed{unclosed')).toBe('\\boxed{unclosed');
  });
});

describe('GRPO evaluate', () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(root, 'qwen2_vl');
    await tiny.writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 1 });
  }, 120_000);

  it('mean@N, best@N and maj@N of the weighted reward, overall and per data_source', async () => {
    const processor = await processing.fromPretrained(dir);
    // Completion texts are the decoded ids; the reward reads the ids: 1 if the first id is even.
    const ids = (k: number) => [100 + k];
    // Prompt 0 (geo): ids 100, 101, 100 → rewards 1, 0, 1; answers (texts) agree 2 to 1 on id 100.
    // Prompt 1 (chart): ids 103, 102, 105 → rewards 0, 1, 0; three answers, a tie: the first (0).
    const plan: Record<string, number[]> = { p0: [0, 1, 0], p1: [3, 2, 5] };
    const sampler = fixedSampler(Object.fromEntries(Object.entries(plan).map(([id, ks]) => [id, ks.map(ids)])));
    const reward = (batch: RewardBatch) => batch.completionIds!.map((c) => (c[0]! % 2 === 0 ? 1 : 0));
    const dataset = promptDataset([
      promptRecord('p0', 'question p0', null, { data_source: 'geo' }),
      promptRecord('p1', 'question p1', null, { data_source: 'chart' }),
    ]);
    const trainer = createTrainer({
      method: 'grpo',
      args: grpoConfig({
        outputDir: join(root, 'out'),
        numGenerations: 3,
        perDeviceTrainBatchSize: 3,
        reportTo: ['none'],
      }),
      model: await models.fromPretrained(dir),
      processor,
      trainDataset: dataset,
      evalDataset: dataset,
      rewards: [{ name: 'even', fn: reward }],
      sampler,
    });
    const metrics = await trainer.evaluate();
    expect(metrics['eval_reward/mean@3']).toBeCloseTo((2 / 3 + 1 / 3) / 2, 12);
    expect(metrics['eval_reward/best@3']).toBe(1);
    expect(metrics['eval_reward/maj@3']).toBe((1 + 0) / 2);
    expect(metrics['eval_reward/geo/maj@3']).toBe(1);
    expect(metrics['eval_reward/chart/mean@3']).toBeCloseTo(1 / 3, 12);
    expect(metrics.eval_loss).toBeUndefined();
  }, 120_000);
});
