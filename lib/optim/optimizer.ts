// The optimizer base: parameter groups with their own hyper-parameters and per-parameter state,
// saved and restored in PyTorch's layout (parameters numbered in group order), so training resumes
// exactly from a checkpoint.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export interface GroupOptions { lr: number }
export type ParamGroup<O extends GroupOptions> = O & { params: Tensor[] };
export type ParamsArg<O extends GroupOptions> = Iterable<Tensor> | Array<Partial<O> & { params: Iterable<Tensor> }>;
export type ParamState = Record<string, Tensor | number>;

export interface OptimizerState<O extends GroupOptions = GroupOptions> {
  /** Per parameter index (PyTorch numbering across groups): its tensors and counters. */
  state: Record<number, ParamState>;
  paramGroups: Array<O & { params: number[] }>;
}

export abstract class Optimizer<O extends GroupOptions> {
  readonly paramGroups: Array<ParamGroup<O>>;
  readonly state = new Map<Tensor, ParamState>();

  constructor(params: ParamsArg<O>, readonly defaults: O) {
    const list = [...(params as Iterable<unknown>)];
    const groups = list.length > 0 && !isTensorLike(list[0]) ? (list as Array<Partial<O> & { params: Iterable<Tensor> }>) : [{ params: list as Tensor[] }];
    this.paramGroups = groups.map((g, i) => this.#group(g as Partial<O> & { params: Iterable<Tensor> }, i));
    const seen = new Set<Tensor>();
    for (const p of this.paramGroups.flatMap((g) => g.params)) {
      if (seen.has(p)) throw new Error(`${this.constructor.name}: a parameter appears in more than one group`);
      seen.add(p);
    }
  }

  #group(group: Partial<O> & { params: Iterable<Tensor> }, index: number): ParamGroup<O> {
    const params = [...group.params];
    if (params.length === 0) throw new Error(`${this.constructor.name}: parameter group ${index} is empty`);
    const merged = { ...this.defaults, ...group, params } as ParamGroup<O>;
    this.validate(merged, `parameter group ${index}`);
    return merged;
  }

  /** Checks a group's hyper-parameters; the message names the group and the option. */
  protected abstract validate(group: O, where: string): void;

  /** Applies one update from the parameters' current gradients. */
  abstract step(): void;

  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.grad = null;
  }

  stateDict(): OptimizerState<O> {
    const state: Record<number, ParamState> = {};
    let index = 0;
    const paramGroups = this.paramGroups.map((group) => {
      const { params, ...options } = group;
      const ids = params.map((p) => {
        const s = this.state.get(p);
        if (s !== undefined) state[index] = s;
        return index++;
      });
      return { ...(options as unknown as O), params: ids };
    });
    return { state, paramGroups };
  }

  /** Restores state saved by stateDict(); tensors are copied (the given ones stay the caller's). */
  loadStateDict(saved: OptimizerState<O>): void {
    if (saved.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`${this.constructor.name}.loadStateDict: ${saved.paramGroups.length} saved groups but the optimizer has ${this.paramGroups.length}`);
    }
    const params = this.paramGroups.flatMap((g) => g.params);
    saved.paramGroups.forEach((g, i) => {
      const own = this.paramGroups[i]!;
      if (g.params.length !== own.params.length) {
        throw new Error(`${this.constructor.name}.loadStateDict: group ${i} saved ${g.params.length} parameters but has ${own.params.length}`);
      }
      const { params: _ids, ...options } = g;
      Object.assign(own, options);
    });
    this.disposeState();
    for (const [key, entry] of Object.entries(saved.state)) {
      const param = params[Number(key)];
      if (param === undefined) throw new Error(`${this.constructor.name}.loadStateDict: state for parameter ${key}, which does not exist`);
      this.state.set(param, copyState(entry, param));
    }
  }

  /** Frees the optimizer's state tensors (moments etc.). */
  disposeState(): void {
    for (const s of this.state.values()) for (const v of Object.values(s)) if (typeof v !== 'number') v.dispose();
    this.state.clear();
  }
}

function copyState(entry: ParamState, param: Tensor): ParamState {
  const out: ParamState = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v === 'number') out[k] = v;
    else {
      if (v.shape.join() !== param.shape.join() && v.shape.length > 0) {
        throw new Error(`optimizer state '${k}' has shape [${v.shape}] but its parameter has [${param.shape}]`);
      }
      out[k] = torch.noGrad(() => v.to({ device: param.device, copy: true })).keep();
    }
  }
  return out;
}

const isTensorLike = (v: unknown): boolean => typeof v === 'object' && v !== null && 'handle' in v && 'scope' in v;

export function checkOption(value: unknown, name: string, where: string, ok: (v: number) => boolean, expected: string): void {
  if (typeof value !== 'number' || !ok(value)) throw new RangeError(`${where}: expected ${expected} for ${name} but received ${String(value)}`);
}
