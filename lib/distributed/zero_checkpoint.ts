// Sharded checkpoints of a ZeroRedundancy: every rank writes its flat shards (parameters and the
// optimizer's state tensors) to zero-rank-R-of-N.safetensors, each file atomically; after a barrier
// rank 0 writes zero-index.json, the layout and the optimizer's numbers (step counts), last, so a
// directory without the index is an unfinished save. Loading reads the index and, for each flat
// buffer, copies from the old ranks' files the part that falls in this rank's new slice: a save
// made on N ranks resumes on M (one old file is held at a time, never the whole model). The frozen
// buffers that stage 3 shards (a LoRA base, 4-bit codes) may be left out of the save; a load matches
// the trainable buffers, and the frozen ones too when both sides have them, so a save of one stage
// resumes at another.
// saveZeroConsolidated writes the whole model as one Hugging Face sharded checkpoint, one file per
// unit, gathered and written unit by unit from rank 0.
import fs from 'node:fs';
import path from 'node:path';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { ELEMENT_SIZE } from '../torch/dtype.js';
import { loadSafetensors, saveSafetensors } from '../torch/safetensors.js';
import { writeAtomic } from '../util/atomic_write.js';
import { barrier } from './collectives.js';
import type { ZeroRedundancy, ZeroShardView } from './zero.js';

export const ZERO_INDEX = 'zero-index.json';
const FORMAT = 'vlalign-zero/1';

const pad = (n: number): string => String(n).padStart(5, '0');
export const zeroShardFile = (rank: number, worldSize: number): string =>
  `zero-rank-${pad(rank)}-of-${pad(worldSize)}.safetensors`;

/** What zero-index.json holds: the save's world size and, per flat buffer, its layout and numbers. */
export interface ZeroIndex {
  format: string;
  worldSize: number;
  stage: number;
  optimizer: string;
  /** The frozen buffers (a LoRA base, 4-bit codes) were left out (saveZeroCheckpoint's excludeFrozen). */
  frozenExcluded?: boolean;
  buckets: Array<{
    unit: number;
    dtype: string;
    trainable: boolean;
    total: number;
    shardSize: number;
    shapes: number[][];
    /** Optimizer state entries that are numbers (AdamW's step), equal on every rank. */
    numbers: Record<string, number>;
    /** Optimizer state entries that are tensors (one element per shard element), with their dtypes. */
    tensors: Record<string, string>;
  }>;
}

export interface ZeroCheckpointOptions {
  /**
   * Leave out the frozen flat buffers (stage 3 shards them: a LoRA base, 4-bit codes), as DeepSpeed's
   * exclude_frozen_parameters, which transformers' Trainer passes for PEFT models: they never change
   * in training, and the resumed run shards them again from the model it was given. Default false.
   */
  excludeFrozen?: boolean;
}

/** Every rank calls it with the same directory; resolves once the index is written. */
export async function saveZeroCheckpoint(
  zero: ZeroRedundancy,
  dir: string,
  options: ZeroCheckpointOptions = {},
): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const excludeFrozen = options.excludeFrozen ?? false;
  const views = zero.shardViews().filter((v) => v.trainable || !excludeFrozen);
  const tensors: Record<string, Tensor> = {};
  views.forEach((v, b) => {
    tensors[`${b}.param`] = v.shard;
    for (const [key, value] of Object.entries(v.state)) if (typeof value !== 'number') tensors[`${b}.${key}`] = value;
  });
  fs.rmSync(path.join(dir, ZERO_INDEX), { force: true });
  await saveSafetensors(path.join(dir, zeroShardFile(zero.rank, zero.worldSize)), tensors);
  await barrier();
  const index = { ...indexOf(zero, views), ...(excludeFrozen ? { frozenExcluded: true } : {}) };
  if (zero.rank === 0) writeAtomic(path.join(dir, ZERO_INDEX), `${JSON.stringify(index, null, 1)}\n`);
  await barrier();
}

