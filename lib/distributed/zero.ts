// ZeRO sharding (DeepSpeed's zero_stage 1, 2 and 3) over the c10d collectives. The parameters come
// in units (a decoder layer, a vision block, the rest); each unit's parameters of one dtype are
// flattened into one buffer padded to a multiple of the world size, and rank r owns the contiguous
// slice [r*S, (r+1)*S). The optimizer (AdamW unless the caller builds another) sees only the flat
// shards, so its state is 1/N of the model's.
//   stage 1: full parameters and full gradients on every rank; reduceGradients() reduce-scatters the
//            mean gradient into the shard; step() updates the shard and all-gathers the parameters.
//   stage 2: as 1, but the full gradients are freed as soon as they are reduce-scattered.
//   stage 3: the parameters too live only as shards between steps; gatherParameters() all-gathers
//            them before forward, reduceGradients() frees them again after backward.
//            hookForward() instead gathers a block inside its own forward (blocking collectives)
//            and, with gradient checkpointing, frees it after: one block full at a time.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { invalidArgument } from '../torch/args.js';
import { type DType, ELEMENT_SIZE } from '../torch/dtype.js';
import type { Module } from '../nn/module.js';
import { ModuleList } from '../nn/container.js';
import { quantInfo } from '../quant/quantize.js';
import { AdamW, type AdamWOptions } from '../optim/adamw.js';
import type { Optimizer } from '../optim/optimizer.js';
import { allGather, allGatherSync, allReduce, broadcast, reduceScatter, reduceScatterSync } from './collectives.js';
import { requireGroup, type ProcessGroupInfo } from './process_group.js';

export type ZeroStage = 1 | 2 | 3;

export interface ZeroOptions {
  stage: ZeroStage;
  /**
   * Builds the optimizer over the flat shards, given per parameter group (`paramGroup`'s numbering;
   * a group without trainable parameters gets []). Default: AdamW with `adamw` over all shards.
   */
  optimizer?: (shardsByGroup: Tensor[][]) => Optimizer<{ lr: number }>;
  /**
   * The optimizer's parameter group of each trainable parameter (default 0): parameters of different
   * groups (weight decay on / off) never share a flat buffer.
   */
  paramGroup?: (param: Tensor) => number;
  /** AdamW's options for the default optimizer. */
  adamw?: Partial<AdamWOptions>;
  /** Copy rank 0's parameters to every rank in create() (default true). */
  broadcastParameters?: boolean;
}

/** This rank's bytes of what training keeps, by kind (element counts times element size). */
export interface ZeroBytes {
  parameters: number;
  gradients: number;
  optimizer: number;
}

/** A flat buffer's layout and this rank's tensors of it, for sharded checkpoints (zero_checkpoint.ts). */
export interface ZeroShardView {
  unit: number;
  dtype: DType;
  trainable: boolean;
  total: number;
  shardSize: number;
  shapes: number[][];
  /** The model's tensors in the buffer, in order (empty between steps at stage 3). */
  params: readonly Tensor[];
  /** This rank's slice of the flat parameters (written into in place on load). */
  shard: Tensor;
  /** The optimizer's state of the shard ({} for frozen buffers and before the first step). */
  state: Record<string, Tensor | number>;
}

/**
 * Bytes this rank has sent in ZeRO's collectives since create(), as a ring algorithm sends them:
 * (N-1)/N of the full buffer per all-gather and per reduce-scatter (Gloo's all-to-all reduce-scatter
 * sends exactly that), 2(N-1)/N of the norm's 8 bytes per clip.
 */
export interface ZeroTraffic {
  allGather: number;
  reduceScatter: number;
  allReduce: number;
}

