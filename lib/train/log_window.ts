// The metrics of one logging window (TRL's `_metrics[mode]`): per optimizer step, the accumulated
// batch's loss and the losses' metric sums and counts, averaged and cleared at log time. Its state
// is saved in checkpoints, so a run resumed between two log steps logs what the straight run logs.
import { mergeMetricTotals, metricMeans, type MetricTotals } from '../losses/index.js';

export interface LogWindowState {
  steps: number;
  lossSum: number;
  totals: MetricTotals;
}

export class LogWindow {
  #state: LogWindowState = empty();

  /** One optimizer step: its loss (the sum of the micro-batch losses) and the merged metric totals. */
  add(loss: number, totals: MetricTotals): void {
    const s = this.#state;
    this.#state = { steps: s.steps + 1, lossSum: s.lossSum + loss, totals: mergeMetricTotals(s.totals, totals) };
  }

  get steps(): number {
    return this.#state.steps;
  }

  /** `loss` (mean over the window's steps) and each metric's mean; clears the window. */
  flush(): Record<string, number> {
    const { steps, lossSum, totals } = this.#state;
    this.#state = empty();
    if (steps === 0) return {};
    return { loss: lossSum / steps, ...metricMeans(totals) };
  }

  stateDict(): LogWindowState {
    return structuredClone(this.#state);
  }

  loadStateDict(state: LogWindowState): void {
    if (!Number.isInteger(state?.steps) || typeof state.lossSum !== 'number' || typeof state.totals !== 'object') {
      throw new TypeError('LogWindow.loadStateDict: expected { steps, lossSum, totals: { sums, counts } }');
    }
    this.#state = structuredClone(state);
  }
}

const empty = (): LogWindowState => ({ steps: 0, lossSum: 0, totals: { sums: {}, counts: {} } });

/** Totals without the losses' own `loss` entry (the loop logs the accumulated batch's loss itself). */
export function withoutLoss(totals: MetricTotals): MetricTotals {
  const { loss: _s, ...sums } = totals.sums;
  const { loss: _c, ...counts } = totals.counts;
  return { sums, counts };
}
