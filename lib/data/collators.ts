// Collators: processor batches into the model batches the losses take. The processor stays the only
// thing that tokenises and pads: a collator joins its batches row-wise (re-padding through the
// processor's own padBatch), shifts labels to targets, and keeps every row's vision inputs in row
// order, which is the order the models write image features over the placeholder tokens.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { targetsFromLabels } from '../losses/index.js';
import { InternVLProcessor, type InternVLBatch, type Processor, type Qwen2VlBatch } from '../processing/index.js';
import { padBatch, resolvePadTokenId, type PaddingSide } from '../processing/batch.js';
import type { Encoded } from '../processing/segments.js';

/** What `processor.process` returns. */
export type ProcessorBatch = Qwen2VlBatch | InternVLBatch;

/** A batch `model.forward` takes, with the targets the losses read. */
export interface CollatedBatch {
  /** [R, T] int64 token ids, padded on the processor's side. */
  inputIds: Tensor;
  /** [R, T] int64, 1 on tokens, 0 on padding. */
  attentionMask: Tensor;
  /** [R, T] int64: the token position t predicts (labels[t + 1]), ignoreIndex where no loss applies. */
  targets: Tensor;
  /** Qwen: [Σ patches, C·T·P·P]; InternVL: [Σ tiles, 3, S, S]; every image of every row, in row order; or null. */
  pixelValues: Tensor | null;
  /** Qwen2-VL / Qwen2.5-VL: [images, 3] (t, h, w) grids in row order; null for InternVL or without images. */
  imageGridThw: Tensor | null;
  /** InternVL: [Σ tiles, 1] int64 ones; null for Qwen or without images. */
  imageFlags: Tensor | null;
  /** InternVL: tiles of each image in row order (InternVL's num_patches_list); [] for Qwen. */
  tilesPerImage: number[];
}

/** 2P rows: the P chosen rows, then the P rejected rows in the same order (PreferenceLoss's layout). */
export interface PairBatch extends CollatedBatch {
  pairs: number;
}

/** KTO / BCO rows, each with its desirable flag. */
export interface UnpairedCollated extends CollatedBatch {
  desirable: boolean[];
}

export interface CollateOptions {
  /** The targets' value where no loss applies (the losses' ignoreIndex). Default -100. */
  ignoreIndex?: number;
  /**
   * TRL's max_length with truncation_mode keep_start: each row keeps its first maxLength tokens. A
   * row whose image placeholders reach past the cut is refused (the features would not match).
   */
  maxLength?: number | null;
}

/**
 * One batch of 2P rows from the processor's batches of the P chosen and the P rejected samples
 * (`processor.process` of each list, pair i at row i of both).
 */
export function collatePairs(
  processor: Processor,
  chosen: ProcessorBatch,
  rejected: ProcessorBatch,
  options: CollateOptions = {},
): PairBatch {
  const pairs = rowsOf(chosen, 'chosen');
  const rejectedRows = rowsOf(rejected, 'rejected');
  if (rejectedRows !== pairs) {
    throw new RangeError(`collatePairs: chosen has ${pairs} rows, rejected ${rejectedRows}: pair i is row i of both`);
  }
  const joined = joinBatches(
    processor,
    [
      ['chosen', chosen],
      ['rejected', rejected],
    ],
    options,
  );
  return { ...joined, pairs };
}

/** The processor's batch of KTO / BCO rows with targets and the rows' desirable flags. */
export function collateUnpaired(
  processor: Processor,
  batch: ProcessorBatch,
  desirable: readonly boolean[],
  options: CollateOptions = {},
): UnpairedCollated {
  const rows = rowsOf(batch, 'batch');
  if (desirable.length !== rows) {
    throw new RangeError(`collateUnpaired: desirable has ${desirable.length} flags for ${rows} rows`);
  }
  desirable.forEach((d, r) => {
    if (typeof d !== 'boolean') {
      throw new TypeError(`Expected a boolean for desirable[${r}] but received ${String(d)} of type ${typeof d}`);
    }
  });
  return { ...joinBatches(processor, [['batch', batch]], options), desirable: [...desirable] };
}

/** The rows of `batches` in order as one batch; every tensor of the result is new. */
export function joinBatches(
  processor: Processor,
  batches: ReadonlyArray<readonly [string, ProcessorBatch]>,
  options: CollateOptions = {},
): CollatedBatch {
  const internvl = processor instanceof InternVLProcessor;
  batches.forEach(([name, b]) => checkFamily(b, internvl, name));
  const { padTokenId, side } = paddingOf(processor);
  return torch.tidy(() => {
    const rows = batches.flatMap(([name, b]) =>
      unpaddedRows(b, name).map((row, r) => ({ row, where: `${name} row ${r}` })),
    );
    const maxLength = options.maxLength ?? null;
    const kept =
      maxLength === null
        ? rows.map((r) => r.row)
        : rows.map((r) => truncateRow(r.row, maxLength, imageTokenOf(processor), r.where));
    const tokens = padBatch(kept, padTokenId, side);
    const targets = targetsFromLabels(tokens.labels, options.ignoreIndex ?? -100);
    const present = batches.filter(([, b]) => b.pixelValues !== null);
    const pixelValues = present.length > 0 ? torch.cat(present.map(([, b]) => b.pixelValues!)) : null;
    const vision = internvl
      ? internvlVision(present as Array<[string, InternVLBatch]>)
      : qwenVision(present as Array<[string, Qwen2VlBatch]>);
    return { inputIds: tokens.inputIds, attentionMask: tokens.attentionMask, targets, pixelValues, ...vision };
  });
}

