// GRPO advantages from the reward matrix, as TRL's GRPOTrainer computes them. Rows are completions,
// each prompt's G completions adjacent; columns are reward functions; NaN = not scored (a function
// returned null). With w the reward weights:
//   sum_then_normalize: R = nansum_f(w_f r_f) (NaN where every function is NaN); A = R - mean_group(R),
//     divided by std + 1e-4 unless scale_rewards is 'none' (std per group, or over the batch).
//   normalize_then_sum: each function's rewards z-scored within the group, weighted and summed, then
//     z-scored over the batch.
// Means and stds ignore NaN; std has Bessel's correction (NaN with one value). A NaN advantage (an
// unscorable completion) becomes 0: it carries no learning signal.

export type ScaleRewards = 'group' | 'batch' | 'none';
export type RewardAggregation = 'sum_then_normalize' | 'normalize_then_sum';

export interface AdvantageOptions {
  numGenerations: number;
  /** One per reward function. */
  weights: readonly number[];
  scaleRewards: ScaleRewards;
  aggregation: RewardAggregation;
}

export interface Advantages {
  /** Per completion. */
  advantages: number[];
  /** Per completion, the weighted reward sum (NaN when unscorable): what `reward` logs. */
  rewards: number[];
  /** Per completion: the std its advantage was scaled by is 0 (TRL's frac_reward_zero_std). */
  zeroStd: boolean[];
}

const EPS = 1e-4;

export function groupAdvantages(rewardsPerFunc: readonly (readonly number[])[], options: AdvantageOptions): Advantages {
  const g = options.numGenerations;
  const n = rewardsPerFunc.length;
  if (!(Number.isInteger(g) && g >= 1) || n % g !== 0) {
    throw new RangeError(`groupAdvantages: ${n} completions do not form groups of numGenerations = ${g}`);
  }
  rewardsPerFunc.forEach((row, i) => {
    if (row.length !== options.weights.length) {
      throw new RangeError(
        `groupAdvantages: completion ${i} has ${row.length} rewards for ${options.weights.length} reward weights`,
      );
    }
  });
  const unscorable = rewardsPerFunc.map((row) => row.every(Number.isNaN));
  const result =
    options.aggregation === 'sum_then_normalize'
      ? sumThenNormalize(rewardsPerFunc, unscorable, options)
      : normalizeThenSum(rewardsPerFunc, unscorable, options);
  return {
    ...result,
    advantages: result.advantages.map((a) => (Number.isNaN(a) ? 0 : a)),
    rewards: weightedSums(rewardsPerFunc, options.weights, unscorable),
  };
}

function sumThenNormalize(
  matrix: readonly (readonly number[])[],
  unscorable: boolean[],
  options: AdvantageOptions,
): Omit<Advantages, 'rewards'> {
  const g = options.numGenerations;
  const rewards = weightedSums(matrix, options.weights, unscorable);
  const groups = chunks(rewards, g);
  const means = groups.flatMap((group) => group.map(() => nanMean(group)));
  let stds: number[];
  if (options.scaleRewards === 'batch') stds = rewards.map(() => (rewards.length > 1 ? nanStd(rewards) : 0));
  else stds = groups.flatMap((group) => group.map(() => (g > 1 ? nanStd(group) : 0)));
  const advantages = rewards.map((r, i) => {
    const centred = r - means[i]!;
    return options.scaleRewards === 'none' ? centred : centred / (stds[i]! + EPS);
  });
  return { advantages, zeroStd: stds.map(isZero) };
}

function normalizeThenSum(
  matrix: readonly (readonly number[])[],
  unscorable: boolean[],
  options: AdvantageOptions,
): Omit<Advantages, 'rewards'> {
  const g = options.numGenerations;
  const columns = options.weights.map((_, f) => matrix.map((row) => row[f]!));
  const zScored = columns.map((column) =>
    chunks(column, g).flatMap((group) => {
      const [mean, std] = [nanMean(group), g > 1 ? nanStd(group) : 0];
      return group.map((r) => (r - mean) / (std + EPS));
    }),
  );
  const rewards = matrix.map((_, i) =>
    unscorable[i] ? Number.NaN : nanSum(options.weights.map((w, f) => w * zScored[f]![i]!)),
  );
  const std = rewards.length > 1 ? nanStd(rewards) : 0;
  const mean = nanMean(rewards);
  return { advantages: rewards.map((r) => (r - mean) / (std + EPS)), zeroStd: rewards.map(() => isZero(std)) };
}

function weightedSums(
  matrix: readonly (readonly number[])[],
  weights: readonly number[],
  unscorable: boolean[],
): number[] {
  return matrix.map((row, i) => (unscorable[i] ? Number.NaN : nanSum(row.map((r, f) => weights[f]! * r))));
}

function chunks(values: number[], size: number): number[][] {
  return Array.from({ length: values.length / size }, (_, k) => values.slice(k * size, (k + 1) * size));
}

function nanSum(values: readonly number[]): number {
  return values.reduce((s, v) => (Number.isNaN(v) ? s : s + v), 0);
}

/** Mean of the non-NaN values (NaN when there is none). */
export function nanMean(values: readonly number[]): number {
  const kept = values.filter((v) => !Number.isNaN(v));
  return kept.length === 0 ? Number.NaN : nanSum(kept) / kept.length;
}

/** Bessel-corrected std of the non-NaN values (NaN with fewer than two). */
export function nanStd(values: readonly number[]): number {
  const kept = values.filter((v) => !Number.isNaN(v));
  if (kept.length < 2) return Number.NaN;
  const mean = nanSum(kept) / kept.length;
  return Math.sqrt(kept.reduce((s, v) => s + (v - mean) ** 2, 0) / (kept.length - 1));
}

// torch.isclose(std, 0) with its default tolerances: |std| <= 1e-8 (NaN is not close).
function isZero(std: number): boolean {
  return Math.abs(std) <= 1e-8;
}
