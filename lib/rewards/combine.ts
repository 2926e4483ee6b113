// Runs a step's reward functions and combines them as TRL's GRPOTrainer does:
//   rewards_per_func [B, F] (None -> NaN), rewards = nansum_f(weight_f * rewards_per_func[:, f]).
// Unlike TRL, one bad reward does not stop the run: a function that throws, or returns NaN / an
// infinity / a non-number, is reported with its name and row, counted, and that entry scores 0.
import type { NamedReward, RewardBatch, RewardValues } from './types.js';

export interface RewardFailure {
  /** The reward function's name. */
  readonly name: string;
  /** The row of `prompts` / `completions` it failed on. */
  readonly index: number;
  readonly message: string;
}

export interface ScoreRewardsOptions {
  /** Called once per failed entry as it is found (a log line); the failures are also returned. */
  onFailure?: (failure: RewardFailure) => void;
}

export interface ScoredRewards {
  /** The function names, the columns of `rewardsPerFunc`. */
  names: string[];
  /** [B][F]: NaN where a function returned null (not applicable), 0 where it failed. */
  rewardsPerFunc: number[][];
  /** [B]: nansum over functions of weight * reward (a row where every function is NaN sums to 0). */
  rewards: number[];
  failures: RewardFailure[];
  /** Failed entries per function name (only names that failed), for `rewards/<name>/failures`. */
  failureCounts: Record<string, number>;
  /** Rows where every function returned null (TRL warns about these). */
  allNullRows: number[];
}

/** Runs `funcs` concurrently on `batch` and combines them with `weights` (default all 1). */
export async function scoreRewards(
  funcs: readonly NamedReward[],
  weights: readonly number[] | undefined,
  batch: RewardBatch,
  options: ScoreRewardsOptions = {},
): Promise<ScoredRewards> {
  const size = checkBatch(batch);
  const w = checkWeights(funcs, weights);
  const failures: RewardFailure[] = [];
  const report = (failure: RewardFailure): void => {
    failures.push(failure);
    options.onFailure?.(failure);
  };
  const columns = await Promise.all(funcs.map((reward) => runReward(reward, batch, size, report)));
  const rewardsPerFunc = Array.from({ length: size }, (_, b) => columns.map((column) => column[b]!));
  const rewards = rewardsPerFunc.map((row) => row.reduce((sum, r, f) => (Number.isNaN(r) ? sum : sum + w[f]! * r), 0));
  const failureCounts: Record<string, number> = {};
  for (const failure of failures) failureCounts[failure.name] = (failureCounts[failure.name] ?? 0) + 1;
  const allNullRows = rewardsPerFunc.flatMap((row, b) => (row.length > 0 && row.every(Number.isNaN) ? [b] : []));
  return { names: funcs.map((f) => f.name), rewardsPerFunc, rewards, failures, failureCounts, allNullRows };
}

/** Each function's nanmean and Bessel-corrected nanstd (TRL's `nanstd`): `rewards/<name>/{mean,std}`, plus its failures. */
export function rewardFunctionMetrics(scored: ScoredRewards): Record<string, number> {
  const metrics: Record<string, number> = {};
  scored.names.forEach((name, f) => {
    const values = scored.rewardsPerFunc.map((row) => row[f]!).filter((v) => !Number.isNaN(v));
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1);
    metrics[`rewards/${name}/mean`] = mean;
    metrics[`rewards/${name}/std`] = Math.sqrt(variance);
    metrics[`rewards/${name}/failures`] = scored.failureCounts[name] ?? 0;
  });
  return metrics;
}

function checkBatch(batch: RewardBatch): number {
  const size = batch.completions.length;
  const lengths = { prompts: batch.prompts.length, columns: batch.columns.length };
  for (const [key, length] of Object.entries(lengths)) {
    if (length !== size) {
      throw new TypeError(`scoreRewards: expected ${size} ${key} (one per completion) but received ${length}`);
    }
  }
  if (batch.completionIds !== undefined && batch.completionIds.length !== size) {
    throw new TypeError(
      `scoreRewards: expected ${size} completionIds (one per completion) but received ${batch.completionIds.length}`,
    );
  }
  return size;
}

function checkWeights(funcs: readonly NamedReward[], weights: readonly number[] | undefined): number[] {
  if (weights === undefined) return funcs.map(() => 1);
  if (weights.length !== funcs.length) {
    throw new TypeError(
      `scoreRewards: expected ${funcs.length} reward weights (one per reward function) but received ${weights.length}`,
    );
  }
  weights.forEach((w, i) => {
    if (!Number.isFinite(w)) throw new TypeError(`scoreRewards: reward weight ${i} (${funcs[i]!.name}) is ${w}`);
  });
  return [...weights];
}

// One function's column. When the whole batch throws, each row is retried alone so that one bad row
// costs only its own entry and the report names it (the retries do not log extras).
async function runReward(
  reward: NamedReward,
  batch: RewardBatch,
  size: number,
  report: (failure: RewardFailure) => void,
): Promise<number[]> {
  let values: RewardValues;
  try {
    values = await callChecked(reward, batch, size);
  } catch (error) {
    if (size === 1) {
      report({ name: reward.name, index: 0, message: messageOf(error) });
      return [0];
    }
    return Promise.all(
      Array.from({ length: size }, async (_, i) => {
        try {
          const [value] = await callChecked(reward, rowOf(batch, i), 1);
          return sanitize(reward.name, value, i, report);
        } catch (rowError) {
          report({ name: reward.name, index: i, message: messageOf(rowError) });
          return 0;
        }
      }),
    );
  }
  return values.map((value, i) => sanitize(reward.name, value, i, report));
}

async function callChecked(reward: NamedReward, batch: RewardBatch, size: number): Promise<RewardValues> {
  const values = await reward.fn(batch);
  if (!Array.isArray(values)) throw new TypeError(`returned ${describe(values)} instead of a list of rewards`);
  if (values.length !== size) throw new TypeError(`returned ${values.length} rewards for ${size} completions`);
  return values;
}

function rowOf(batch: RewardBatch, i: number): RewardBatch {
  return {
    prompts: [batch.prompts[i]!],
    completions: [batch.completions[i]!],
    columns: [batch.columns[i]!],
    ...(batch.completionIds === undefined ? {} : { completionIds: [batch.completionIds[i]!] }),
    ...(batch.trainerState === undefined ? {} : { trainerState: batch.trainerState }),
  };
}

function sanitize(name: string, value: unknown, index: number, report: (failure: RewardFailure) => void): number {
  if (value === null) return Number.NaN;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  report({ name, index, message: `returned ${describe(value)}` });
  return 0;
}

function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (value === undefined) return 'undefined';
  return `${typeof value} ${JSON.stringify(value)?.slice(0, 60)}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `threw ${error.name}: ${error.message}` : `threw ${String(error)}`;
}
