// Optimizer and scheduler state on disk, for exact resumption: the state tensors in a safetensors
// file (`state.<param index>.<name>`) with the hyper-parameters, step counters and scheduler state
// as JSON in its metadata. Written atomically, like every file vlalign writes.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { GroupOptions, Optimizer, OptimizerState, ParamState } from './optimizer.js';
import type { LRScheduler, SchedulerState } from './schedule.js';

const META = 'vlalign.optimizer';

export async function saveOptimizer(file: string, optimizer: Optimizer<GroupOptions>, scheduler?: LRScheduler): Promise<void> {
  const { state, paramGroups } = optimizer.stateDict();
  const tensors: Record<string, Tensor> = {};
  const scalars: Record<string, Record<string, number>> = {};
  for (const [index, entry] of Object.entries(state)) {
    for (const [name, value] of Object.entries(entry)) {
      if (typeof value === 'number') (scalars[index] ??= {})[name] = value;
      else tensors[`state.${index}.${name}`] = value;
    }
  }
  const meta = { type: optimizer.constructor.name, paramGroups, scalars, scheduler: scheduler?.state() ?? null };
  await torch.saveSafetensors(file, tensors, { [META]: JSON.stringify(meta) });
}

/** Restores what saveOptimizer wrote into an optimizer built over the same parameters. */
export async function loadOptimizer(file: string, optimizer: Optimizer<GroupOptions>, scheduler?: LRScheduler): Promise<void> {
  const header = await torch.readSafetensorsHeader(file);
  const text = header.metadata?.[META];
  if (text === undefined) throw new Error(`${file}: not an optimizer checkpoint (no '${META}' metadata)`);
  const meta = JSON.parse(text) as { type: string; paramGroups: OptimizerState['paramGroups']; scalars: Record<string, Record<string, number>>; scheduler: SchedulerState | null };
  if (meta.type !== optimizer.constructor.name) throw new Error(`${file}: holds ${meta.type} state, not ${optimizer.constructor.name}`);
  const tensors = await torch.loadSafetensors(file);
  try {
    const state: Record<number, ParamState> = {};
    for (const [index, values] of Object.entries(meta.scalars)) state[Number(index)] = { ...values };
    for (const [key, t] of Object.entries(tensors)) {
      const [, index, name] = key.split('.') as [string, string, string];
      (state[Number(index)] ??= {})[name] = t;
    }
    optimizer.loadStateDict({ state, paramGroups: meta.paramGroups });
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
  if (scheduler !== undefined) {
    if (meta.scheduler === null) throw new Error(`${file}: has no scheduler state`);
    scheduler.loadState(meta.scheduler);
  }
}
