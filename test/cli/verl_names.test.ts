// A grpo recipe written with verl's names (InternVL3.5's GSPO settings) maps onto the TRL keys it
// means: prompts x rollout.n become completions, mini-batches become micro-batch x accumulation,
// loss_mode gspo becomes sequence-level ratios with per-sequence means; the rest is refused by name.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRecipe } from '../../lib/cli/recipe.js';
import { fromVerlNames } from '../../lib/cli/verl_names.js';
import type { GrpoConfig } from '../../lib/train/grpo/config.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-verl-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const recipe = (body: string): string => {
  const file = join(root, `r${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    file,
    `trainer: grpo\nmodel_name_or_path: model\ndataset: {format: verl, path: data}\noutput_dir: out\nreward_funcs: [verl_default]\n${body}`,
  );
  return file;
};

describe('verl names', () => {
  it("InternVL3.5's GSPO block (scaled down) becomes the GRPO trainer's sizes and loss", () => {
    const file = recipe(`verl:
  algorithm: {adv_estimator: grpo, norm_adv_by_std_in_grpo: true}
  data: {train_batch_size: 4, max_prompt_length: 2048, max_response_length: 64}
  actor_rollout_ref:
    rollout: {n: 4, temperature: 1.0, top_p: 1.0, top_k: -1}
    actor:
      ppo_mini_batch_size: 2
      ppo_micro_batch_size_per_gpu: 4
      ppo_epochs: 1
      clip_ratio_low: 0.2
      clip_ratio_high: 0.2
      policy_loss: {loss_mode: gspo}
      loss_agg_mode: token-mean
      use_kl_loss: false
      entropy_coeff: 0
      optim: {lr: 1.0e-6}
`);
    const args = loadRecipe(file).args as GrpoConfig;
    // 4 prompts x n 4 = 16 completions per generation; a mini-batch of 2 prompts = 8 completions =
    // micro-batch 4 x accumulation 2; so 4 micro-batches per generation, 2 optimizer steps.
    expect(args).toMatchObject({
      numGenerations: 4,
      generationBatchSize: 16,
      perDeviceTrainBatchSize: 4,
      gradientAccumulationSteps: 2,
      stepsPerGeneration: 4,
      numIterations: 1,
      importanceSamplingLevel: 'sequence',
      lossType: 'grpo', // verl's GSPO averages per sequence whatever loss_agg_mode says
      epsilon: 0.2,
      epsilonHigh: 0.2,
      beta: 0,
      scaleRewards: 'group',
      maxPromptLength: 2048,
      maxCompletionLength: 64,
      topK: 0,
      learningRate: 1e-6,
    });
  });

  it('dotted keys mean the same as nested ones; vanilla loss modes map to loss types; KL loss to beta', () => {
    const nested = fromVerlNames({ actor_rollout_ref: { actor: { loss_agg_mode: 'seq-mean-token-sum-norm' } } }, 'f');
    const dotted = fromVerlNames({ 'actor_rollout_ref.actor.loss_agg_mode': 'seq-mean-token-sum-norm' }, 'f');
    expect(nested).toEqual(dotted);
    expect(nested).toEqual({ importance_sampling_level: 'token', loss_type: 'dr_grpo' });
    expect(fromVerlNames({ actor: { loss_agg_mode: 'token-mean' } }, 'f')).toMatchObject({ loss_type: 'dapo' });
    expect(
      fromVerlNames({ actor: { use_kl_loss: true, kl_loss_coef: 0.04, kl_loss_type: 'low_var_kl' } }, 'f'),
    ).toEqual({ beta: 0.04 });
    expect(fromVerlNames({ actor: { clip_ratio: 0.28 } }, 'f')).toEqual({ epsilon: 0.28, epsilon_high: 0.28 });
  });

  it('refuses what it cannot map, naming the verl key', () => {
    expect(() => fromVerlNames({ algorithm: { adv_estimator: 'gae' } }, 'f.yaml')).toThrow(
      /verl\.algorithm\.adv_estimator.*only grpo/,
    );
    expect(() => fromVerlNames({ actor_rollout_ref: { rollout: { nn: 4 } } }, 'f.yaml')).toThrow(
      /verl\.actor_rollout_ref\.rollout\.nn.*did you mean .*rollout\.n/,
    );
    expect(() => fromVerlNames({ actor: { entropy_coeff: 0.01 } }, 'f.yaml')).toThrow(/entropy_coeff/);
    expect(() => fromVerlNames({ actor: { kl_loss_type: 'mse', use_kl_loss: true } }, 'f.yaml')).toThrow(
      /kl_loss_type/,
    );
    expect(() =>
      fromVerlNames({ data: { train_batch_size: 3 }, rollout: { n: 2 }, actor: { ppo_mini_batch_size: 2 } }, 'f'),
    ).toThrow(/train_batch_size \(3\) must be a multiple/);
    const both = recipe('num_generations: 8\nverl: {actor_rollout_ref: {rollout: {n: 4}}}\n');
    expect(() => loadRecipe(both)).toThrow(/num_generations.*both here and through the verl block/);
    const notGrpo = recipe('verl: {rollout: {n: 4}}\n').replace(/$/, '');
    writeFileSync(notGrpo, `trainer: dpo\nmodel_name_or_path: m\ndataset: {format: trl, path: d}\nverl: {}\n`);
    expect(() => loadRecipe(notGrpo)).toThrow(/trainer: grpo only/);
  });
});
