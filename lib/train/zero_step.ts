// The trainer's optimizer step under ZeRO (recipe key zero_stage 1, 2 or 3, several ranks): the
// recipe's optimizer (AdamW or SGD, its parameter groups and their options) is rebuilt over this
// rank's flat shards (lib/distributed/zero.ts); the recipe's optimizer object stays what the
// scheduler drives, and its learning rates are copied onto the shards' optimizer before each step.
// Its sharded state goes to `zero-checkpoint-N/` beside `checkpoint-N/` (every rank writes its
// shard there before rank 0 writes checkpoint-N, so a complete checkpoint-N has complete shards).
// Stage 3 shards the parameters too (frozen ones included): every block (decoder layer, vision
// block) gathers itself inside its forward, the root unit (embeddings, final norm, LM head, the
// vision tower's patch embedding and merger) is gathered around each forward, evaluation, generation
// and save, and the model is bound to a Lockstep (models/lockstep.ts) so that ranks run the same
// blocks: the vision tower whenever any rank has images, decoding until every rank is done.
import path from 'node:path';
import { setLockstep, type CausalLM } from '../models/index.js';
import { AdamW, SGD, type GroupOptions, type Optimizer } from '../optim/index.js';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { allGatherSync } from '../distributed/collectives.js';
import { getProcessGroup } from '../distributed/process_group.js';
import { ZeroRedundancy, zeroUnitModules, zeroUnits, type ZeroBytes, type ZeroStage } from '../distributed/zero.js';
import { loadZeroCheckpoint, saveZeroConsolidated, saveZeroCheckpoint } from '../distributed/zero_checkpoint.js';
import { saveZeroAdapter } from '../distributed/zero_adapter.js';
import type { AdapterSource } from '../adapters/io.js';

type GroupList = Array<Record<string, unknown> & { params: Tensor[] }>;
type OptimizerClass = new (groups: GroupList, defaults?: Record<string, unknown>) => Optimizer<GroupOptions>;

export const ZERO_CHECKPOINT_PREFIX = 'zero-';

/** The sharded state of checkpoint-N's step: `<outputDir>/zero-checkpoint-N`. */
export const zeroCheckpointDir = (checkpointDir: string): string =>
  path.join(path.dirname(checkpointDir), `${ZERO_CHECKPOINT_PREFIX}${path.basename(checkpointDir)}`);

/**
 * Whether `local` is true on any rank, through a blocking all-gather of one byte per rank (forward
 * and decoding are synchronous; the lockstep decisions are taken inside them).
 */
export function anyRank(local: boolean): boolean {
  using flag = torch.tensor([local ? 1 : 0], { dtype: 'uint8' });
  using all = allGatherSync(flag);
  return (all.toArray() as number[]).some((v) => v !== 0);
}

export class ZeroStep {
  private constructor(
    private readonly zero: ZeroRedundancy,
    private readonly recipeOptimizer: Optimizer<GroupOptions>,
    /** The recipe optimizer's group index of each group of the shards' optimizer. */
    private readonly groupIndex: number[],
    private readonly model: CausalLM,
  ) {}

  static async create(model: CausalLM, optimizer: Optimizer<GroupOptions>, stage: ZeroStage): Promise<ZeroStep> {
    if (!(optimizer instanceof AdamW || optimizer instanceof SGD)) {
      throw new Error(
        `zero_stage ${stage}: the optimizer is ${optimizer.constructor.name}; ZeRO rebuilds AdamW or SGD over the shards`,
      );
    }
    const groupOf = new Map<Tensor, number>();
    optimizer.paramGroups.forEach((g, k) => {
      for (const p of g.params) groupOf.set(p, k);
    });
    // Stages 1 and 2 shard what the optimizer updates; stage 3 every parameter, in zeroUnits'
    // order, so that unit k is zeroUnitModules(model)[k] (hooked below) and the root comes last.
    const units =
      stage === 3
        ? zeroUnits(model)
        : zeroUnits(model)
            .map((unit) => unit.filter((p) => groupOf.has(p)))
            .filter((unit) => unit.length > 0);
    if (stage === 3) {
      const outside = units.flat().find((p) => p.requiresGrad && !groupOf.has(p));
      if (outside !== undefined) {
        const name = [...model.namedParameters()].find(([, p]) => p === outside)?.[0] ?? '?';
        throw new Error(
          `zero_stage 3: parameter ${name} requires grad but is in no optimizer group; freeze it (requiresGrad_(false)) or train it`,
        );
      }
    }
    const groupIndex: number[] = [];
    const zero = await ZeroRedundancy.create(getProcessGroup(), units, {
      stage,
      paramGroup: (p) => groupOf.get(p)!,
      optimizer: (shardsByGroup) => {
        const groups: GroupList = [];
        shardsByGroup.forEach((shards, k) => {
          if (shards.length === 0) return;
          const { params: _params, paramNames: _names, ...options } = optimizer.paramGroups[k]!;
          groups.push({ ...options, params: shards });
          groupIndex.push(k);
        });
        return new (optimizer.constructor as OptimizerClass)(groups);
      },
    });
    if (stage === 3) {
      zeroUnitModules(model).forEach((module, k) => zero.hookForward(k, module));
      setLockstep(model, { any: anyRank });
    }
    return new ZeroStep(zero, optimizer, groupIndex, model);
  }