function indexOf(zero: ZeroRedundancy, views: ZeroShardView[]): ZeroIndex {
  return {
    format: FORMAT,
    worldSize: zero.worldSize,
    stage: zero.stage,
    optimizer: zero.optimizer.stateType,
    buckets: views.map((v) => ({
      unit: v.unit,
      dtype: v.dtype,
      trainable: v.trainable,
      total: v.total,
      shardSize: v.shardSize,
      shapes: v.shapes,
      numbers: Object.fromEntries(Object.entries(v.state).filter(([, x]) => typeof x === 'number')) as Record<
        string,
        number
      >,
      tensors: Object.fromEntries(
        Object.entries(v.state).flatMap(([k, x]) => (typeof x === 'number' ? [] : [[k, x.dtype]])),
      ),
    })),
  };
}

export function readZeroIndex(dir: string): ZeroIndex {
  const file = path.join(dir, ZERO_INDEX);
  if (!fs.existsSync(file))
    throw new Error(
      `loadZeroCheckpoint: ${file} is missing: the save did not finish (or ${dir} is no ZeRO checkpoint)`,
    );
  const index = JSON.parse(fs.readFileSync(file, 'utf8')) as ZeroIndex;
  if (index.format !== FORMAT)
    throw new Error(`loadZeroCheckpoint: ${file} has format '${index.format}', expected '${FORMAT}'`);
  return index;
}

/**
 * Restores the shards (parameters and optimizer state) from `dir`, saved at any world size and
 * stage; stages 1 and 2 then all-gather the parameters into the model. The trainable buffers must
 * match the save's; frozen buffers are restored when the save and this run both have them, else they
 * keep what create() sharded from the model. Every rank calls it.
 */
export async function loadZeroCheckpoint(zero: ZeroRedundancy, dir: string): Promise<void> {
  const index = readZeroIndex(dir);
  const all = zero.shardViews();
  // Which saved buffer each of this run's buffers comes from: all of them when both sides have the
  // frozen ones (stage 3 saved whole, loaded at stage 3), else the trainable ones, in order (the
  // frozen buffers keep what create() sharded from the model).
  const savedFrozen = index.buckets.some((b) => !b.trainable);
  const withFrozen = savedFrozen && all.some((v) => !v.trainable);
  const views = withFrozen ? all : all.filter((v) => v.trainable);
  const saved = withFrozen ? index.buckets.map((_, s) => s) : trainableIndices(index);
  checkLayout(index, saved, views, zero);
  const stateType = zero.optimizer.stateType;
  if (index.optimizer !== stateType)
    throw new Error(`loadZeroCheckpoint: the checkpoint's optimizer is ${index.optimizer}, this run's ${stateType}`);
  // The new state: zeros where no old rank wrote (padding), filled from the old files below.
  const fresh = views.map((v, b) =>
    Object.fromEntries(
      Object.entries(index.buckets[saved[b]!]!.tensors).map(([key, dtype]) => [
        key,
        torch.zeros([v.shardSize], { dtype: dtype as torch.DType }).keep(),
      ]),
    ),
  );
  try {
    for (let old = 0; old < index.worldSize; old++) {
      const file = path.join(dir, zeroShardFile(old, index.worldSize));
      const tensors = await loadSafetensors(file);
      try {
        views.forEach((v, b) => {
          const s = saved[b]!;
          const oldSize = index.buckets[s]!.shardSize;
          copyOverlap(tensors[`${s}.param`], v.shard, old * oldSize, zero.rank * v.shardSize, v.total, file);
          for (const key of Object.keys(index.buckets[s]!.tensors))
            copyOverlap(tensors[`${s}.${key}`], fresh[b]![key]!, old * oldSize, zero.rank * v.shardSize, v.total, file);
        });
      } finally {
        for (const t of Object.values(tensors)) t.dispose();
      }
    }
  } catch (error) {
    for (const state of fresh) for (const t of Object.values(state)) t.dispose();
    throw error;
  }
  const states = new Map(views.map((v, b) => [v, { ...index.buckets[saved[b]!]!.numbers, ...fresh[b]! }]));
  zero.restoreState(all.map((v) => states.get(v) ?? {}));
  await zero.syncParameters();
}

