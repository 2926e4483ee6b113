// Optimizer and scheduler state on disk, for exact resumption: the state tensors in a safetensors
// file (`state.<parameter name>.<stat>`) with the hyper-parameters, parameter names per group, step
// counters and scheduler state as JSON in its metadata. Keyed by name, not position: the order of the
// trainable parameters may change between runs (adapters disabled), and every name is checked on load.
// Written through the shared atomic writer, like every file vlalign writes.
import { z } from 'zod';
import { parseConfig } from '../util/config_error.js';
import { parseJson } from '../util/json_file.js';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { GroupOptions, Optimizer, OptimizerState, ParamState } from './optimizer.js';
import type { LRScheduler } from './schedule.js';

const META = 'vlalign.optimizer';
const PREFIX = 'state.';

const MetaSchema = z.object({
  type: z.string(),
  paramGroups: z.array(z.object({ lr: z.number(), paramNames: z.array(z.string()) }).loose()).min(1),
  /** Parameter name → its numeric state (step counts). */
  scalars: z.record(z.string(), z.record(z.string(), z.number())),
  scheduler: z.object({ step: z.number(), baseLrs: z.array(z.number()) }).nullable(),
});
type Meta = z.output<typeof MetaSchema>;

/**
 * Writes the optimizer's state (and the scheduler's) to `file`. The optimizer must have been built
 * from named parameters (`model.namedParameters()`, a LoraModel's `trainableParameters()`).
 */
export async function saveOptimizer(
  file: string,
  optimizer: Optimizer<GroupOptions>,
  scheduler?: LRScheduler,
): Promise<void> {
  requireNames(optimizer, file);
  const { state, paramGroups } = optimizer.stateDict();
  const names = paramGroups.flatMap((g) => g.paramNames!);
  const tensors: Record<string, Tensor> = {};
  const scalars: Meta['scalars'] = {};
  for (const [index, entry] of Object.entries(state)) {
    const name = names[Number(index)]!;
    for (const [stat, value] of Object.entries(entry)) {
      if (typeof value !== 'number') tensors[`${PREFIX}${name}.${stat}`] = value;
      else scalars[name] = { ...scalars[name], [stat]: value };
    }
  }
  const groups = paramGroups.map(({ params: _ids, ...options }) => options);
  const schedulerState = scheduler?.stateDict() ?? null;
  const meta = { type: optimizer.stateType, paramGroups: groups, scalars, scheduler: schedulerState };
  await torch.saveSafetensors(file, tensors, { [META]: JSON.stringify(meta) });
}

/**
 * Restores what saveOptimizer wrote into an optimizer built from named parameters, matching state
 * by name: missing, unexpected and misshapen parameters are listed in one error naming the file.
 */
export async function loadOptimizer(
  file: string,
  optimizer: Optimizer<GroupOptions>,
  scheduler?: LRScheduler,
): Promise<void> {
  requireNames(optimizer, file);
  const meta = await readMeta(file);
  const type = optimizer.stateType;
  if (meta.type !== type) throw new Error(`${file}: holds ${meta.type} state, not ${type}`);
  const tensors = await torch.loadSafetensors(file);
  try {
    optimizer.loadStateDict(savedState(meta, tensors, file), file);
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
  if (scheduler !== undefined) {
    if (meta.scheduler === null) throw new Error(`${file}: has no scheduler state`);
    scheduler.loadStateDict(meta.scheduler);
  }
}

function requireNames(optimizer: Optimizer<GroupOptions>, file: string): void {
  if (optimizer.named) return;
  throw new TypeError(
    `${file}: optimizer files are keyed by parameter name, but this ${optimizer.constructor.name} was built from ` +
      "unnamed tensors; build it from named parameters (model.namedParameters(), a LoraModel's trainableParameters())",
  );
}

async function readMeta(file: string): Promise<Meta> {
  const header = await torch.readSafetensorsHeader(file);
  const text = header.metadata?.[META];
  if (text === undefined) throw new Error(`${file}: not an optimizer checkpoint (no '${META}' metadata)`);
  return parseConfig(MetaSchema, parseJson(text, `${file} (${META} metadata)`), `${file} (${META} metadata)`);
}

// The file's content in stateDict()'s layout: parameters numbered in the file's group order.
function savedState(meta: Meta, tensors: Record<string, Tensor>, file: string): OptimizerState {
  const names = meta.paramGroups.flatMap((g) => g.paramNames);
  const index = new Map(names.map((name, i) => [name, i]));
  const state: Record<number, ParamState> = {};
  const entry = (name: string, what: string): ParamState => {
    const i = index.get(name);
    if (i === undefined) throw new Error(`${file}: ${what} belongs to '${name}', which no parameter group lists`);
    state[i] ??= {};
    return state[i];
  };
  for (const [name, values] of Object.entries(meta.scalars)) Object.assign(entry(name, 'a step count'), values);
  for (const [key, t] of Object.entries(tensors)) {
    const dot = key.lastIndexOf('.');
    if (!key.startsWith(PREFIX) || dot <= PREFIX.length) {
      throw new Error(`${file}: tensor '${key}' is not named state.<parameter>.<stat>`);
    }
    entry(key.slice(PREFIX.length, dot), `tensor '${key}'`)[key.slice(dot + 1)] = t;
  }
  let next = 0;
  const paramGroups = meta.paramGroups.map((g) => ({ ...g, params: g.paramNames.map(() => next++) }));
  return { state, paramGroups };
}
