// Data-parallel training (docs/training.md, "Distributed training"): the trainer's view of the job.
// A run launched with WORLD_SIZE > 1 (torchrun, `vlalign launch`, srun) joins the c10d group over
// Gloo, reads its shard of every epoch, sums the window's loss divisors and metrics across ranks,
// and has its gradients averaged by DataParallel (lib/distributed/ddp.ts). Alone (no launcher, or
// WORLD_SIZE 1) every collective here is the identity, so the loop has one code path.
import type { Tensor } from '../torch/index.js';
import * as torch from '../torch/index.js';
import type { LossNormalisers, MetricTotals } from '../losses/index.js';
import { readLaunchEnv } from '../distributed/env.js';
import { destroyProcessGroup, getProcessGroup, initProcessGroup, isInitialized } from '../distributed/process_group.js';
import { allGather, allReduce, barrier } from '../distributed/collectives.js';
import { DataParallel } from '../distributed/ddp.js';

/** Where this process sits: rank among worldSize. */
export interface RankPlace {
  rank: number;
  worldSize: number;
}

/** The live group's place, else the launcher's environment's, else rank 0 of 1. */
export function rankPlace(): RankPlace {
  if (isInitialized()) {
    const { rank, worldSize } = getProcessGroup();
    return { rank, worldSize };
  }
  const launched = readLaunchEnv();
  return launched === null ? { rank: 0, worldSize: 1 } : { rank: launched.rank, worldSize: launched.worldSize };
}

/** The gradient averaging of one run: arm it with the loss before the backward of each window's last micro-batch. */
export interface GradientSync {
  beforeLastBackward(loss: Tensor): void;
  dispose(): void;
}

/**
 * One training run's group: joins c10d when the launcher asked for several processes and none is
 * open yet (and leaves it at the end), or uses the group the caller opened (and leaves it open).
 */
export class TrainingGroup {
  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly owned: boolean,
  ) {}

  static alone(): TrainingGroup {
    return new TrainingGroup(0, 1, false);
  }

  static async join(): Promise<TrainingGroup> {
    if (isInitialized()) {
      const { rank, worldSize } = getProcessGroup();
      return new TrainingGroup(rank, worldSize, false);
    }
    const place = rankPlace();
    if (place.worldSize === 1) return TrainingGroup.alone();
    const info = await initProcessGroup({ backend: 'gloo' });
    return new TrainingGroup(info.rank, info.worldSize, true);
  }

  get distributed(): boolean {
    return this.worldSize > 1;
  }

  /** Rank 0 writes the logs, checkpoints and the final save. */
  get isMain(): boolean {
    return this.rank === 0;
  }

  /** Each value summed over the ranks (float64, so integer counts stay exact). */
  async sum(values: readonly number[]): Promise<number[]> {
    if (!this.distributed || values.length === 0) return [...values];
    using t = torch.tensor(Float64Array.from(values), { dtype: 'float64' });
    await allReduce(t, { op: 'sum' });
    return Array.from(t.data() as Float64Array);
  }

  /** Every rank's values, in rank order (the lists may differ in length). */
  async gather(values: readonly number[]): Promise<number[][]> {
    if (!this.distributed) return [[...values]];
    // Lengths first, then every list padded to the longest.
    const lengths = await this.gatherPadded([values.length], 1);
    const longest = Math.max(...lengths.map((l) => l[0]!));
    const rows = await this.gatherPadded(values, longest);
    return rows.map((row, r) => row.slice(0, lengths[r]![0]));
  }

  private async gatherPadded(values: readonly number[], width: number): Promise<number[][]> {
    const padded = new Float64Array(Math.max(width, 1));
    padded.set(values);
    using t = torch.tensor(padded, { dtype: 'float64' });
    using all = await allGather(t);
    const flat = Array.from(all.data() as Float64Array);
    return Array.from({ length: this.worldSize }, (_, r) => flat.slice(r * padded.length, (r + 1) * padded.length));
  }

  /** Every rank's text, in rank order (UTF-8 bytes through allGather). */
  async gatherText(text: string): Promise<string[]> {
    if (!this.distributed) return [text];
    const rows = await this.gather([...new TextEncoder().encode(text)]);
    return rows.map((bytes) => new TextDecoder().decode(Uint8Array.from(bytes)));
  }

  async barrier(): Promise<void> {
    if (this.distributed) await barrier();
  }

  /**
   * Averages the trainable parameters' gradients over the ranks (DDP), after broadcasting rank 0's
   * parameters; null alone.
   */
  async gradientSync(params: readonly Tensor[], findUnused = true): Promise<GradientSync | null> {
    return this.distributed ? dataParallel(params, findUnused) : null;
  }

  /** Leaves the c10d group if this run joined it. */
  leave(): void {
    if (this.owned && isInitialized()) destroyProcessGroup();
  }
}

