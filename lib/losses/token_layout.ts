// Which tokens a loss reads, and in what order. A batch row holds a sequence; its completion
// tokens (target != ignoreIndex) are gathered into one flat [N] list so the LM head runs on them
// only. Rows that a loss couples (a chosen/rejected pair; for GRPO and KTO each row alone) form a
// group, and the tokens of a group are contiguous: a chunk of whole groups can then compute its
// loss, and so its gradients, on its own.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export interface TokenChunk {
  /** Token range [start, end) in the flat token list. */
  start: number;
  end: number;
  /** Batch rows of the chunk in slot order: groups' first members, then their second members, ... */
  rows: number[];
  /** [end - start] int64: each token's slot (its row's index in `rows`). */
  slot: Tensor;
  /** [rows.length] int64: `rows` as a tensor, to gather per-row inputs in slot order. */
  rowIds: Tensor;
}

export interface TokenLayout {
  /** [N] int64 flat positions (row * T + t) of the selected tokens, group by group. */
  index: Tensor;
  /** [N] int64 targets of the selected tokens (the token each one predicts). */
  targets: Tensor;
  /** Selected tokens per batch row. */
  rowTokens: number[];
  chunks: TokenChunk[];
  /** The whole batch as a single chunk (the eager and two-pass paths). */
  whole: TokenChunk;
}

interface GroupTokens {
  members: number[];
  positions: number[][]; // per member, its flat positions
}

function chunkOf(groups: GroupTokens[], start: number): TokenChunk {
  const width = Math.max(...groups.map((g) => g.members.length));
  const rows: number[] = [];
  const slotOfRow = new Map<number, number>();
  for (let m = 0; m < width; m++) {
    for (const g of groups) {
      const row = g.members[m];
      if (row === undefined) continue;
      slotOfRow.set(row, rows.length);
      rows.push(row);
    }
  }
  const slots: number[] = [];
  for (const g of groups) g.members.forEach((row, m) => g.positions[m]!.forEach(() => slots.push(slotOfRow.get(row)!)));
  const slot = torch.tensor(BigInt64Array.from(slots, BigInt)).keep();
  const rowIds = torch.tensor(BigInt64Array.from(rows, BigInt)).keep();
  return { start, end: start + slots.length, rows, slot, rowIds };
}

/**
 * Lays out the completion tokens of `targets` [R, T] (int64, ignoreIndex elsewhere) by `groups`
 * (lists of rows that belong together, covering every row once), in chunks of whole groups of at
 * most `chunkTokens` tokens (a larger group gets a chunk of its own).
 */
export function layoutTokens(
  targets: Tensor,
  groups: number[][],
  chunkTokens: number,
  ignoreIndex = -100,
): TokenLayout {
  const [rows, width] = targets.shape as [number, number];
  if (targets.dtype !== 'int64' || targets.ndim !== 2) {
    throw new TypeError(`targets must be an int64 [rows, tokens] tensor, got ${targets.dtype} [${targets.shape}]`);
  }
  const values = targets.data() as BigInt64Array;
  const ignore = BigInt(ignoreIndex);
  const perRow: number[][] = Array.from({ length: rows }, (_, r) => {
    const positions: number[] = [];
    for (let t = 0; t < width; t++) if (values[r * width + t] !== ignore) positions.push(r * width + t);
    return positions;
  });
  const seen = new Set(groups.flat());
  if (seen.size !== rows || groups.flat().length !== rows) {
    throw new RangeError(`groups must cover each of the ${rows} batch rows exactly once`);
  }
  const grouped: GroupTokens[] = groups.map((members) => ({ members, positions: members.map((r) => perRow[r]!) }));
  const order = grouped.flatMap((g) => g.positions.flat());
  const chunks: TokenChunk[] = [];
  let pending: GroupTokens[] = [];
  let pendingTokens = 0;
  let start = 0;
  const flush = (): void => {
    if (pending.length === 0) return;
    chunks.push(chunkOf(pending, start));
    start += pendingTokens;
    pending = [];
    pendingTokens = 0;
  };
  for (const g of grouped) {
    const tokens = g.positions.reduce((n, p) => n + p.length, 0);
    if (pendingTokens > 0 && pendingTokens + tokens > chunkTokens) flush();
    pending.push(g);
    pendingTokens += tokens;
  }
  flush();
  const index = torch.tensor(BigInt64Array.from(order, BigInt)).keep();
  const flatTargets = torch.tensor(BigInt64Array.from(order, (p) => values[p]!)).keep();
  return { index, targets: flatTargets, rowTokens: perRow.map((p) => p.length), chunks, whole: chunkOf(grouped, 0) };
}

/** Frees the layout's tensors. */
export function disposeLayout(layout: TokenLayout): void {
  layout.index.dispose();
  layout.targets.dispose();
  for (const c of [layout.whole, ...layout.chunks]) {
    c.slot.dispose();
    c.rowIds.dispose();
  }
}

/** Per-slot sums of per-token values [n] for a chunk: [rows.length]. Differentiable. */
export function sumBySlot(values: Tensor, chunk: TokenChunk): Tensor {
  return torch.zeros([chunk.rows.length], { dtype: values.dtype }).indexAdd(0, chunk.slot, values);
}
