// The trainer's optimizer step under ZeRO (recipe key zero_stage 1 or 2, several ranks): the
// recipe's optimizer (AdamW or SGD, its parameter groups and their options) is rebuilt over this
// rank's flat shards (lib/distributed/zero.ts); the recipe's optimizer object stays what the
// scheduler drives, and its learning rates are copied onto the shards' optimizer before each step.
// Its sharded state goes to `zero-checkpoint-N/` beside `checkpoint-N/` (every rank writes its
// shard there before rank 0 writes checkpoint-N, so a complete checkpoint-N has complete shards).
import path from 'node:path';
import type { CausalLM } from '../models/index.js';
import { AdamW, SGD, type GroupOptions, type Optimizer } from '../optim/index.js';
import type { Tensor } from '../torch/index.js';
import { getProcessGroup } from '../distributed/process_group.js';
import { ZeroRedundancy, zeroUnits, type ZeroStage } from '../distributed/zero.js';
import { loadZeroCheckpoint, saveZeroCheckpoint } from '../distributed/zero_checkpoint.js';

type GroupList = Array<Record<string, unknown> & { params: Tensor[] }>;
type OptimizerClass = new (groups: GroupList, defaults?: Record<string, unknown>) => Optimizer<GroupOptions>;

export const ZERO_CHECKPOINT_PREFIX = 'zero-';

/** The sharded state of checkpoint-N's step: `<outputDir>/zero-checkpoint-N`. */
export const zeroCheckpointDir = (checkpointDir: string): string =>
  path.join(path.dirname(checkpointDir), `${ZERO_CHECKPOINT_PREFIX}${path.basename(checkpointDir)}`);

export class ZeroStep {
  private constructor(
    private readonly zero: ZeroRedundancy,
    private readonly recipeOptimizer: Optimizer<GroupOptions>,
    /** The recipe optimizer's group index of each group of the shards' optimizer. */
    private readonly groupIndex: number[],
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
    const units = zeroUnits(model)
      .map((unit) => unit.filter((p) => groupOf.has(p)))
      .filter((unit) => unit.length > 0);
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
    return new ZeroStep(zero, optimizer, groupIndex);
  }

  /** After a micro-batch's backward: stage 2 reduce-scatters every one, stage 1 the window's total at its end. */
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

  dispose(): Promise<void> {
    return this.zero.dispose();
  }
}
