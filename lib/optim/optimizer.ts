// The optimizer base: parameter groups with their own hyper-parameters and per-parameter state,
// saved and restored in PyTorch's layout (parameters numbered in group order). Built from named
// parameters (`model.namedParameters()`, as PyTorch >= 2.6 accepts), each group also records the
// names, and state is restored by name: a resumed run whose trainable parameters come in another
// order (adapters disabled, modules reordered) still gives each parameter its own moments.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export interface GroupOptions {
  lr: number;
}
export type NamedParameter = readonly [string, Tensor];
export type ParamList = Iterable<Tensor> | Iterable<NamedParameter>;
export type ParamGroup<O extends GroupOptions> = O & { params: Tensor[]; paramNames?: string[] };
export type ParamsArg<O extends GroupOptions> = ParamList | Array<Partial<O> & { params: ParamList }>;
export type ParamState = Record<string, Tensor | number>;

export interface OptimizerState<O extends GroupOptions = GroupOptions> {
  /** Per parameter index (PyTorch numbering across groups): its tensors and counters. */
  state: Record<number, ParamState>;
  /** Each group's options and parameter indices; `paramNames` when built from named parameters. */
  paramGroups: Array<O & { params: number[]; paramNames?: string[] }>;
}

/** Saved state entries paired with their parameters ([parameter, entry, label]) and what did not fit. */
interface Matched {
  pairs: Array<[Tensor, ParamState, string]>;
  problems: string[];
}

export abstract class Optimizer<O extends GroupOptions> {
  readonly paramGroups: Array<ParamGroup<O>>;
  readonly state = new Map<Tensor, ParamState>();

  constructor(
    params: ParamsArg<O>,
    readonly defaults: O,
  ) {
    const list = [...(params as Iterable<unknown>)];
    const isGroup = list.length > 0 && !isTensorLike(list[0]) && !Array.isArray(list[0]);
    const groups = isGroup ? (list as Array<Partial<O> & { params: ParamList }>) : [{ params: list as Tensor[] }];
    this.paramGroups = groups.map((g, i) => this.#group(g as Partial<O> & { params: ParamList }, i));
    this.#checkDistinct();
  }

  #group(group: Partial<O> & { params: ParamList }, index: number): ParamGroup<O> {
    const entries = [...(group.params as Iterable<Tensor | NamedParameter>)];
    const where = `${this.constructor.name}: parameter group ${index}`;
    if (entries.length === 0) throw new Error(`${where} is empty`);
    const named = entries.filter(isNamed).length;
    if (named !== 0 && named !== entries.length) throw new TypeError(`${where} mixes named and unnamed parameters`);
    const params = entries.map((e) => (isNamed(e) ? e[1] : e));
    const merged = { ...this.defaults, ...group, params } as ParamGroup<O>;
    if (named > 0) merged.paramNames = entries.map((e) => (e as NamedParameter)[0]);
    else delete merged.paramNames;
    this.validate(merged, `parameter group ${index}`);
    return merged;
  }

