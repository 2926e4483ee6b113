// Module: a tree of named parameters, buffers and submodules whose dotted paths are the checkpoint's
// tensor names (`model.layers.0.self_attn.q_proj.weight`), as in torch.nn.Module. Subclasses keep
// typed fields for their children and tensors; the registry here is what names, moves, loads and
// saves them. Tensors are changed in place (`setData`), so those fields never go stale.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { Device, DType } from '../torch/index.js';

interface BufferEntry {
  tensor: Tensor;
  /** Non-persistent buffers (rotary tables, masks) stay out of the state dict. */
  persistent: boolean;
}

export type StateDict = Map<string, Tensor>;

export interface LoadOptions {
  /** Missing or unexpected names are an error (default true). */
  strict?: boolean;
  /** Take the given tensors as the parameters' data instead of copying into them (saves a copy). */
  assign?: boolean;
}

export class Module {
  training = true;
  /**
   * Block stacks (decoder layers, vision blocks) recompute activations in backward while training
   * (nn.checkpointed). On by default; `gradientCheckpointing_(false)` trades memory for speed.
   */
  gradientCheckpointing = true;
  readonly #parameters = new Map<string, Tensor>();
  readonly #buffers = new Map<string, BufferEntry>();
  readonly #modules = new Map<string, Module>();

  // ---- registration (subclass constructors) -----------------------------------------------------

  protected registerParameter(name: string, tensor: Tensor): Tensor {
    this.#checkFree(name);
    if (!tensor.requiresGrad && isFloating(tensor.dtype)) tensor.requiresGrad_(true);
    this.#parameters.set(name, tensor.keep());
    return tensor;
  }

  protected registerBuffer(name: string, tensor: Tensor, persistent = true): Tensor {
    this.#checkFree(name);
    this.#buffers.set(name, { tensor: tensor.keep(), persistent });
    return tensor;
  }

  protected registerModule<M extends Module>(name: string, module: M): M {
    this.#checkFree(name);
    this.#modules.set(name, module);
    return module;
  }