/** One unit's parameters of one dtype (trainable or frozen), flattened and sharded. */
interface FlatBucket {
  unit: number;
  /** The optimizer's parameter group (0 for frozen buffers). */
  group: number;
  dtype: DType;
  trainable: boolean;
  params: Tensor[];
  shapes: number[][];
  offsets: number[];
  /** Elements of the parameters, without padding. */
  total: number;
  /** Elements per rank: ceil(total / worldSize). */
  shardSize: number;
  /** This rank's slice of the flat parameters (the optimizer's parameter). */
  shard: Tensor;
  /** This rank's slice of the mean gradient, summed over the reduceGradients() calls since the last step. */
  gradShard: Tensor | null;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

// Gloo (libtorch 1.13) moves no bfloat16. There a bfloat16 buffer travels as float32, which holds
// every bfloat16 exactly: an all-gather or broadcast gives the same bytes back, a reduce-scatter sums
// in float32 and rounds once. Those buffers cost twice their bytes on the wire.
const wireDtype = (dtype: DType, backend: string): DType =>
  dtype === 'bfloat16' && backend === 'gloo' ? 'float32' : dtype;

/** `run` on `t` converted to `wire`, its result converted back to t's dtype (kept: the caller disposes it). */
function onWire(t: Tensor, wire: DType, run: (sent: Tensor) => Tensor): Tensor {
  if (wire === t.dtype) return run(t).keep();
  const sent = torch.noGrad(() => t.to(wire)).keep();
  try {
    const got = run(sent);
    try {
      return torch.noGrad(() => got.to(t.dtype)).keep();
    } finally {
      got.dispose();
    }
  } finally {
    sent.dispose();
  }
}

async function onWireAsync(t: Tensor, wire: DType, run: (sent: Tensor) => Promise<Tensor>): Promise<Tensor> {
  if (wire === t.dtype) return run(t);
  const sent = torch.noGrad(() => t.to(wire));
  try {
    const got = await run(sent);
    try {
      return torch.noGrad(() => got.to(t.dtype));
    } finally {
      got.dispose();
    }
  } finally {
    sent.dispose();
  }
}

/** broadcast from rank 0 into `p` in place, through wireDtype. */
async function broadcastInto(p: Tensor, backend: string): Promise<void> {
  const wire = wireDtype(p.dtype, backend);
  if (wire === p.dtype) {
    await broadcast(p, { src: 0 });
    return;
  }
  const sent = torch.noGrad(() => p.to(wire));
  try {
    await broadcast(sent, { src: 0 });
    torch.noGrad(() => p.copy_(sent));
  } finally {
    sent.dispose();
  }
}

const OP = 'ZeroRedundancy.create';

function checkUnits(units: unknown): Tensor[][] {
  if (!Array.isArray(units) || units.length === 0)
    throw invalidArgument('units', 'a non-empty array of parameter arrays', units, OP);
  const seen = new Set<Tensor>();
  return units.map((unit, u) => {
    if (!Array.isArray(unit)) throw invalidArgument(`units[${u}]`, 'an array of Tensors', unit, OP);
    return unit.map((p, k) => {
      if (!torch.Tensor.isTensor(p)) throw invalidArgument(`units[${u}][${k}]`, 'a Tensor', p, OP);
      if (p.isDisposed) throw new Error(`${OP}: units[${u}][${k}] was disposed`);
      if (seen.has(p)) throw new Error(`${OP}: units[${u}][${k}] appears in more than one unit`);
      seen.add(p);
      return p;
    });
  });
}

function checkStage(stage: unknown): ZeroStage {
  if (stage !== 1 && stage !== 2 && stage !== 3) throw invalidArgument('options.stage', '1, 2 or 3', stage, OP);
  return stage;
}

/** Buckets of each unit: one per (dtype, trainable); stages 1 and 2 shard only trainable parameters. */
function bucketsOf(
  units: Tensor[][],
  stage: ZeroStage,
  paramGroup: (p: Tensor) => number,
  group: ProcessGroupInfo,
): FlatBucket[] {
  const buckets: FlatBucket[] = [];
  units.forEach((unit, u) => {
    const keyed = new Map<string, { optimizerGroup: number; params: Tensor[] }>();
    for (const p of unit) {
      if (!p.requiresGrad && stage < 3) continue;
      const optimizerGroup = p.requiresGrad ? paramGroup(p) : 0;
      if (!Number.isInteger(optimizerGroup) || optimizerGroup < 0)
        throw invalidArgument('options.paramGroup(param)', 'an integer >= 0', optimizerGroup, OP);
      const key = `${p.dtype}/${p.requiresGrad}/${optimizerGroup}`;
      const entry = keyed.get(key) ?? { optimizerGroup, params: [] };
      entry.params.push(p);
      keyed.set(key, entry);
    }
    for (const { optimizerGroup, params } of keyed.values()) buckets.push(flatBucket(u, optimizerGroup, params, group));
  });
  return buckets;
}

function flatBucket(unit: number, optimizerGroup: number, params: Tensor[], group: ProcessGroupInfo): FlatBucket {
  const shapes = params.map((p) => p.shape);
  const offsets: number[] = [];
  let total = 0;
  for (const shape of shapes) {
    offsets.push(total);
    total += numel(shape);
  }
  const shardSize = Math.max(1, Math.ceil(total / group.worldSize));
  const shard = torch.tidy(() => {
    const flat = padded(
      params.map((p) => p.detach().reshape([-1])),
      shardSize * group.worldSize,
    );
    const own = flat.narrow(0, group.rank * shardSize, shardSize).clone();
    return (params[0]!.requiresGrad ? own.requiresGrad_(true) : own).keep();
  });
  const { dtype, requiresGrad: trainable } = params[0]!;
  return {
    unit,
    group: optimizerGroup,
    dtype,
    trainable,
    params,
    shapes,
    offsets,
    total,
    shardSize,
    shard,
    gradShard: null,
  };
}

/** The pieces concatenated and zero-padded to `length` elements (in the current tidy scope). */
function padded(pieces: Tensor[], length: number): Tensor {
  const used = pieces.reduce((n, t) => n + t.numel(), 0);
  const { dtype, device } = pieces[0]!;
  const pad = length > used ? [torch.zeros([length - used], { dtype, device })] : [];
  return torch.cat([...pieces, ...pad]);
}

/** Every rank must pass the same units: compare unit, bucket and element counts before anything is sharded. */
async function checkSameLayout(buckets: FlatBucket[], units: number, group: ProcessGroupInfo): Promise<void> {
  const signature = [units, buckets.length, buckets.reduce((n, b) => n + b.total, 0)];
  const low = await allReduce(torch.tensor(signature, { dtype: 'float64' }), { op: 'min' });
  const high = await allReduce(torch.tensor(signature, { dtype: 'float64' }), { op: 'max' });
  const [lo, hi] = [low.toArray() as number[], high.toArray() as number[]];
  low.dispose();
  high.dispose();
  if (lo.some((v, k) => v !== hi[k])) {
    throw new Error(
      `${OP}: rank ${group.rank} has ${signature[0]} units, ${signature[1]} flat buffers and ${signature[2]} elements, ` +
        `but the ranks range over [${lo}]..[${hi}]: every rank must pass the same units`,
    );
  }
}

/**
 * A module's tensors that ZeRO shards: its parameters and the quant state of its 4-bit layers
 * (Linear4bit, or a LoRA layer over one: absmax, code tables, nested state). Those are buffers, not
 * parameters, but they belong to the packed weight: left whole, every rank would keep them all.
 */
function shardedTensorsOf(module: Module): Tensor[] {
  const tensors = module.parameters();
  for (const [, m] of module.namedModules()) {
    const info = quantInfo(m);
    if (info !== null) tensors.push(...info.buffers.values());
  }
  return tensors;
}

/** Each item of every outermost ModuleList that has tensors of its own (shardedTensorsOf), with those tensors. */
function listItems(model: Module): Array<{ module: Module; params: Tensor[] }> {
  const items: Array<{ module: Module; params: Tensor[] }> = [];
  const seen = new Set<Tensor>();
  for (const [, module] of model.namedModules()) {
    if (!(module instanceof ModuleList)) continue;
    // A nested list's tensors are already in its outer item's unit, so it adds nothing.
    for (const item of module.items as Module[]) {
      const params = shardedTensorsOf(item).filter((p) => !seen.has(p));
      params.forEach((p) => seen.add(p));
      if (params.length > 0) items.push({ module: item, params });
    }
  }
  return items;
}

/**
 * Units for a model: each item of every outermost ModuleList (decoder layers, vision blocks) is one
 * unit, in traversal order; every other parameter joins the last unit (the root). A 4-bit layer's
 * quant-state buffers join its packed weight's unit (frozen: sharded at stage 3 only).
 */
export function zeroUnits(model: Module): Tensor[][] {
  const items = listItems(model);
  const inItems = new Set(items.flatMap((i) => i.params));
  const root = shardedTensorsOf(model).filter((p) => !inItems.has(p));
  return [...items.map((i) => i.params), ...(root.length > 0 ? [root] : [])];
}

/** The modules of zeroUnits(model)'s units but the root, index for index: what hookForward takes. */
export function zeroUnitModules(model: Module): Module[] {
  return listItems(model).map((i) => i.module);
}

export class ZeroRedundancy {
  readonly stage: ZeroStage;
  readonly worldSize: number;
  readonly rank: number;
  /** The process group's backend (wireDtype). */
  readonly #backend: string;
  /** The optimizer over this rank's flat shards (its state is the shards' only). */
  readonly optimizer: Optimizer<{ lr: number }>;
  readonly #buckets: FlatBucket[];
  readonly #units: Tensor[][];
  readonly #traffic: ZeroTraffic = { allGather: 0, reduceScatter: 0, allReduce: 0 };
  /** Per unit: its parameters are full (always, in stages 1 and 2). */
  readonly #held: boolean[];
  /** Stage 3 units whose module forward gathers them (hookForward), and the forwards to restore. */
  readonly #hooks = new Map<number, { module: Module; forward: unknown }>();
  /** Units whose gradients were reduce-scattered during this backward (before reduceGradients). */
  readonly #reducedEarly = new Set<number>();
  #disposed = false;

