// In-loop validation of an online run, as verl reports it: N completions per validation prompt,
// scored with the training rewards, then per prompt the mean (mean@N), the best (best@N) and the
// majority vote (maj@N: the reward of the answer most completions agree on) of the weighted reward,
// averaged over prompts, overall and per data_source. The answer a completion votes for is its last
// \boxed{...}, else its last <answer>...</answer>, else its whole text, trimmed.
import type { MetricTotals } from '../../losses/index.js';
import { type GenerationContext, sampleAndScore, type Sampler } from './generation.js';
import type { EncodedPrompt } from './prompts.js';

/** Sums and counts (per prompt) of the validation metrics for `prompts`; the trainer averages and prefixes them. */
export async function validationTotals(
  ctx: GenerationContext,
  prompts: readonly EncodedPrompt[],
  sampler?: Sampler,
): Promise<MetricTotals> {
  const n = ctx.config.numGenerations;
  const scored = await sampleAndScore(ctx, prompts, sampler);
  const sums: Record<string, number> = {};
  const counts: Record<string, number> = {};
  const add = (name: string, value: number) => {
    if (Number.isNaN(value)) return;
    sums[name] = (sums[name] ?? 0) + value;
    counts[name] = (counts[name] ?? 0) + 1;
  };
  prompts.forEach((prompt, p) => {
    const rows = scored.table.slice(p * n, (p + 1) * n);
    const rewards = rows.map((row) => weighted(row.rewards, ctx));
    const stats = {
      [`mean@${n}`]: rewards.reduce((a, b) => a + b, 0) / n,
      [`best@${n}`]: Math.max(...rewards),
      [`maj@${n}`]: majorityReward(
        rows.map((row) => answerOf(row.completion)),
        rewards,
      ),
    };
    const source = prompt.record.columns.data_source;
    for (const [stat, value] of Object.entries(stats)) {
      add(`reward/${stat}`, value);
      if (typeof source === 'string') add(`reward/${source}/${stat}`, value);
    }
  });
  return { sums, counts };
}

function weighted(rewards: Record<string, number>, ctx: GenerationContext): number {
  const names = ctx.rewards.map((r) => r.name);
  return names.reduce((sum, name, f) => {
    const r = rewards[name] ?? Number.NaN;
    return Number.isNaN(r) ? sum : sum + (ctx.rewardWeights?.[f] ?? 1) * r;
  }, 0);
}

/** The answer a completion votes for (see the file comment). */
export function answerOf(completion: string): string {
  const boxed = lastBoxed(completion);
  if (boxed !== null) return boxed.trim();
  const tagged = [...completion.matchAll(/<answer>([\s\S]*?)<\/answer>/g)].at(-1);
  return (tagged?.[1] ?? completion).trim();
}

// The content of the last \boxed{...}, braces balanced.
function lastBoxed(text: string): string | null {
  const start = text.lastIndexOf('\\boxed{');
  if (start < 0) return null;
  let depth = 0;
  for (let i = start + '\\boxed'.length; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(start + '\\boxed{'.length, i);
  }
  return null;
}

// The reward of the most frequent answer (ties: the one seen first), from its first completion.
function majorityReward(answers: string[], rewards: number[]): number {
  const votes = new Map<string, number>();
  for (const a of answers) votes.set(a, (votes.get(a) ?? 0) + 1);
  let best = answers[0]!;
  for (const a of answers) if (votes.get(a)! > votes.get(best)!) best = a;
  return rewards[answers.indexOf(best)]!;
}