const trainableIndices = (index: ZeroIndex): number[] => index.buckets.flatMap((b, s) => (b.trainable ? [s] : []));

/** Copies the elements of an old shard (starting at global element `oldStart`) that fall in the new one. */
function copyOverlap(
  source: Tensor | undefined,
  target: Tensor,
  oldStart: number,
  newStart: number,
  total: number,
  file: string,
): void {
  if (source === undefined) throw new Error(`loadZeroCheckpoint: ${file} lacks a tensor the index names`);
  const from = Math.max(oldStart, newStart);
  const to = Math.min(oldStart + source.numel(), newStart + target.numel(), total);
  if (to <= from) return;
  torch.noGrad(() =>
    torch.tidy(() => {
      target.narrow(0, from - newStart, to - from).copy_(source.narrow(0, from - oldStart, to - from).to(target.dtype));
    }),
  );
}

function checkLayout(index: ZeroIndex, saved: number[], views: ZeroShardView[], zero: ZeroRedundancy): void {
  const describe = (b: { unit: number; dtype: string; trainable: boolean; total: number }) =>
    `unit ${b.unit} ${b.dtype} ${b.trainable ? 'trainable' : 'frozen'} (${b.total} elements)`;
  const there = saved.map((s) => describe(index.buckets[s]!));
  const here = views.map(describe);
  const bad = here.findIndex((d, k) => d !== there[k]);
  if (there.length !== here.length || bad >= 0) {
    throw new Error(
      `loadZeroCheckpoint: the checkpoint's flat buffers differ from this model's at buffer ${bad < 0 ? here.length : bad}: ` +
        `saved ${there[bad] ?? `${there.length} buffers`}, here ${here[bad] ?? `${here.length} buffers`} ` +
        `(saved with stage ${index.stage}, loading with stage ${zero.stage}; the trainable buffers must agree, ` +
        'and the frozen ones too when both sides have them)',
    );
  }
}

/**
 * The consolidated weights from rank 0 as a Hugging Face sharded checkpoint: one
 * `<prefix>-0000k-of-0000n.safetensors` per unit that has named parameters, and
 * `<prefix>.safetensors.index.json`. Stage 3 gathers one unit at a time, and of it only the flat
 * buffers that hold named tensors, so no process holds more than one unit beyond its shards. `names` maps the parameters to save to their checkpoint names
 * (a model's namedParameters(); an adapter's names for a PEFT save); others are skipped. Every rank
 * calls it; returns the files written (rank 0) or [].
 */
export async function saveZeroConsolidated(
  zero: ZeroRedundancy,
  dir: string,
  names: ReadonlyMap<Tensor, string>,
  options: { prefix?: string } = {},
): Promise<string[]> {
  const prefix = options.prefix ?? 'model';
  const writer = zero.rank === 0;
  if (writer) fs.mkdirSync(dir, { recursive: true });
  const saved = zero.units.map((unit) => unit.filter((p) => names.has(p)));
  const count = saved.filter((u) => u.length > 0).length;
  const weightMap: Record<string, string> = {};
  const files: string[] = [];
  let totalSize = 0;
  for (const [u, params] of saved.entries()) {
    if (params.length === 0) continue;
    // Only the buffers holding named tensors are gathered (an adapter's names: not the frozen base).
    const full = await zero.gatherCopies(u, params);
    try {
      if (!writer) continue;
      const file = `${prefix}-${pad(files.length + 1)}-of-${pad(count)}.safetensors`;
      const tensors = Object.fromEntries(params.map((p) => [names.get(p)!, full.get(p)!]));
      await saveSafetensors(path.join(dir, file), tensors);
      for (const p of params) {
        weightMap[names.get(p)!] = file;
        totalSize += full.get(p)!.numel() * ELEMENT_SIZE[p.dtype];
      }
      files.push(file);
    } finally {
      for (const t of full.values()) t.dispose();
    }
  }
  if (!writer) return [];
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  writeAtomic(path.join(dir, `${prefix}.safetensors.index.json`), `${JSON.stringify(index, null, 2)}\n`);
  return files;
}
