// One sequence per preference pair: [prompt, chosen completion, rejected completion], the packed
// group of two completions of lib/data/pack_groups.ts (its layout comment shows the segments and
// positions). TRL and InternVL run chosen and rejected as separate rows with duplicated pixel
// values, so the vision tower and the whole prompt run twice; packed, they run once. Here: the
// pairs split out of the processor's chosen and rejected batches (a row's prompt is its tokens
// before the first labelled one; both prompts must match), keep_start truncation, and the 2P
// virtual rows PreferenceLoss takes (P chosen, then P rejected).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { InternVLProcessor, type Processor } from '../processing/index.js';
import { resolvePadTokenId, type PaddingSide } from '../processing/batch.js';
import { IGNORE_INDEX } from '../processing/segments.js';
import { GROUP_SEGMENT, layoutGroups, type LabelledTokens } from './pack_groups.js';
import type { ProcessorBatch } from './collators.js';

/** Segment ids of the packed tokens (PackedPairs.segments). */
export const SEGMENT = {
  padding: GROUP_SEGMENT.padding,
  prompt: GROUP_SEGMENT.prompt,
  chosen: GROUP_SEGMENT.firstCompletion,
  rejected: GROUP_SEGMENT.firstCompletion + 1,
} as const;

export interface PackedPairs {
  pairs: number;
  /** [P, L] int64: prompt, chosen completion, rejected completion; padded on the processor's side. */
  inputIds: Tensor;
  /** [P, L] int64, 1 on tokens, 0 on padding. */
  attentionMask: Tensor;
  /** [P, L] int64 SEGMENT ids: which part of its pair each token is. */
  segments: Tensor;
  /** [P, L] int64 1-D positions, the rejected part restarting at the prompt's end (1 on padding). */
  positionIds: Tensor;
  /** [P, L] int64: the chosen length on rejected tokens, else 0 (GroupLayout.positionShift). */
  positionShift: Tensor;
  /** Per pair: padding tokens before the pair's first token (left padding), else 0. */
  offset: number[];
  promptLength: number[];
  chosenLength: number[];
  rejectedLength: number[];
  /** [2P·W] int64 flat indices into the packed hidden states [P·L, D] (rows 2P of width W, row-major). */
  gatherIndex: Tensor;
  /** [2P, W] int64: the token each virtual position predicts, ignoreIndex beyond the completion. */
  targets: Tensor;
  /** The chosen batch's vision inputs (pair i's images are in its prompt, once), as in CollatedBatch. */
  pixelValues: Tensor | null;
  imageGridThw: Tensor | null;
  imageFlags: Tensor | null;
  tilesPerImage: number[];
}

export interface PackOptions {
  /** The targets' value where no loss applies (the losses' ignoreIndex). Default -100. */
  ignoreIndex?: number;
  /**
   * TRL's max_length with truncation_mode keep_start: each completion is cut so that prompt +
   * completion <= maxLength. Prompts are never cut (they hold the image tokens). Default null.
   */
  maxLength?: number | null;
}

type Row = LabelledTokens;

interface Pair {
  prompt: number[];
  chosen: Row;
  rejected: Row;
}

/**
 * The packed form of P pairs from the processor's batches of the chosen and the rejected samples
 * (`processor.process` of each list, pair i at row i of both, as collatePairs takes them). A row's
 * prompt is its tokens before the first labelled one; the chosen and rejected prompts of a pair
 * must be identical. Every tensor of the result is new (the vision inputs are new handles on the
 * chosen batch's storage); the caller disposes them, or creates them inside a torch.tidy.
 */
