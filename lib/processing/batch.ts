// Padding encoded samples into [B, L] int64 tensors.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { IGNORE_INDEX, type Encoded } from './segments.js';

export interface TokenBatch {
  /** [B, L] int64 token ids, padded with the tokenizer's pad id. */
  inputIds: Tensor;
  /** [B, L] int64, 1 on tokens and 0 on padding. */
  attentionMask: Tensor;
  /** [B, L] int64, the id where a position carries a loss, else -100 (also on padding). */
  labels: Tensor;
}

export type PaddingSide = 'left' | 'right';

/** Pads every row to the longest with `padTokenId` on `side`. */
export function padBatch(rows: readonly Encoded[], padTokenId: number, side: PaddingSide): TokenBatch {
  if (rows.length === 0) throw new RangeError('cannot pad an empty batch: expected at least one sample');
  const length = Math.max(...rows.map((r) => r.ids.length));
  const ids = new Int32Array(rows.length * length).fill(padTokenId);
  const mask = new Int32Array(rows.length * length);
  const labels = new Int32Array(rows.length * length).fill(IGNORE_INDEX);
  rows.forEach((row, b) => {
    const start = b * length + (side === 'left' ? length - row.ids.length : 0);
    ids.set(row.ids, start);
    labels.set(row.labels, start);
    mask.fill(1, start, start + row.ids.length);
  });
  const make = (data: Int32Array): Tensor => torch.tensor(data, { dtype: 'int64', shape: [rows.length, length] });
  return { inputIds: make(ids), attentionMask: make(mask), labels: make(labels) };
}

/** The pad id: the override, else tokenizer_config's pad_token; throws when neither is set. */
export function resolvePadTokenId(override: number | undefined, padTokenId: number | null, source: string): number {
  if (override !== undefined) {
    if (!Number.isInteger(override) || override < 0)
      throw new TypeError(`Expected a token id for padTokenId but received ${override}`);
    return override;
  }
  if (padTokenId === null)
    throw new Error(`${source}/tokenizer_config.json sets no pad_token: pass the padTokenId option`);
  return padTokenId;
}