  #checkFree(name: string): void {
    if (name === '' || name.includes('.')) throw new Error(`${this.constructor.name}: invalid member name '${name}'`);
    if (this.#parameters.has(name) || this.#buffers.has(name) || this.#modules.has(name)) {
      throw new Error(`${this.constructor.name}: '${name}' is already registered`);
    }
  }

  // ---- traversal --------------------------------------------------------------------------------

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this.#modules) yield* child.namedModules(join(prefix, name));
  }

  *namedChildren(): Generator<[string, Module]> {
    yield* this.#modules;
  }

  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    for (const [path, module] of this.namedModules(prefix)) {
      for (const [name, tensor] of module.#parameters) yield [join(path, name), tensor];
    }
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  *namedBuffers(prefix = '', options: { persistentOnly?: boolean } = {}): Generator<[string, Tensor]> {
    for (const [path, module] of this.namedModules(prefix)) {
      for (const [name, entry] of module.#buffers) {
        if (!options.persistentOnly || entry.persistent) yield [join(path, name), entry.tensor];
      }
    }
  }

  /** The submodule at a dotted path ('' is this module). */
  getSubmodule(path: string): Module {
    let module: Module = this;
    for (const part of path === '' ? [] : path.split('.')) {
      const child = module.#modules.get(part);
      if (child === undefined)
        throw new Error(`getSubmodule: ${this.constructor.name} has no submodule '${path}' (no '${part}')`);
      module = child;
    }
    return module;
  }

  /**
   * Puts `replacement` where the child at `path` was, and points any field of the parent that held
   * the old child at the new one (how adapters wrap a Linear inside a model).
   */
  replaceModule(path: string, replacement: Module): Module {
    const dot = path.lastIndexOf('.');
    const parent = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    const name = path.slice(dot + 1);
    const old = parent.#modules.get(name);
    if (old === undefined) throw new Error(`replaceModule: no submodule '${path}'`);
    parent.#modules.set(name, replacement);
    const fields = parent as unknown as Record<string, unknown>;
    for (const key of Object.keys(fields)) {
      if (fields[key] === old) fields[key] = replacement;
      else if (Array.isArray(fields[key])) {
        const list = fields[key] as unknown[];
        const at = list.indexOf(old);
        if (at >= 0) list[at] = replacement;
      }
    }
    return old;
  }

  // ---- modes ------------------------------------------------------------------------------------

  train(mode = true): this {
    for (const [, module] of this.namedModules()) module.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  gradientCheckpointing_(on = true): this {
    for (const [, module] of this.namedModules()) module.gradientCheckpointing = on;
    return this;
  }

  requiresGrad_(requiresGrad = true): this {
    for (const p of this.parameters()) if (isFloating(p.dtype)) p.requiresGrad_(requiresGrad);
    return this;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const p of this.parameters())
      if (!options.trainableOnly || p.requiresGrad) n += p.shape.reduce((a, b) => a * b, 1);
    return n;
  }

  /** Converts floating parameters and buffers to `dtype` and / or moves everything to `device`. */
  to(target: { dtype?: DType; device?: Device }): this {
    torch.noGrad(() => {
      for (const t of [...this.parameters(), ...[...this.namedBuffers()].map(([, b]) => b)]) {
        const dtype = target.dtype !== undefined && isFloating(t.dtype) ? target.dtype : undefined;
        if ((dtype === undefined || dtype === t.dtype) && (target.device === undefined || target.device === t.device))
          continue;
        t.setData(t.to({ dtype, device: target.device }));
      }
    });
    return this;
  }

  // ---- state ------------------------------------------------------------------------------------

  /** Parameters and persistent buffers by checkpoint name: the live tensors, not copies. */
  stateDict(): StateDict {
    return new Map([...this.namedParameters(), ...this.namedBuffers('', { persistentOnly: true })]);
  }

  /**
   * Loads tensors by name. Every shape must match; with `strict`, every name must be present and
   * known. The error lists all problems at once, naming each tensor.
   */
  loadStateDict(state: StateDict | Record<string, Tensor>, options: LoadOptions = {}): void {
    const given = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const problems = stateProblems(own, given, options.strict ?? true);
    if (problems.length > 0) throw new Error(`loadStateDict: ${this.constructor.name}:\n  ${problems.join('\n  ')}`);
    torch.noGrad(() => {
      for (const [name, src] of given) {
        const dst = own.get(name);
        if (dst === undefined) continue;
        if (options.assign)
          dst.setData(
            src.dtype === dst.dtype && src.device === dst.device
              ? src.detach()
              : src.to({ dtype: dst.dtype, device: dst.device }),
          );
        else dst.copy_(src);
      }
    });
  }

  /** Frees every parameter and buffer; the module is unusable afterwards. */
  dispose(): void {
    for (const t of this.stateDict().values()) t.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}

function stateProblems(own: StateDict, given: Map<string, Tensor>, strict: boolean): string[] {
  const problems: string[] = [];
  for (const [name, src] of given) {
    const dst = own.get(name);
    if (dst === undefined) {
      if (strict) problems.push(`unexpected tensor '${name}' ${fmt(src.shape)}`);
    } else if (!sameShape(dst.shape, src.shape)) {
      problems.push(`tensor '${name}' has shape ${fmt(src.shape)} but the model expects ${fmt(dst.shape)}`);
    }
  }
  if (strict)
    for (const [name, dst] of own) if (!given.has(name)) problems.push(`missing tensor '${name}' ${fmt(dst.shape)}`);
  return problems;
}

const join = (prefix: string, name: string): string => (prefix === '' ? name : `${prefix}.${name}`);
const fmt = (shape: number[]): string => `[${shape.join(', ')}]`;
const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

export function isFloating(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
}
