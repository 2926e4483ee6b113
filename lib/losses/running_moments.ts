// TRL's RunningMoments: a count-weighted running mean and variance (Chan et al.'s parallel update),
// the shift D of legacy bco_pair (TRL <= 0.28, InternVL MPO) and of the unpaired BCO loss. Its
// state is part of a training checkpoint: save it with toJSON and restore with fromJSON.
export interface RunningMomentsState {
  mean: number;
  var: number;
  count: number;
}

export class RunningMoments {
  mean = 0;
  var = 1;
  // TRL starts from a negligible count so the first update replaces the prior outright.
  count = 1e-24;

  /** Folds in a batch of values; `world` ranks each contributing the same mean count as world samples. */
  update(values: ArrayLike<number>, world = 1): void {
    const n = values.length;
    if (n === 0) return;
    let sum = 0;
    for (let k = 0; k < n; k++) sum += values[k]!;
    const batchMean = sum / n;
    let squares = 0;
    for (let k = 0; k < n; k++) squares += (values[k]! - batchMean) ** 2;
    const batchVar = squares / n;
    const batchCount = n * world;
    const delta = batchMean - this.mean;
    const total = this.count + batchCount;
    const oldSum = this.var * this.count + (delta * delta * this.count * batchCount) / total;
    this.var = (oldSum + batchVar * batchCount) / total;
    this.mean += (delta * batchCount) / total;
    this.count = total;
  }

  toJSON(): RunningMomentsState {
    return { mean: this.mean, var: this.var, count: this.count };
  }

  static fromJSON(state: RunningMomentsState): RunningMoments {
    const moments = new RunningMoments();
    for (const key of ['mean', 'var', 'count'] as const) {
      if (typeof state?.[key] !== 'number') throw new TypeError(`RunningMoments state: ${key} must be a number`);
      moments[key] = state[key];
    }
    return moments;
  }
}

/** A loss whose reward shift is a RunningMoments: its state travels with training checkpoints. */
export abstract class WithRunningMoments {
  readonly running = new RunningMoments();

  state(): { running: RunningMomentsState } {
    return { running: this.running.toJSON() };
  }

  loadState(state: { running: RunningMomentsState }): void {
    Object.assign(this.running, RunningMoments.fromJSON(state.running));
  }
}