// keep_start truncation of one row; image placeholders must all survive the cut.
function truncateRow(row: Encoded, maxLength: number, imageToken: number, where: string): Encoded {
  if (!Number.isInteger(maxLength) || maxLength < 1) {
    throw new RangeError(`Expected a positive integer or null for maxLength but received ${maxLength}`);
  }
  if (row.ids.length <= maxLength) return row;
  if (row.ids.indexOf(imageToken, maxLength) !== -1) {
    throw new RangeError(
      `${where}: max_length ${maxLength} would cut image tokens (the row has ${row.ids.length} tokens); raise max_length`,
    );
  }
  return { ids: row.ids.slice(0, maxLength), labels: row.labels.slice(0, maxLength) };
}

/** The token id the processor writes for each image feature (Qwen's image pad, InternVL's IMG_CONTEXT). */
export function imageTokenOf(processor: Processor): number {
  return processor instanceof InternVLProcessor ? processor.imageContext.id : processor.imagePad.id;
}

// The pad id and side `processor.process` pads with.
function paddingOf(processor: Processor): { padTokenId: number; side: PaddingSide } {
  const { options, tokenizer } = processor;
  const padTokenId = resolvePadTokenId(options.padTokenId, tokenizer.padTokenId, processor.source);
  return { padTokenId, side: options.paddingSide ?? tokenizer.paddingSide };
}

function rowsOf(batch: ProcessorBatch, name: string): number {
  if (batch?.inputIds?.ndim !== 2) {
    throw new TypeError(`${name}: expected a processor batch with [rows, tokens] inputIds`);
  }
  return batch.inputIds.shape[0]!;
}

function checkFamily(batch: ProcessorBatch, internvl: boolean, name: string): void {
  rowsOf(batch, name);
  const isInternVL = 'imageFlags' in batch;
  if (isInternVL !== internvl || (!internvl && !('imageGridThw' in batch))) {
    const family = internvl ? 'InternVL' : 'Qwen2-VL';
    throw new TypeError(`${name}: expected a ${family} processor batch, as the processor makes`);
  }
}

// Each row's tokens and labels without its padding (the run of attention_mask = 1).
function unpaddedRows(batch: ProcessorBatch, name: string): Encoded[] {
  const [rows, width] = batch.inputIds.shape as [number, number];
  for (const [key, t] of [
    ['attentionMask', batch.attentionMask],
    ['labels', batch.labels],
  ] as const) {
    if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== width) {
      throw new RangeError(`${name}.${key} must be [${rows}, ${width}] like inputIds, got [${t.shape}]`);
    }
  }
  const values = (t: Tensor): number[] => Array.from(t.contiguous().data() as BigInt64Array, Number);
  const [ids, mask, labels] = [values(batch.inputIds), values(batch.attentionMask), values(batch.labels)];
  return Array.from({ length: rows }, (_, r) => {
    const kept = [...Array(width).keys()].filter((t) => mask[r * width + t] === 1);
    if (kept.length > 0 && kept[kept.length - 1]! - kept[0]! + 1 !== kept.length) {
      throw new RangeError(`${name} row ${r}: attention_mask has padding between tokens (expected left or right)`);
    }
    return { ids: kept.map((t) => ids[r * width + t]!), labels: kept.map((t) => labels[r * width + t]!) };
  });
}

type FamilyVision = Pick<CollatedBatch, 'imageGridThw' | 'imageFlags' | 'tilesPerImage'>;

function qwenVision(present: ReadonlyArray<readonly [string, Qwen2VlBatch]>): FamilyVision {
  present.forEach(([name, b]) => {
    if (b.imageGridThw === null) throw new TypeError(`${name}: pixelValues without imageGridThw`);
  });
  const imageGridThw = present.length > 0 ? torch.cat(present.map(([, b]) => b.imageGridThw!)) : null;
  return { imageGridThw, imageFlags: null, tilesPerImage: [] };
}

function internvlVision(present: ReadonlyArray<readonly [string, InternVLBatch]>): FamilyVision {
  present.forEach(([name, b]) => {
    if (b.imageFlags === null) throw new TypeError(`${name}: pixelValues without imageFlags`);
  });
  const imageFlags = present.length > 0 ? torch.cat(present.map(([, b]) => b.imageFlags!)) : null;
  return { imageGridThw: null, imageFlags, tilesPerImage: present.flatMap(([, b]) => b.tilesPerImage) };
}