  get stage(): ZeroStage {
    return this.zero.stage;
  }

  /** Stage 3, before a training micro-batch's forward: the root unit gathered (the blocks gather themselves). */
  beforeForward(): Promise<void> {
    return this.zero.gatherParameters();
  }

  /**
   * Runs `fn` (evaluation, generation, the reference pass) with the root unit gathered, freed after;
   * the blocks gather themselves. Every rank must call it, in the same order. Stages 1 and 2: fn().
   */
  async withRoot<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.zero.stage < 3 || this.zero.parametersGathered) return fn();
    return this.zero.withUnitGathered(this.zero.units.length - 1, fn);
  }

  /**
   * Runs `fn` with every parameter full (stage 3 all-gathers unit by unit, frees them after): the
   * checkpoint's HF model or adapter files are written from the whole model. Every rank calls it.
   */
  withAllGathered<T>(fn: () => T | Promise<T>): Promise<T> {
    const nest = async (unit: number): Promise<T> =>
      unit === this.zero.units.length ? fn() : this.zero.withUnitGathered(unit, () => nest(unit + 1));
    return nest(0);
  }

  /**
   * Stage 3's final save of a full fine-tune: the model's parameters as a Hugging Face sharded
   * checkpoint written by rank 0, one file per unit, each unit gathered alone (no rank holds the
   * whole model). The caller writes config.json. Every rank calls it.
   */
  async saveConsolidated(dir: string): Promise<void> {
    const names = new Map<Tensor, string>();
    for (const [name, p] of this.model.stateDict()) names.set(p, name);
    await saveZeroConsolidated(this.zero, dir, names);
  }

  /** Stage 3's final save of adapters: PEFT's files written by rank 0, unit by unit. Every rank calls it. */
  async saveAdapter(adapter: AdapterSource, dir: string): Promise<void> {
    await saveZeroAdapter(this.zero, adapter, dir);
  }

  /** What this rank holds (parameters, gradients, optimizer state), in bytes. */
  bytes(): ZeroBytes {
    return this.zero.bytes();
  }

  /**
   * After a micro-batch's backward: stages 2 and 3 reduce-scatter every one (stage 3 then frees the
   * full parameters), stage 1 the window's total at its end.
   */
  async afterBackward(lastOfWindow: boolean): Promise<void> {
    if (this.zero.stage >= 2 || lastOfWindow) await this.zero.reduceGradients();
  }

  /** The global gradient norm from the shards, clipped to maxNorm when maxNorm > 0. */
  clip(maxNorm: number): Promise<number> {
    return this.zero.clipGradNorm(maxNorm > 0 ? maxNorm : Number.POSITIVE_INFINITY);
  }

  /** The shards' optimizer steps with the recipe optimizer's current learning rates; the parameters are all-gathered. */
  async step(): Promise<void> {
    this.groupIndex.forEach((k, g) => {
      this.zero.optimizer.paramGroups[g]!.lr = this.recipeOptimizer.paramGroups[k]!.lr;
    });
    await this.zero.step();
  }

  zeroGrad(): void {
    this.zero.zeroGrad();
  }

  /** Every rank writes its shard beside checkpoint-N (call before rank 0 writes checkpoint-N). */
  save(checkpointDir: string): Promise<void> {
    return saveZeroCheckpoint(this.zero, zeroCheckpointDir(checkpointDir));
  }

  /** Restores the shards saved beside `checkpointDir`, at any world size. */
  load(checkpointDir: string): Promise<void> {
    return loadZeroCheckpoint(this.zero, zeroCheckpointDir(checkpointDir));
  }

  /** Stage 3 gathers the parameters back (the model is whole again) and unbinds the lockstep. */
  async dispose(): Promise<void> {
    setLockstep(this.model, null);
    await this.zero.dispose();
  }
}