export function packPairs(
  processor: Processor,
  chosen: ProcessorBatch,
  rejected: ProcessorBatch,
  options: PackOptions = {},
): PackedPairs {
  const ignoreIndex = options.ignoreIndex ?? -100;
  if (!Number.isInteger(ignoreIndex)) {
    throw new TypeError(`Expected an integer for ignoreIndex but received ${String(ignoreIndex)}`);
  }
  const maxLength = options.maxLength ?? null;
  if (maxLength !== null && !(Number.isInteger(maxLength) && maxLength > 0)) {
    throw new TypeError(`Expected a positive integer or null for maxLength but received ${String(maxLength)}`);
  }
  const internvl = processor instanceof InternVLProcessor;
  checkFamily(chosen, internvl, 'chosen');
  checkFamily(rejected, internvl, 'rejected');
  const pairs = chosen.inputIds.shape[0]!;
  if (rejected.inputIds.shape[0] !== pairs) {
    throw new RangeError(
      `packPairs: chosen has ${pairs} rows, rejected ${rejected.inputIds.shape[0]}: pair i is row i of both`,
    );
  }
  checkSameImages(chosen, rejected);
  const placeholder = internvl ? processor.imageContext : processor.imagePad;
  const [chosenRows, rejectedRows] = [unpaddedRows(chosen, 'chosen'), unpaddedRows(rejected, 'rejected')];
  const split = chosenRows.map((c, i) => splitPair(c, rejectedRows[i]!, i));
  const packed = split.map((p, i) => {
    const cut = truncate(p, maxLength, i);
    for (const side of ['chosen', 'rejected'] as const) {
      const at = cut[side].ids.indexOf(placeholder.id);
      if (at >= 0) {
        throw new RangeError(
          `packPairs: pair ${i}: ${side} completion token ${at} is the image placeholder ${placeholder.token}; images belong in the prompt`,
        );
      }
    }
    return cut;
  });
  const padTokenId = resolvePadTokenId(processor.options.padTokenId, processor.tokenizer.padTokenId, processor.source);
  const side: PaddingSide = processor.options.paddingSide ?? processor.tokenizer.paddingSide;
  return torch.tidy(() => ({
    pairs,
    ...layoutTensors(packed, padTokenId, side, ignoreIndex),
    pixelValues: chosen.pixelValues?.detach() ?? null,
    imageGridThw: internvl ? null : ((chosen as { imageGridThw: Tensor | null }).imageGridThw?.detach() ?? null),
    imageFlags: internvl ? ((chosen as { imageFlags: Tensor | null }).imageFlags?.detach() ?? null) : null,
    tilesPerImage: internvl ? [...(chosen as { tilesPerImage: number[] }).tilesPerImage] : [],
  }));
}

type Layout = Omit<PackedPairs, 'pairs' | 'pixelValues' | 'imageGridThw' | 'imageFlags' | 'tilesPerImage'>;

// A pair is a group of two completions; the virtual rows go completion-major (chosen, then rejected).
function layoutTensors(packed: Pair[], padTokenId: number, side: PaddingSide, ignoreIndex: number): Layout {
  const groups = packed.map((p) => ({ prompt: p.prompt, completions: [p.chosen, p.rejected] }));
  const {
    completionLengths,
    rowSource: _,
    ...layout
  } = layoutGroups(groups, {
    padTokenId,
    side,
    ignoreIndex,
    order: 'completion',
  });
  return {
    ...layout,
    chosenLength: completionLengths.map((c) => c[0]!),
    rejectedLength: completionLengths.map((c) => c[1]!),
  };
}

// Prompt = the tokens before the first labelled one; the two prompts of a pair must be the same.
function splitPair(chosen: Row, rejected: Row, pair: number): Pair {
  const firstLabel = (row: Row, side: string): number => {
    const k = row.labels.findIndex((l) => l !== IGNORE_INDEX);
    if (k < 0) throw new RangeError(`packPairs: pair ${pair}: the ${side} row has no labelled token (no completion)`);
    if (k === 0) {
      throw new RangeError(`packPairs: pair ${pair}: the ${side} row is labelled from token 0 (an empty prompt)`);
    }
    return k;
  };
  const [c, r] = [firstLabel(chosen, 'chosen'), firstLabel(rejected, 'rejected')];
  const prompt = chosen.ids.slice(0, c);
  const differs = prompt.findIndex((id, k) => rejected.ids[k] !== id);
  if (c !== r || differs >= 0) {
    const at = differs >= 0 ? `at token ${differs}: chosen ${prompt[differs]}, rejected ${rejected.ids[differs]}` : '';
    throw new RangeError(
      `packPairs: pair ${pair}: the chosen and rejected prompts differ (${c} and ${r} tokens${at ? `; ${at}` : ''})`,
    );
  }
  const rest = (row: Row): Row => ({ ids: row.ids.slice(c), labels: row.labels.slice(c) });
  return { prompt, chosen: rest(chosen), rejected: rest(rejected) };
}

