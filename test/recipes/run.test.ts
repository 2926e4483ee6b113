// Every recipe in examples/recipes/ runs as written through `vlalign train` (the CLI's main()) on the
// data scripts/make-recipe-data.mjs generates, for one optimizer step: the run writes checkpoint-1,
// a metrics jsonl whose loss is finite, and the final adapter or model; GRPO recipes also log their
// rewards and completion lengths. The GSPO recipe (several optimizer steps per generation) and a
// token-level GRPO recipe (one generation per step) run two steps: the completions they log come in
// the groups and generations the batch arithmetic says, with TRL's group advantages.
import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { registerReward } from '../../lib/rewards/registry.js';
import { textOf } from '../../lib/rewards/types.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';

const recipes = join(import.meta.dirname, '../../examples/recipes');
const root = mkdtempSync(join(tmpdir(), 'vlalign-recipes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// The demo's recipes (shapes-*) read the demo's data and shipped base model: test/demo/demo.test.ts
// runs them through the demo.
const names = readdirSync(recipes)
  .filter((f) => f.endsWith('.yaml') && !f.startsWith('shapes-'))
  .map((f) => f.slice(0, -'.yaml'.length));
const isGrpo = (name: string) => /^trainer: grpo$/m.test(readFileSync(join(recipes, `${name}.yaml`), 'utf8'));
// A recipe's own value of a top-level key (numbers only).
const setting = (name: string, key: string) =>
  Number(new RegExp(`^${key}: (\\d+)`, 'm').exec(readFileSync(join(recipes, `${name}.yaml`), 'utf8'))?.[1]);

function makeData(): void {
  if (existsSync(join(root, '.data'))) return;
  const script = join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', join(root, '.data')], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
}

describe('examples/recipes', () => {
  it('has the five recipes the issue names (and more)', () => {
    expect(names).toEqual(expect.arrayContaining(['internvl3-mpo', 'trl-mpo-qlora', 'vlrlhf-dpo', 'kto', 'sft']));
  });

  it.each(names)(
    '%s runs one step end to end',
    async (name) => {
      makeData();
      copyFileSync(join(recipes, `${name}.yaml`), join(root, `${name}.yaml`));
      const out = join(root, 'runs', name);
      const flags = ['--max_steps', '1', '--save_steps', '1', '--output_dir', out, '--report_to', '[tensorboard]'];
      await main(['node', 'vlalign', 'train', join(root, `${name}.yaml`), ...flags]);
      expect(process.exitCode ?? 0).toBe(0);
      expect(existsSync(join(out, 'checkpoint-1', 'checkpoint_complete.json'))).toBe(true);
      // As TRL's checkpoints, checkpoint-N carries the tokenizer, so it loads on its own.
      expect(readFileSync(join(out, 'checkpoint-1', 'tokenizer.json'))).toEqual(
        readFileSync(join(out, 'tokenizer.json')),
      );
      const logged = readMetricsLog(join(out, 'metrics.jsonl'));
      const train = logged.find((e) => typeof e.loss === 'number');
      expect(Number.isFinite(train?.loss as number)).toBe(true);
      const saved = readdirSync(out);
      expect(saved.some((f) => f === 'adapter_model.safetensors' || f.startsWith('model'))).toBe(true);
      if (isGrpo(name)) {
        expect(Number.isFinite(train?.reward as number)).toBe(true);
        const length = train?.['completions/mean_length'] as number;
        expect(length).toBeGreaterThan(0);
        expect(length).toBeLessThanOrEqual(setting(name, 'max_completion_length'));
      }
    },
    120_000,
  );

  it('has the GRPO recipes of issue #12', () => {
    expect(names.filter(isGrpo).sort()).toEqual([
      'internvl35-gspo',
      'virft-classification-grpo',
      'virft-detection-grpo',
    ]);
  });

  interface Logged {
    step: number;
    prompt: string;
    completion: string;
    rewards: Record<string, number>;
    advantage: number;
  }

  /** Runs a recipe for two steps with its completions logged; the metrics and the completions by step. */
  async function twoSteps(name: string, extra: string[] = []) {
    makeData();
    copyFileSync(join(recipes, `${name}.yaml`), join(root, `${name}.yaml`));
    const out = join(root, 'runs', `${name}-2${extra.length > 0 ? '-own-reward' : ''}`);
    const flags = ['--max_steps', '2', '--save_steps', '2', '--output_dir', out, '--log_completions', 'true'];
    await main(['node', 'vlalign', 'train', join(root, `${name}.yaml`), ...flags, ...extra]);
    expect(process.exitCode ?? 0).toBe(0);
    expect(existsSync(join(out, 'checkpoint-2', 'checkpoint_complete.json'))).toBe(true);
    const steps = readMetricsLog(join(out, 'metrics.jsonl')).filter((e) => typeof e.loss === 'number');
    expect(steps.map((e) => e.step)).toEqual([1, 2]);
    const completions = readFileSync(join(out, 'completions.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Logged);
    return { steps, completions };
  }

  /** Consecutive groups of `size` completions of one prompt each, advantages (r - mean) / (std + 1e-4) as TRL's. */
  function expectGroups(completions: Logged[], size: number, reward: string) {
    expect(completions.length % size).toBe(0);
    for (let start = 0; start < completions.length; start += size) {
      const group = completions.slice(start, start + size);
      expect(new Set(group.map((c) => c.prompt)).size).toBe(1);
      const rewards = group.map((c) => c.rewards[reward] as number);
      const mean = rewards.reduce((a, b) => a + b, 0) / size;
      const std = Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / (size - 1));
      for (const [k, c] of group.entries()) expect(c.advantage).toBeCloseTo((rewards[k]! - mean) / (std + 1e-4), 4);
    }
  }

  it('GSPO (internvl35-gspo) trains 2 steps on one generation: 2 prompts x 16 completions, 2 mini-batches', async () => {
    const { steps, completions } = await twoSteps('internvl35-gspo');
    // generation_batch_size 32 = 2 groups of num_generations 16; each optimizer step reads 8 x 2 = 16 of them.
    expect(completions.length).toBe(32);
    expect(completions.every((c) => c.step === 1)).toBe(true);
    expectGroups(completions, 16, 'verl_default');
    expect(steps[0]?.['completions/mean_length']).toBeDefined();
    expect(steps[1]?.['completions/mean_length']).toBeUndefined(); // step 2 samples nothing new
    for (const c of completions)
      expect(c.prompt).toMatch(/^user: <image>\n(Please provide the bounding box|.*\\boxed\{\}\.$)/s);
  }, 120_000);

  it('token-level GRPO (virft-detection-grpo) samples a new generation each step: 2 prompts x 8 completions', async () => {
    const { steps, completions } = await twoSteps('virft-detection-grpo');
    for (const step of [1, 2]) expect(completions.filter((c) => c.step === step).length).toBe(16);
    expectGroups(completions, 8, 'virft_format');
    for (const step of steps) expect(step['completions/mean_length']).toBeGreaterThan(0);
    // The frozen reference equals the policy before the first update: no KL at step 1.
    expect(steps[0]?.kl).toBe(0);
    for (const c of completions)
      expect(c.prompt).toMatch(/^user: <image>Detect all objects belonging to the category '(square|circle|triangle)'/);
  }, 120_000);

  it('GSPO with a reward that varies (the share of letters in a completion): logged rewards, advantages and a step that moves', async () => {
    const letters: Parameters<typeof registerReward>[1] = ({ completions }) =>
      completions.map((c) => {
        const text = textOf(c);
        return text.length === 0 ? 0 : (text.match(/[A-Za-z]/g)?.length ?? 0) / text.length;
      });
    registerReward('test_letter_share', letters, { replace: true });
    const { steps, completions } = await twoSteps('internvl35-gspo', ['--reward_funcs', '[test_letter_share]']);
    expect(completions.length).toBe(32);
    expectGroups(completions, 16, 'test_letter_share');
    const rewards = completions.map((c) => c.rewards.test_letter_share as number);
    expect(new Set(rewards).size).toBeGreaterThan(2);
    for (const [c, text] of completions.map((c) => [c, c.completion] as const)) {
      expect(c.rewards.test_letter_share).toBeCloseTo(
        (text.match(/[A-Za-z]/g)?.length ?? 0) / Math.max(text.length, 1),
        6,
      );
    }
    expect(steps[0]?.reward).toBeCloseTo(rewards.reduce((a, b) => a + b, 0) / rewards.length, 6);
    // First mini-batch of a generation: the policy is the one that sampled, every ratio is 1, nothing clipped.
    expect(steps[0]?.['clip_ratio/region_mean']).toBe(0);
    for (const step of steps) expect(step.grad_norm as number).toBeGreaterThan(0);
  }, 120_000);

  it('skip_bad_rows: a malformed line is left out, counted in the final metrics and named on the terminal', async () => {
    makeData();
    const data = join(root, 'bad-rows');
    rmSync(data, { recursive: true, force: true });
    const lines = readFileSync(join(root, '.data', 'sft', 'train.jsonl'), 'utf8');
    const file = join(root, '.data', 'sft', 'with_bad.jsonl');
    writeFileSync(file, lines);
    appendFileSync(file, '{"messages": [oops\n');
    const recipe = readFileSync(join(recipes, 'sft.yaml'), 'utf8')
      .replace('path: .data/sft/train.jsonl', 'path: .data/sft/with_bad.jsonl')
      .replace('skip_bad_rows: false', 'skip_bad_rows: true');
    writeFileSync(join(root, 'bad.yaml'), recipe);
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      const flags = ['--max_steps', '4', '--num_train_epochs', '2', '--output_dir', data, '--save_strategy', 'no'];
      await main(['node', 'vlalign', 'train', join(root, 'bad.yaml'), ...flags]);
    } finally {
      process.stderr.write = write;
    }
    expect(process.exitCode ?? 0).toBe(0);
    const final = readMetricsLog(join(data, 'metrics.jsonl')).find((e) => 'train_runtime' in e);
    expect(final?.train_bad_rows).toBe(1);
    const lineNo = lines.split('\n').filter((l) => l !== '').length + 1;
    expect(written.join('')).toMatch(
      new RegExp(`skipped 1 bad training row; the first:\\n.*with_bad\\.jsonl:${lineNo}`),
    );
  }, 120_000);
});