/** The window's divisors summed over the ranks: every rank's loss is then its share of the global window's. */
export async function globalNormalisers(group: TrainingGroup, local: LossNormalisers): Promise<LossNormalisers> {
  const keys = Object.keys(local).sort() as Array<keyof LossNormalisers>;
  await checkSameKeys(group, keys, 'loss divisors');
  const sums = await group.sum(keys.map((k) => local[k] ?? 0));
  return Object.fromEntries(keys.map((k, i) => [k, sums[i]])) as LossNormalisers;
}

/** One optimizer step's numbers on this rank: its share of the loss, its tokens, its metric totals. */
export interface StepNumbers {
  loss: number;
  tokens: number;
  totals: MetricTotals;
}

/**
 * The step's numbers over all ranks (TRL's gather_for_metrics, then the mean): loss shares and
 * tokens summed, metric sums and counts summed, so each metric's mean is over every rank's rows.
 */
export async function globalStepNumbers(group: TrainingGroup, local: StepNumbers): Promise<StepNumbers> {
  if (!group.distributed) return local;
  const keys = [...new Set([...Object.keys(local.totals.sums), ...Object.keys(local.totals.counts)])].sort();
  await checkSameKeys(group, keys, 'metrics');
  const values = [
    local.loss,
    local.tokens,
    ...keys.map((k) => local.totals.sums[k] ?? 0),
    ...keys.map((k) => local.totals.counts[k] ?? 0),
  ];
  const summed = await group.sum(values);
  const n = keys.length;
  return {
    loss: summed[0]!,
    tokens: summed[1]!,
    totals: {
      sums: Object.fromEntries(keys.map((k, i) => [k, summed[2 + i]!])),
      counts: Object.fromEntries(keys.map((k, i) => [k, summed[2 + n + i]!])),
    },
  };
}

// Collectives of different lengths would pair the wrong numbers (or hang): every rank checks that
// all ranks name the same keys, by comparing the largest and smallest hash of their lists.
async function checkSameKeys(group: TrainingGroup, keys: readonly string[], what: string): Promise<void> {
  if (!group.distributed) return;
  const hash = stringHash(keys.join('\u0000'));
  const hashes = (await group.gather([hash])).map((h) => h[0]);
  if (hashes.some((h) => h !== hash)) {
    throw new Error(
      `distributed training: the ranks' ${what} differ (rank ${group.rank} has ${keys.join(', ') || 'none'}); ` +
        'every rank must run the same method and configuration',
    );
  }
}

// FNV-1a, 32 bits: exact in a float64.
function stringHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * The accumulation that gives `globalBatchSize` samples per optimizer step at this world size:
 * global / (perDevice x worldSize), which must be a whole number (the error names the keys).
 */
export function accumulationFor(
  args: { globalBatchSize?: number | null; perDeviceTrainBatchSize: number; gradientAccumulationSteps: number },
  worldSize: number,
): number {
  const global = args.globalBatchSize ?? null;
  if (global === null) return args.gradientAccumulationSteps;
  const perStep = args.perDeviceTrainBatchSize * worldSize;
  if (global % perStep !== 0) {
    throw new RangeError(
      `global_batch_size (${global}) must be a multiple of per_device_train_batch_size (${args.perDeviceTrainBatchSize}) ` +
        `x world size (${worldSize}) = ${perStep}: it sets gradient_accumulation_steps to global / (per_device x world)`,
    );
  }
  return global / perStep;
}

/**
 * DDP on torch's c10d::Reducer (lib/distributed/ddp.ts): rank 0's parameters broadcast, then the
 * gradients of each window's last backward averaged over the ranks while backward runs (the other
 * micro-batches accumulate locally, no_sync). findUnusedParameters (default): a micro-batch without images
 * never reaches the vision tower, and a parameter no rank's last micro-batch reaches must still
 * count as ready (its locally accumulated gradient is reduced with the rest).
 */
async function dataParallel(params: readonly Tensor[], findUnused: boolean): Promise<GradientSync> {
  const ddp = await DataParallel.create(getProcessGroup(), params, { findUnusedParameters: findUnused });
  return { beforeLastBackward: (loss) => ddp.prepareForBackward(loss), dispose: () => ddp.dispose() };
}
