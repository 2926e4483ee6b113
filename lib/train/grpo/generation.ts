// One GRPO generation: numGenerations completions per prompt from one shared prefill, scored by the
// reward functions, turned into group advantages, with the metrics TRL logs per generation. The
// result is plain data (token ids and numbers), so a checkpoint taken in the middle of a
// generation's optimizer steps can store it and a resumed run continue on the same completions.
import type { CausalLM } from '../../models/index.js';
import type { Processor } from '../../processing/index.js';
import { nonSampledTokenIds, rollout } from '../../generation/rollout.js';
import type { ChatMessage } from '../../processing/messages.js';
import {
  rewardFunctionMetrics,
  scoreRewards,
  type NamedReward,
  type RewardFailure,
  type RewardText,
} from '../../rewards/index.js';
import { groupAdvantages, nanMean, nanStd } from './advantages.js';
import type { GrpoConfig } from './config.js';
import { rolloutInputs, type EncodedPrompt } from './prompts.js';

export interface SampledCompletion {
  /** Index of its prompt in the generation. */
  prompt: number;
  tokens: number[];
  /** Per token, log softmax(logits / temperature) of the sampling policy (the old policy's log-probs). */
  logprobs: number[];
  /** Cut at maxCompletionLength without a stop token. */
  truncated: boolean;
}

export interface ScoredGeneration {
  /** Group-major: prompt p's completions at p·G .. p·G + G − 1. */
  completions: SampledCompletion[];
  advantages: number[];
  /** TRL's per-generation metrics: reward, reward_std, rewards/<f>/{mean,std}, completions/*, frac_reward_zero_std. */
  metrics: Record<string, number>;
  /** What log_completions writes, one entry per completion. */
  table: CompletionRow[];
}

export type CompletionRow = {
  prompt: string;
  completion: string;
  rewards: Record<string, number>;
  advantage: number;
};

export interface GenerationContext {
  model: CausalLM;
  processor: Processor;
  config: Pick<
    GrpoConfig,
    | 'numGenerations'
    | 'maxCompletionLength'
    | 'temperature'
    | 'topP'
    | 'topK'
    | 'scaleRewards'
    | 'multiObjectiveAggregation'
  >;
  rewards: readonly NamedReward[];
  /** One per reward; default all 1. */
  rewardWeights?: readonly number[];
  /** The trainer's counters, handed to the reward functions (TRL's trainer_state). */
  trainerState?: Record<string, unknown>;
  onRewardFailure?: (failure: RewardFailure) => void;
}

/** Where completions come from: the shared-prefill rollout, or another engine (or a test's fixed ones). */
export type Sampler = (
  ctx: GenerationContext,
  prompts: readonly EncodedPrompt[],
) => SampledCompletion[] | Promise<SampledCompletion[]>;

/** Samples, scores and ranks the completions of `prompts` (the caller keeps and disposes the prompts). */
export async function sampleAndScore(
  ctx: GenerationContext,
  prompts: readonly EncodedPrompt[],
  sampler: Sampler = sample,
): Promise<ScoredGeneration> {
  const completions = await sampler(ctx, prompts);
  return scoreGeneration(ctx, prompts, completions);
}

// The rollout runs without dropout: sampling draws from the policy itself, not a dropped-out copy.
export function sample(ctx: GenerationContext, prompts: readonly EncodedPrompt[]): SampledCompletion[] {
  const { model, processor, config } = ctx;
  const inputs = rolloutInputs(processor, prompts);
  const training = model.training;
  model.eval();
  try {
    const out = rollout(model, inputs, {
      numGenerations: config.numGenerations,
      maxNewTokens: config.maxCompletionLength,
      doSample: true,
      temperature: config.temperature,
      topP: config.topP,
      topK: config.topK,
      suppressTokenIds: nonSampledTokenIds(model, processor.tokenizer),
    });
    return out.tokens.map((tokens, r) => ({
      prompt: out.promptIndex[r]!,
      tokens,
      logprobs: out.logprobs[r]!,
      truncated: out.truncated[r]!,
    }));
  } finally {
    model.train(training);
    for (const t of [
      inputs.inputIds,
      inputs.attentionMask,
      inputs.pixelValues,
      inputs.imageGridThw,
      inputs.imageFlags,
    ]) {
      t?.dispose();
    }
  }
}

