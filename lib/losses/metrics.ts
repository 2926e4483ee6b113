// TRL's logged metrics as sums and counts (TRL keeps `_metrics[mode]` and averages at log time), so
// gradient accumulation and cross-rank averaging combine them by adding both: a metric's value is
// sum / count. A compute accumulates detached per-chunk sums on the tensors' device and reads them
// all in one host sync at the end.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export interface MetricTotals {
  sums: Record<string, number>;
  counts: Record<string, number>;
}

export class MetricSums {
  readonly #pending = new Map<string, Tensor[]>();
  readonly #hostSums = new Map<string, number>();
  readonly #counts = new Map<string, number>();

  /** Adds `sum` (a tensor, summed over all its elements, or a number) and `count` to `name`. */
  add(name: string, sum: Tensor | number, count: number): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + count);
    if (typeof sum === 'number') {
      this.#hostSums.set(name, (this.#hostSums.get(name) ?? 0) + sum);
      return;
    }
    const value = torch.tidy(() => sum.detach().to({ dtype: 'float64' }).sum()).keep();
    const list = this.#pending.get(name);
    if (list) list.push(value);
    else this.#pending.set(name, [value]);
  }

  /** Every sum and count, reading the device values in one host transfer. */
  read(): MetricTotals {
    const names = [...this.#pending.keys()];
    const values = names.length ? this.#readPending(names) : [];
    const sums: Record<string, number> = Object.fromEntries(this.#hostSums);
    names.forEach((name, k) => (sums[name] = (sums[name] ?? 0) + values[k]!));
    return { sums, counts: Object.fromEntries(this.#counts) };
  }

  #readPending(names: string[]): number[] {
    return torch.tidy(() => {
      const perName = names.map((name) => torch.stack(this.#pending.get(name)!).sum());
      return Array.from(torch.stack(perName).data() as Float64Array);
    });
  }

  /** Frees the accumulated tensors. */
  dispose(): void {
    for (const list of this.#pending.values()) for (const t of list) t.dispose();
    this.#pending.clear();
  }
}

/** Adds `other`'s sums and counts into a copy of `totals` (accumulation steps, ranks). */
export function mergeMetricTotals(totals: MetricTotals, other: MetricTotals): MetricTotals {
  const add = (a: Record<string, number>, b: Record<string, number>): Record<string, number> => {
    const out = { ...a };
    for (const [key, value] of Object.entries(b)) out[key] = (out[key] ?? 0) + value;
    return out;
  };
  return { sums: add(totals.sums, other.sums), counts: add(totals.counts, other.counts) };
}

/**
 * The metrics under TRL's names: sum / count per name, plus rewards/margins = rewards/chosen -
 * rewards/rejected where both exist (the mean margin for pairs; TRL KTO's definition for unpaired rows).
 */
export function metricMeans(totals: MetricTotals): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, sum] of Object.entries(totals.sums)) out[name] = sum / (totals.counts[name] ?? Number.NaN);
  const chosen = out['rewards/chosen'];
  const rejected = out['rewards/rejected'];
  if (chosen !== undefined && rejected !== undefined && !('rewards/margins' in totals.sums)) {
    out['rewards/margins'] = chosen - rejected;
  }
  return out;
}
