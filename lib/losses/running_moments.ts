// TRL's RunningMoments: a count-weighted running mean and variance (Chan et al.'s parallel update),
// the shift D of legacy bco_pair (TRL <= 0.28, InternVL MPO) and of the unpaired BCO loss. Its
// state is part of a training checkpoint: save it with stateDict and restore it with loadStateDict.
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

  stateDict(): RunningMomentsState {
    return { mean: this.mean, var: this.var, count: this.count };
  }

  /** Restores a stateDict(); every field is checked before any is set. */
  loadStateDict(state: RunningMomentsState): void {
    const keys = ['mean', 'var', 'count'] as const;
    for (const key of keys) {
      const value: unknown = (state as Partial<RunningMomentsState> | null | undefined)?.[key];
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw new TypeError(`RunningMoments.loadStateDict: state.${key} must be a finite number, got ${String(value)}`);
      }
    }
    if (!(state.count > 0)) {
      throw new RangeError(`RunningMoments.loadStateDict: state.count must be > 0, got ${state.count}`);
    }
    for (const key of keys) this[key] = state[key];
  }
}

/** A loss whose reward shift is a RunningMoments: its state travels with training checkpoints. */
export abstract class WithRunningMoments {
  readonly running = new RunningMoments();

  stateDict(): { running: RunningMomentsState } {
    return { running: this.running.stateDict() };
  }

  loadStateDict(state: { running: RunningMomentsState }): void {
    if (typeof state !== 'object' || state === null || typeof state.running !== 'object') {
      throw new TypeError(`${this.constructor.name}.loadStateDict: expected { running: { mean, var, count } }`);
    }
    this.running.loadStateDict(state.running);
  }
}