  private constructor(
    stage: ZeroStage,
    group: ProcessGroupInfo,
    units: Tensor[][],
    buckets: FlatBucket[],
    options: ZeroOptions,
  ) {
    this.stage = stage;
    this.#units = units;
    this.#held = units.map(() => true);
    this.worldSize = group.worldSize;
    this.rank = group.rank;
    this.#backend = group.backend;
    this.#buckets = buckets;
    const trainable = buckets.filter((b) => b.trainable);
    if (trainable.length === 0) throw new Error(`${OP}: no parameter requires grad`);
    const groups = Array.from({ length: Math.max(...trainable.map((b) => b.group)) + 1 }, (_, g) =>
      trainable.filter((b) => b.group === g).map((b) => b.shard),
    );
    this.optimizer = options.optimizer
      ? options.optimizer(groups)
      : new AdamW(
          trainable.map((b) => b.shard),
          options.adamw ?? {},
        );
  }

  /**
   * Shards the units' parameters (after making rank 0's everyone's). Stage 3 then frees the full
   * parameters: call gatherParameters() before each forward.
   */
  static async create(
    group: ProcessGroupInfo,
    units: readonly (readonly Tensor[])[],
    options: ZeroOptions,
  ): Promise<ZeroRedundancy> {
    const current = requireGroup(OP);
    if (group?.rank !== current.rank || group?.worldSize !== current.worldSize)
      throw invalidArgument('group', "this process's group (getProcessGroup())", group, OP);
    if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options, OP);
    const stage = checkStage(options.stage);
    const checked = checkUnits(units);
    if (options.broadcastParameters ?? true) {
      await Promise.all(checked.flat().map((p) => broadcastInto(p, current.backend)));
    }
    if (options.paramGroup !== undefined && typeof options.paramGroup !== 'function')
      throw invalidArgument('options.paramGroup', 'a function', options.paramGroup, OP);
    const buckets = bucketsOf(checked, stage, options.paramGroup ?? (() => 0), current);
    await checkSameLayout(buckets, checked.length, current);
    const zero = new ZeroRedundancy(stage, current, checked, buckets, options);
    if (stage === 3) zero.#release();
    return zero;
  }