// keep_start: completions cut so that prompt + completion <= maxLength; the prompt never is.
function truncate(pair: Pair, maxLength: number | null, index: number): Pair {
  if (maxLength === null) return pair;
  const room = maxLength - pair.prompt.length;
  if (room <= 0) {
    throw new RangeError(
      `packPairs: pair ${index}: the prompt has ${pair.prompt.length} tokens, maxLength is ${maxLength}: no completion token fits (prompts are not cut: they hold the image tokens)`,
    );
  }
  const cut = (row: Row): Row => ({ ids: row.ids.slice(0, room), labels: row.labels.slice(0, room) });
  return { prompt: pair.prompt, chosen: cut(pair.chosen), rejected: cut(pair.rejected) };
}

function checkFamily(batch: ProcessorBatch, internvl: boolean, name: string): void {
  if (batch?.inputIds?.ndim !== 2) {
    throw new TypeError(`packPairs: ${name}: expected a processor batch with [rows, tokens] inputIds`);
  }
  const isInternVL = 'imageFlags' in batch;
  if (isInternVL !== internvl || (!internvl && !('imageGridThw' in batch))) {
    const family = internvl ? 'InternVL' : 'Qwen2-VL';
    throw new TypeError(`packPairs: ${name}: expected a ${family} processor batch, as the processor makes`);
  }
}

// A pair's images are in its prompt, so the rejected batch carries the chosen batch's images again:
// they must be the same (a different image under an identical prompt would be silently dropped).
function checkSameImages(chosen: ProcessorBatch, rejected: ProcessorBatch): void {
  const [a, b] = [chosen.pixelValues, rejected.pixelValues];
  if (a === null && b === null) return;
  const shape = (t: Tensor | null): string => (t === null ? 'none' : `[${t.shape}]`);
  if (a === null || b === null || shape(a) !== shape(b) || !a.equal(b)) {
    throw new RangeError(
      `packPairs: the chosen and rejected batches carry different images (pixelValues ${shape(a)} and ${shape(b)}${a && b && shape(a) === shape(b) ? ', other values' : ''}); a pair shares its prompt's images`,
    );
  }
}

// Each row's tokens and labels without its padding (the run of attention_mask = 1).
function unpaddedRows(batch: ProcessorBatch, name: string): Row[] {
  const [rows, width] = batch.inputIds.shape as [number, number];
  for (const [key, t] of [
    ['attentionMask', batch.attentionMask],
    ['labels', batch.labels],
  ] as const) {
    if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== width) {
      throw new RangeError(`packPairs: ${name}.${key} must be [${rows}, ${width}] like inputIds, got [${t.shape}]`);
    }
  }
  const values = (t: Tensor): number[] => Array.from(t.contiguous().data() as BigInt64Array, Number);
  const [ids, mask, labels] = [values(batch.inputIds), values(batch.attentionMask), values(batch.labels)];
  return Array.from({ length: rows }, (_, r) => {
    const kept = [...Array(width).keys()].filter((t) => mask[r * width + t] === 1);
    if (kept.length > 0 && kept[kept.length - 1]! - kept[0]! + 1 !== kept.length) {
      throw new RangeError(
        `packPairs: ${name} row ${r}: attention_mask has padding between tokens (expected left or right)`,
      );
    }
    return { ids: kept.map((t) => ids[r * width + t]!), labels: kept.map((t) => labels[r * width + t]!) };
  });
}
