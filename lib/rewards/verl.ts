// verl's per-sample reward form, `compute_score(data_source, solution_str, ground_truth, extra_info,
// **reward_kwargs) -> float | {score, ...}`, adapted to the batch signature, and verl's dispatch on
// `data_source` (`default_compute_score`), except that an unknown source goes to a configured
// default scorer (or scores null, "not applicable") instead of raising NotImplementedError.
import { didYouMean } from '../util/nearest.js';
import { groundTruthOf, textOf, type RewardColumns, type RewardFunction } from './types.js';

/** verl's dict return: `score` is the reward, the other keys are logged per row (`reward_extra_info`). */
export interface ScoreWithExtras {
  readonly score: number | null;
  readonly [extra: string]: unknown;
}

export type ScoreResult = number | null | ScoreWithExtras;

export type ComputeScore = (
  dataSource: string,
  solutionStr: string,
  groundTruth: unknown,
  extraInfo: Readonly<Record<string, unknown>> | undefined,
) => ScoreResult | Promise<ScoreResult>;

/**
 * A batch reward calling `computeScore` once per row with the row's `data_source` (default ''),
 * the completion text, its ground truth (`ground_truth`, `reward_model.ground_truth` or `solution`)
 * and `extra_info`. Rows run concurrently (verl allows async scorers). Dict extras go to `logExtra`.
 */
export function fromComputeScore(computeScore: ComputeScore): RewardFunction {
  return async (batch) => {
    const results = await Promise.all(
      batch.completions.map((completion, i) => {
        const row = batch.columns[i] ?? {};
        return computeScore(dataSourceOf(row), textOf(completion), groundTruthOf(row), extraInfoOf(row));
      }),
    );
    logExtras(results, batch.logExtra);
    return results.map((result) => (result !== null && typeof result === 'object' ? result.score : result));
  };
}

export interface DispatchOptions {
  /** Scorers by `data_source`. */
  readonly scorers: Readonly<Record<string, ComputeScore>>;
  /** Scores rows whose source has no scorer; absent: such rows score null (not applicable). */
  readonly fallback?: ComputeScore;
  /** Told once per unknown source (a log line), so a misspelt source does not go unnoticed. */
  readonly onUnknownSource?: (dataSource: string, message: string) => void;
}

/** verl's `default_compute_score` shape: one scorer per `data_source`, never stopping the run. */
export function dispatchOnDataSource(options: DispatchOptions): ComputeScore {
  const seen = new Set<string>();
  return (dataSource, solutionStr, groundTruth, extraInfo) => {
    const scorer = options.scorers[dataSource];
    if (scorer !== undefined) return scorer(dataSource, solutionStr, groundTruth, extraInfo);
    if (!seen.has(dataSource)) {
      seen.add(dataSource);
      const known = Object.keys(options.scorers);
      const action = options.fallback === undefined ? 'its rows score null' : 'using the fallback scorer';
      options.onUnknownSource?.(
        dataSource,
        `no reward scorer for data_source '${dataSource}'${didYouMean(dataSource, known)}; ${action} (known: ${known.join(', ')})`,
      );
    }
    return options.fallback === undefined ? null : options.fallback(dataSource, solutionStr, groundTruth, extraInfo);
  };
}

function dataSourceOf(row: RewardColumns): string {
  const source = row.data_source;
  return typeof source === 'string' ? source : '';
}

function extraInfoOf(row: RewardColumns): Readonly<Record<string, unknown>> | undefined {
  const info = row.extra_info;
  return info !== null && typeof info === 'object' && !Array.isArray(info)
    ? (info as Record<string, unknown>)
    : undefined;
}

function logExtras(results: readonly ScoreResult[], logExtra: ((key: string, values: unknown[]) => void) | undefined) {
  if (logExtra === undefined) return;
  const keys = new Set<string>();
  for (const result of results) {
    if (result !== null && typeof result === 'object') for (const key of Object.keys(result)) keys.add(key);
  }
  keys.delete('score');
  for (const key of keys) {
    logExtra(
      key,
      results.map((result) => (result !== null && typeof result === 'object' ? (result[key] ?? null) : null)),
    );
  }
}