  /**
   * Stage 3: all-gathers the parameters of every unit not held yet into views of full buffers,
   * except units whose forward gathers them (hookForward). No-op for stages 1 and 2.
   */
  async gatherParameters(): Promise<void> {
    this.#checkAlive('gatherParameters');
    await this.#gatherUnits((u) => !this.#hooks.has(u));
  }

  /**
   * Stage 3, one unit per module (a decoder layer, a vision block): `module.forward` gathers the
   * unit synchronously just before it runs. Under no-grad (a checkpointed block's forward,
   * evaluation, generation) the unit is freed as soon as the forward returns. With grad, autograd
   * keeps the parameters for backward, so the unit stays until its gradients exist: when a later
   * block's recompute (gradient checkpointing) is gathered, the blocks whose backward is done (they
   * have gradients) are reduce-scattered and freed first; the rest in reduceGradients().
   */
  hookForward(unit: number, module: Module): void {
    this.#checkAlive('hookForward');
    if (this.stage !== 3)
      throw new Error(`ZeroRedundancy.hookForward: only stage 3 gathers per unit (stage ${this.stage})`);
    if (!Number.isInteger(unit) || unit < 0 || unit >= this.#units.length || this.#hooks.has(unit))
      throw invalidArgument('unit', `an unhooked unit index in [0, ${this.#units.length - 1}]`, unit, 'hookForward');
    const forward = (module as unknown as { forward: (...args: unknown[]) => unknown }).forward;
    this.#hooks.set(unit, { module, forward });
    const enter = (): void => this.#enterUnit(unit);
    const leave = (): void => this.#leaveUnit(unit);
    (module as unknown as { forward: unknown }).forward = function (this: Module, ...args: unknown[]) {
      enter();
      const out = forward.apply(this, args);
      if (!torch.isGradEnabled()) leave();
      return out;
    };
  }

  /** The units whose parameters are full now (diagnostics: per-unit gathering holds few). */
  heldUnits(): number[] {
    return this.#held.flatMap((h, u) => (h ? [u] : []));
  }

  /**
   * After a backward: each trainable unit's gradients are reduce-scattered (mean over ranks) and
   * added to this rank's gradient shard. Stage 2 and 3 then free the full gradients, stage 3 the
   * full parameters too. Calling it after every micro-step of an accumulation window sums them.
   */
  async reduceGradients(): Promise<void> {
    this.#checkAlive('reduceGradients');
    const trainable = this.#buckets.filter((b) => b.trainable && !this.#reducedEarly.has(b.unit));
    await Promise.all(trainable.map((b) => this.#reduceInto(b)));
    if (this.stage >= 2) for (const b of trainable) for (const p of b.params) p.grad = null;
    this.#reducedEarly.clear();
    if (this.stage === 3) this.#release();
  }

  /**
   * clip_grad_norm_ over the gradient shards: the squared norms are summed over ranks (float64), and
   * every shard is scaled by maxNorm / (norm + 1e-6) when that is below 1. Returns the total norm.
   */
  async clipGradNorm(maxNorm: number): Promise<number> {
    this.#checkAlive('clipGradNorm');
    if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: expected a positive maxNorm but received ${maxNorm}`);
    const shards = this.#buckets.flatMap((b) => (b.gradShard ? [b.gradShard] : []));
    const squares = torch.tidy(() =>
      torch
        .stack([torch.zeros([], { dtype: 'float64' }), ...shards.map((g) => g.double().square().sum())])
        .sum()
        .reshape([1])
        .keep(),
    );
    try {
      await allReduce(squares, { op: 'sum' });
      this.#traffic.allReduce += (2 * (this.worldSize - 1) * 8) / this.worldSize;
      const total = Math.sqrt(squares.item() as number);
      const coef = Math.min(1, maxNorm / (total + 1e-6));
      if (coef < 1) torch.noGrad(() => shards.forEach((g) => g.mul_(coef)));
      return total;
    } finally {
      squares.dispose();
    }
  }

  /**
   * The optimizer steps this rank's shards; stages 1 and 2 then all-gather the updated parameters
   * into the model's. The gradient shards are consumed.
   */
  async step(): Promise<void> {
    this.#checkAlive('step');
    for (const b of this.#buckets) if (b.trainable) b.shard.grad = b.gradShard;
    this.optimizer.step();
    for (const b of this.#buckets) {
      if (!b.trainable) continue;
      b.shard.grad = null;
      b.gradShard?.dispose();
      b.gradShard = null;
    }
    if (this.stage < 3) await Promise.all(this.#buckets.map((b) => this.#gatherInto(b)));
  }

  /** Frees the full gradients and the gradient shards. */
  zeroGrad(): void {
    this.#checkAlive('zeroGrad');
    for (const b of this.#buckets) {
      for (const p of b.params) p.grad = null;
      b.gradShard?.dispose();
      b.gradShard = null;
    }
  }

  /** Every flat buffer's layout, shard and optimizer state, in a fixed order (sharded checkpoints). */
  shardViews(): ZeroShardView[] {
    this.#checkAlive('shardViews');
    return this.#buckets.map((b) => ({
      unit: b.unit,
      dtype: b.dtype,
      trainable: b.trainable,
      total: b.total,
      shardSize: b.shardSize,
      shapes: b.shapes.map((s) => [...s]),
      params: [...b.params],
      shard: b.shard,
      state: { ...(this.optimizer.state.get(b.shard) ?? {}) },
    }));
  }

  /** Replaces the optimizer's state of each flat buffer's shard (order of shardViews(); {} for none). */
  restoreState(states: ReadonlyArray<Record<string, Tensor | number>>): void {
    this.#checkAlive('restoreState');
    if (states.length !== this.#buckets.length)
      throw new RangeError(`restoreState: expected ${this.#buckets.length} states but received ${states.length}`);
    this.#buckets.forEach((b, k) => {
      const old = this.optimizer.state.get(b.shard);
      for (const v of Object.values(old ?? {})) if (typeof v !== 'number') v.dispose();
      if (b.trainable && Object.keys(states[k]!).length > 0) this.optimizer.state.set(b.shard, { ...states[k]! });
      else this.optimizer.state.delete(b.shard);
    });
  }

  /** Stages 1 and 2: the model's parameters all-gathered from the shards (after the shards were replaced). */
  async syncParameters(): Promise<void> {
    this.#checkAlive('syncParameters');
    if (this.stage < 3) await Promise.all(this.#buckets.map((b) => this.#gatherInto(b)));
  }

  /** Bytes sent in ZeRO's collectives since create() (see ZeroTraffic). */
  traffic(): ZeroTraffic {
    return { ...this.#traffic };
  }

  /** The units as given to create(). */
  get units(): readonly (readonly Tensor[])[] {
    return this.#units;
  }

  /**
   * Runs `fn` while unit `unit`'s parameters are full: stage 3 all-gathers that unit alone (unless
   * everything is gathered) and frees it again after. Every rank must call it, in the same order.
   */
  async withUnitGathered<T>(unit: number, fn: () => T | Promise<T>): Promise<T> {
    this.#checkAlive('withUnitGathered');
    if (this.#held[unit]) return fn();
    await this.#gatherUnits((u) => u === unit);
    try {
      return await fn();
    } finally {
      this.#releaseUnit(unit);
    }
  }

  /**
   * Full values of some of unit `unit`'s tensors, without making the unit full: stage 3 all-gathers
   * only the flat buffers that hold them (an adapter save gathers the LoRA factors, not the frozen
   * base beside them). A tensor that is full already (stages 1 and 2, a held unit, a frozen tensor
   * that stages 1 and 2 leave whole) comes back as a detached alias. The caller disposes what it
   * gets. Every rank must call it with the same unit and tensors, in the same order.
   */
  async gatherCopies(unit: number, tensors: readonly Tensor[]): Promise<Map<Tensor, Tensor>> {
    this.#checkAlive('gatherCopies');
    if (!Number.isInteger(unit) || unit < 0 || unit >= this.#units.length)
      throw invalidArgument('unit', `a unit index in [0, ${this.#units.length - 1}]`, unit, 'gatherCopies');
    const members = new Set(this.#units[unit]);
    tensors.forEach((t, k) => {
      if (!members.has(t))
        throw new Error(`ZeroRedundancy.gatherCopies: tensors[${k}] is not one of unit ${unit}'s tensors`);
    });
    const out = new Map<Tensor, Tensor>();
    const wanted = new Set(tensors);
    const buckets = this.#buckets.filter((b) => b.unit === unit && b.params.some((p) => wanted.has(p)));
    const gather = !this.#held[unit];
    const fulls = gather ? await Promise.all(buckets.map((b) => this.#allGather(b))) : [];
    try {
      for (const t of tensors) {
        const k = buckets.findIndex((b) => b.params.includes(t));
        if (!gather || k < 0) {
          out.set(t, t.detach());
          continue;
        }
        const b = buckets[k]!;
        const at = b.params.indexOf(t);
        // A view: the gathered buffer lives until the last of its tensors is disposed.
        out.set(
          t,
          torch.tidy(() => fulls[k]!.narrow(0, b.offsets[at]!, numel(b.shapes[at]!)).view(b.shapes[at]!).keep()),
        );
      }
    } finally {
      fulls.forEach((f) => f.dispose());
    }
    for (const b of gather ? buckets : []) this.#traffic.allGather += this.#sentPerCollective(b);
    return out;
  }

  /** True while every unit's parameters are full (always for stages 1 and 2). */
  get parametersGathered(): boolean {
    return this.#held.every((h) => h);
  }

  /**
   * This rank's bytes by kind: the parameter shards plus the model's parameters while full, the full
   * gradients plus the gradient shards, and the optimizer's state tensors.
   */
  bytes(): ZeroBytes {
    const size = (t: Tensor | null): number => (t === null ? 0 : t.numel() * ELEMENT_SIZE[t.dtype]);
    let parameters = 0;
    let gradients = 0;
    for (const b of this.#buckets) {
      parameters += size(b.shard);
      if (this.#held[b.unit]) parameters += b.params.reduce((n, p) => n + size(p), 0);
      gradients += size(b.gradShard);
      for (const p of b.params) torch.tidy(() => (gradients += size(p.grad)));
    }
    let optimizer = 0;
    for (const state of this.optimizer.state.values())
      for (const v of Object.values(state)) if (typeof v !== 'number') optimizer += size(v);
    return { parameters, gradients, optimizer };
  }

  /** Stage 3 gathers the parameters back first, so the model is whole again; the shards and the optimizer's state are freed. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    await this.#gatherUnits(() => true);
    for (const { module, forward } of this.#hooks.values())
      (module as unknown as { forward: unknown }).forward = forward;
    this.#hooks.clear();
    this.zeroGrad();
    this.#disposed = true;
    this.optimizer.disposeState();
    for (const b of this.#buckets) b.shard.dispose();
  }

  async #gatherUnits(which: (unit: number) => boolean): Promise<void> {
    if (this.stage < 3) return;
    const units = this.#units.map((_, u) => u).filter((u) => !this.#held[u] && which(u));
    await Promise.all(this.#buckets.filter((b) => units.includes(b.unit)).map((b) => this.#gatherInto(b)));
    for (const u of units) this.#held[u] = true;
  }

  // A hooked unit's forward begins. With grad, a held block that already has gradients has had its
  // backward (this is a checkpointed recompute, which runs after the backward of the blocks above):
  // its gradients go to the shards and it is freed first. In forward no block has gradients yet
  // (reduceGradients frees them), whatever order the blocks run in.
  #enterUnit(unit: number): void {
    if (torch.isGradEnabled()) {
      for (const u of this.#hooks.keys())
        if (u !== unit && this.#held[u] && !this.#reducedEarly.has(u) && this.#hasGradients(u)) this.#reduceNow(u);
    }
    if (this.#held[unit]) return;
    for (const b of this.#buckets) {
      if (b.unit !== unit) continue;
      const full = onWire(b.shard, this.#wire(b), (sent) => allGatherSync(sent));
      this.#traffic.allGather += this.#sentPerCollective(b);
      this.#installViews(b, full);
    }
    this.#held[unit] = true;
  }

  #hasGradients(unit: number): boolean {
    return torch.tidy(() =>
      this.#buckets.some((b) => b.unit === unit && b.trainable && b.params.some((p) => p.grad !== null)),
    );
  }

  #leaveUnit(unit: number): void {
    if (this.#held[unit]) this.#releaseUnit(unit);
  }

  // Mid-backward, synchronously: the unit's mean gradients into its shards, then its full
  // gradients and parameters freed.
  #reduceNow(unit: number): void {
    for (const b of this.#buckets) {
      if (b.unit !== unit || !b.trainable) continue;
      const flat = this.#flatGradients(b);
      try {
        // keep(): this runs inside a backward callback's tidy scope, which must not take the shard.
        const mean = onWire(flat, this.#wire(b), (sent) => reduceScatterSync(sent, { op: 'avg' }));
        this.#traffic.reduceScatter += this.#sentPerCollective(b);
        this.#addToGradShard(b, mean);
      } finally {
        flat.dispose();
      }
      for (const p of b.params) p.grad = null;
    }
    this.#reducedEarly.add(unit);
    this.#releaseUnit(unit);
  }

  async #gatherInto(b: FlatBucket): Promise<void> {
    const full = await this.#allGather(b);
    this.#traffic.allGather += this.#sentPerCollective(b);
    this.#installViews(b, full);
  }

  // Stage 3: the parameters become views of the gathered buffer (no copy); stages 1, 2 copy into them.
  #installViews(b: FlatBucket, full: Tensor): void {
    try {
      const converted = b.params.find((p) => p.dtype !== b.dtype);
      if (converted !== undefined) {
        throw new Error(
          `ZeroRedundancy: units[${b.unit}][${this.#units[b.unit]!.indexOf(converted)}] is ${converted.dtype} now, ` +
            `but ${b.dtype} when create() flattened it: convert the model (castAdapters, to()) before ZeroRedundancy.create`,
        );
      }
      torch.noGrad(() =>
        b.params.forEach((p, k) =>
          torch.tidy(() => {
            const view = full.narrow(0, b.offsets[k]!, numel(b.shapes[k]!)).view(b.shapes[k]!);
            if (this.stage === 3) p.setData(view.keep());
            else p.copy_(view);
          }),
        ),
      );
    } finally {
      full.dispose();
    }
  }

  async #reduceInto(b: FlatBucket): Promise<void> {
    const flat = this.#flatGradients(b);
    try {
      const mean = await onWireAsync(flat, this.#wire(b), (sent) => reduceScatter(sent, { op: 'avg' }));
      this.#traffic.reduceScatter += this.#sentPerCollective(b);
      this.#addToGradShard(b, mean);
    } finally {
      flat.dispose();
    }
  }

  /** The bucket's full gradients, flat and padded (zeros for a parameter without .grad); the caller disposes it. */
  #flatGradients(b: FlatBucket): Tensor {
    return torch.tidy(() =>
      padded(
        b.params.map((p, k) => p.grad?.reshape([-1]) ?? torch.zeros([numel(b.shapes[k]!)], { dtype: b.dtype })),
        b.shardSize * this.worldSize,
      ).keep(),
    );
  }

  #addToGradShard(b: FlatBucket, mean: Tensor): void {
    // Stage 1 keeps the full gradients, which accumulate locally: each call reduces the whole sum.
    if (this.stage === 1) b.gradShard?.dispose();
    if (b.gradShard === null || this.stage === 1) b.gradShard = mean;
    else {
      torch.noGrad(() => b.gradShard!.add_(mean));
      mean.dispose();
    }
  }

  #wire(b: FlatBucket): DType {
    return wireDtype(b.dtype, this.#backend);
  }

  #allGather(b: FlatBucket): Promise<Tensor> {
    return onWireAsync(b.shard, this.#wire(b), (sent) => allGather(sent));
  }

  // (N-1) shards of the buffer leave this rank in a ring all-gather or reduce-scatter.
  #sentPerCollective(b: FlatBucket): number {
    return (this.worldSize - 1) * b.shardSize * ELEMENT_SIZE[this.#wire(b)];
  }

  /** Stage 3: the parameters become empty tensors (their values live in the shards). */
  #release(): void {
    this.#units.forEach((_, u) => this.#releaseUnit(u));
  }

  #releaseUnit(unit: number): void {
    for (const b of this.#buckets)
      if (b.unit === unit) for (const p of b.params) p.setData(torch.empty([0], { dtype: b.dtype }));
    this.#held[unit] = false;
  }

  #checkAlive(op: string): void {
    if (this.#disposed) throw new Error(`ZeroRedundancy.${op}: the ZeroRedundancy was disposed`);
  }
}
