// Learning-rate schedules as transformers' get_scheduler builds them: a multiplier of each group's
// base lr per optimizer step, with linear warmup (steps, or a ratio of the total rounded up).
import type { GroupOptions, Optimizer } from './optimizer.js';

export type ScheduleName = 'constant' | 'linear' | 'cosine';

export interface ScheduleOptions {
  name: ScheduleName;
  totalSteps: number;
  warmupSteps?: number;
  warmupRatio?: number;
  /** cosine: number of half-waves... as transformers, 0.5 = one decay from 1 to 0. */
  numCycles?: number;
}

/** The multiplier at `step` (0-based count of optimizer steps taken). */
export function lrMultiplier(o: ScheduleOptions, step: number): number {
  const warmup = warmupSteps(o);
  if (step < warmup) return step / Math.max(1, warmup);
  if (o.name === 'constant') return 1;
  const progress = (step - warmup) / Math.max(1, o.totalSteps - warmup);
  if (o.name === 'linear') return Math.max(0, (o.totalSteps - step) / Math.max(1, o.totalSteps - warmup));
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (o.numCycles ?? 0.5) * 2 * progress)));
}

export function warmupSteps(o: ScheduleOptions): number {
  if (o.warmupSteps !== undefined && o.warmupRatio !== undefined && o.warmupSteps > 0 && o.warmupRatio > 0) {
    throw new Error('schedule: give warmupSteps or warmupRatio, not both');
  }
  if (o.warmupRatio !== undefined && o.warmupRatio > 0) return Math.ceil(o.totalSteps * o.warmupRatio);
  return o.warmupSteps ?? 0;
}

export interface SchedulerState {
  step: number;
  baseLrs: number[];
}

/** Sets each group's lr to baseLr × multiplier; call step() after each optimizer.step(). */
export class LRScheduler {
  #step = 0;
  #baseLrs: number[];

  constructor(
    readonly optimizer: Optimizer<GroupOptions>,
    readonly options: ScheduleOptions,
  ) {
    if (!Number.isInteger(options.totalSteps) || options.totalSteps < 1)
      throw new RangeError(`schedule: totalSteps must be a positive integer, got ${options.totalSteps}`);
    if (!['constant', 'linear', 'cosine'].includes(options.name))
      throw new Error(`schedule: unknown name '${options.name}' (constant, linear, cosine)`);
    warmupSteps(options);
    this.#baseLrs = optimizer.paramGroups.map((g) => g.lr);
    this.#apply();
  }

  get lastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  step(): void {
    this.#step++;
    this.#apply();
  }

  stateDict(): SchedulerState {
    return { step: this.#step, baseLrs: [...this.#baseLrs] };
  }

  /** Restores a stateDict() and sets each group's lr for the restored step. */
  loadStateDict(state: SchedulerState): void {
    const groups = this.optimizer.paramGroups.length;
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new RangeError(`LRScheduler.loadStateDict: step must be an integer >= 0, got ${String(state.step)}`);
    }
    if (state.baseLrs.length !== groups) {
      throw new Error(`LRScheduler.loadStateDict: ${state.baseLrs.length} base lrs for ${groups} groups`);
    }
    this.#step = state.step;
    this.#baseLrs = [...state.baseLrs];
    this.#apply();
  }

  #apply(): void {
    const m = lrMultiplier(this.options, this.#step);
    this.optimizer.paramGroups.forEach((g, i) => (g.lr = this.#baseLrs[i]! * m));
  }
}