  #checkDistinct(): void {
    const seen = new Set<Tensor>();
    for (const p of this.paramGroups.flatMap((g) => g.params)) {
      if (seen.has(p)) throw new Error(`${this.constructor.name}: a parameter appears in more than one group`);
      seen.add(p);
    }
    const named = this.paramGroups.filter((g) => g.paramNames !== undefined).length;
    if (named !== 0 && named !== this.paramGroups.length) {
      throw new TypeError(`${this.constructor.name}: either every parameter group names its parameters or none does`);
    }
    const names = new Set<string>();
    for (const name of this.paramGroups.flatMap((g) => g.paramNames ?? [])) {
      if (names.has(name)) throw new Error(`${this.constructor.name}: parameter name '${name}' appears twice`);
      names.add(name);
    }
  }

  /** True when built from named parameters: state files are then keyed and checked by name. */
  get named(): boolean {
    return this.paramGroups[0]!.paramNames !== undefined;
  }

  /** What an optimizer file says it holds; a file loads only into an optimizer of the same type. */
  get stateType(): string {
    return this.constructor.name;
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
      const { params, paramNames, ...options } = group;
      const ids = params.map((p) => {
        const s = this.state.get(p);
        if (s !== undefined) state[index] = s;
        return index++;
      });
      const names = paramNames === undefined ? {} : { paramNames: [...paramNames] };
      return { ...(options as unknown as O), params: ids, ...names };
    });
    return { state, paramGroups };
  }

  /**
   * Restores state saved by stateDict(); tensors are copied (the given ones stay the caller's). With
   * names on both sides, state follows the names; otherwise the position. Every missing, unexpected
   * or misshapen entry is listed in one error naming `source`, and then nothing has changed.
   */
  loadStateDict(saved: OptimizerState<O>, source = `${this.constructor.name}.loadStateDict`): void {
    const { pairs, problems } = this.#match(saved);
    for (const [param, entry, name] of pairs) problems.push(...shapeProblems(entry, param, name));
    if (problems.length > 0) {
      throw new Error(`${source}: the saved state does not fit this optimizer:\n  ${problems.join('\n  ')}`);
    }
    saved.paramGroups.forEach((g, i) => {
      const { params: _ids, paramNames: _names, ...options } = g;
      Object.assign(this.paramGroups[i]!, options);
    });
    this.disposeState();
    for (const [param, entry] of pairs) this.state.set(param, copyState(entry, param));
  }

  // Pairs each saved state entry with its parameter: [parameter, entry, label for messages].
  #match(saved: OptimizerState<O>): Matched {
    const [given, own] = [saved.paramGroups.length, this.paramGroups.length];
    if (given !== own) return { pairs: [], problems: [`${given} saved parameter groups but the optimizer has ${own}`] };
    const byName = this.named && saved.paramGroups.every((g) => g.paramNames !== undefined);
    return byName ? this.#matchNames(saved) : this.#matchPositions(saved);
  }

  #matchNames(saved: OptimizerState<O>): Matched {
    const savedAt = new Map<string, { id: number; group: number }>();
    saved.paramGroups.forEach((g, group) => {
      g.paramNames!.forEach((name, k) => savedAt.set(name, { id: g.params[k]!, group }));
    });
    const pairs: Array<[Tensor, ParamState, string]> = [];
    const problems: string[] = [];
    this.paramGroups.forEach((g, group) =>
      g.params.forEach((param, k) => {
        const name = g.paramNames![k]!;
        const at = savedAt.get(name);
        savedAt.delete(name);
        if (at === undefined) problems.push(`missing parameter '${name}' ${fmt(param.shape)}`);
        else if (at.group !== group) problems.push(`parameter '${name}' is in group ${group}, saved in ${at.group}`);
        else if (saved.state[at.id] !== undefined) pairs.push([param, saved.state[at.id]!, `'${name}'`]);
      }),
    );
    for (const name of savedAt.keys()) problems.push(`unexpected parameter '${name}'`);
    return { pairs, problems };
  }

  #matchPositions(saved: OptimizerState<O>): Matched {
    const problems: string[] = [];
    saved.paramGroups.forEach((g, i) => {
      const count = this.paramGroups[i]!.params.length;
      if (g.params.length !== count) problems.push(`group ${i} saved ${g.params.length} parameters but has ${count}`);
    });
    const params = this.paramGroups.flatMap((g) => g.params);
    const pairs: Array<[Tensor, ParamState, string]> = [];
    for (const [key, entry] of Object.entries(saved.state)) {
      const param = params[Number(key)];
      if (param === undefined) problems.push(`state for parameter ${key}, which does not exist`);
      else pairs.push([param, entry, key]);
    }
    return { pairs, problems };
  }

  /** Frees the optimizer's state tensors (moments etc.). */
  disposeState(): void {
    for (const s of this.state.values()) for (const v of Object.values(s)) if (typeof v !== 'number') v.dispose();
    this.state.clear();
  }
}

// 0-d tensors are per-parameter scalars (a step count kept as a tensor); others have the parameter's shape.
function shapeProblems(entry: ParamState, param: Tensor, label: string): string[] {
  return Object.entries(entry)
    .filter(([, v]) => typeof v !== 'number' && v.shape.length > 0 && v.shape.join() !== param.shape.join())
    .map(([k, v]) => `parameter ${label} ${fmt(param.shape)}: state '${k}' has shape ${fmt((v as Tensor).shape)}`);
}

function copyState(entry: ParamState, param: Tensor): ParamState {
  const out: ParamState = {};
  for (const [k, v] of Object.entries(entry)) {
    out[k] = typeof v === 'number' ? v : torch.noGrad(() => v.to({ device: param.device, copy: true })).keep();
  }
  return out;
}

const fmt = (shape: number[]): string => `[${shape.join(', ')}]`;
const isTensorLike = (v: unknown): boolean => typeof v === 'object' && v !== null && 'handle' in v && 'scope' in v;
const isNamed = (v: unknown): v is NamedParameter =>
  Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && isTensorLike(v[1]);

export function checkOption(
  value: unknown,
  name: string,
  where: string,
  ok: (v: number) => boolean,
  expected: string,
): void {
  if (typeof value !== 'number' || !ok(value)) {
    throw new RangeError(`${where}: expected ${expected} for ${name} but received ${String(value)}`);
  }
}