/** Rewards, advantages, metrics and the completions table for sampled completions. */
export async function scoreGeneration(
  ctx: GenerationContext,
  prompts: readonly EncodedPrompt[],
  completions: SampledCompletion[],
): Promise<ScoredGeneration> {
  const { processor, config, rewards } = ctx;
  const texts = completions.map((c) => processor.tokenizer.decode(c.tokens, { skipSpecialTokens: true }));
  const records = completions.map((c) => prompts[c.prompt]!.record);
  const scored = await scoreRewards(
    rewards,
    ctx.rewardWeights,
    {
      prompts: records.map((r) => r.prompt),
      completions: texts.map((text, i) => completionOf(records[i]!.prompt, text)),
      columns: records.map((r) => r.columns),
      completionIds: completions.map((c) => c.tokens),
      ...(ctx.trainerState === undefined ? {} : { trainerState: ctx.trainerState }),
    },
    ctx.onRewardFailure ? { onFailure: ctx.onRewardFailure } : {},
  );
  const ranked = groupAdvantages(scored.rewardsPerFunc, {
    numGenerations: config.numGenerations,
    weights: ctx.rewardWeights ?? rewards.map(() => 1),
    scaleRewards: config.scaleRewards,
    aggregation: config.multiObjectiveAggregation,
  });
  const metrics = {
    ...completionMetrics(completions),
    ...rewardFunctionMetrics(scored),
    reward: nanMean(ranked.rewards),
    reward_std: nanStd(ranked.rewards),
    frac_reward_zero_std: ranked.zeroStd.filter(Boolean).length / Math.max(ranked.zeroStd.length, 1),
  };
  const table = completions.map((_, i) => ({
    prompt: promptText(records[i]!.prompt),
    completion: texts[i]!,
    rewards: Object.fromEntries(scored.names.map((name, f) => [name, scored.rewardsPerFunc[i]![f]!])),
    advantage: ranked.advantages[i]!,
  }));
  return { completions, advantages: ranked.advantages, metrics, table };
}

// TRL's conversational completions are one assistant message; standard ones are the text.
function completionOf(prompt: ChatMessage[] | string, text: string): RewardText {
  return typeof prompt === 'string' ? text : [{ role: 'assistant', content: text }];
}

function promptText(prompt: ChatMessage[] | string): string {
  if (typeof prompt === 'string') return prompt;
  return prompt
    .map((m) =>
      typeof m.content === 'string'
        ? `${m.role}: ${m.content}`
        : `${m.role}: ${m.content.map((p) => (p.type === 'text' ? p.text : `<${p.type}>`)).join('')}`,
    )
    .join('\n');
}

// completions/{mean,min,max}_length over all, the same over those that ended with a stop token
// (_terminated_length), and the fraction cut at maxCompletionLength (clipped_ratio).
function completionMetrics(completions: readonly SampledCompletion[]): Record<string, number> {
  const lengths = completions.map((c) => c.tokens.length);
  const terminated = completions.filter((c) => !c.truncated).map((c) => c.tokens.length);
  const stats = (values: number[], suffix: string): Record<string, number> => ({
    [`completions/mean_${suffix}`]: values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0,
    [`completions/min_${suffix}`]: values.length ? Math.min(...values) : 0,
    [`completions/max_${suffix}`]: values.length ? Math.max(...values) : 0,
  });
  return {
    ...stats(lengths, 'length'),
    ...stats(terminated, 'terminated_length'),
    'completions/clipped_ratio': (lengths.length - terminated.length) / Math.max(lengths.length, 1),
  };
}
