// Attention within segments (one image frame, or one Qwen2.5-VL window) without the [N, N] scores
// of one masked attention over all rows: segments of equal length are stacked into a batch
// dimension, one attention per length. A row's softmax only ever sees its own segment, so this is
// the block-diagonal masked attention (whose blocked scores are exact zeros after the softmax)
// computed without the blocks that are masked out: 8 images of 1024 rows cost 1/8 of the FLOPs
// and scores memory of one [8192, 8192] attention.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { attend } from '../../nn/index.js';

/** `count` segments of `length` rows each, contiguous in the grouped row order. */
export interface SegmentGroup {
  count: number;
  length: number;
}

/** How rows are grouped for attention: plain integers, built once per forward. */
export interface SegmentPlan {
  groups: SegmentGroup[];
  /** Grouped row order (order[i] = original row), or null when the rows already are grouped. */
  order: Int32Array | null;
}

/** The plan's row permutations as tensors; null when the rows need none. */
export interface SegmentIndex {
  /** Original rows in grouped order. */
  order: Tensor;
  /** Grouped rows back in original order (the inverse permutation). */
  restore: Tensor;
}

/**
 * Groups the segments of cumulative boundaries [0, n1, n1+n2, ...] by length, lengths in order of
 * first appearance and segments in their order within a length. Rows stay where they are when
 * every length's segments are already adjacent (equal-size images; a uniform window grid).
 */
export function segmentPlan(cuSeqlens: readonly number[]): SegmentPlan {
  const byLength = new Map<number, number[]>();
  for (let s = 0; s + 1 < cuSeqlens.length; s++) {
    const length = cuSeqlens[s + 1]! - cuSeqlens[s]!;
    if (length <= 0) continue;
    const starts = byLength.get(length) ?? [];
    starts.push(cuSeqlens[s]!);
    byLength.set(length, starts);
  }
  const groups: SegmentGroup[] = [];
  const order = new Int32Array(cuSeqlens[cuSeqlens.length - 1]!);
  let row = 0;
  let identity = true;
  for (const [length, starts] of byLength) {
    groups.push({ count: starts.length, length });
    for (const start of starts) {
      if (start !== row) identity = false;
      for (let i = 0; i < length; i++) order[row++] = start + i;
    }
  }
  return { groups, order: identity ? null : order };
}

/** The permutations of a plan on `device`, or null when it keeps rows in place. */
export function segmentIndex(plan: SegmentPlan, device: Tensor['device']): SegmentIndex | null {
  const order = plan.order;
  if (order === null) return null;
  const restore = new Int32Array(order.length);
  order.forEach((original, grouped) => {
    restore[original] = grouped;
  });
  return torch.tidy(() => ({
    order: torch.tensor(order, { device }).long(),
    restore: torch.tensor(restore, { device }).long(),
  }));
}

/**
 * q, k, v [N, H, hd] (rows in original order) to [N, H·hd]: softmax(q kᵀ/√hd) v with each row
 * attending only to the rows of its own segment. Differentiable like `attend`.
 */
export function segmentAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  plan: SegmentPlan,
  index: SegmentIndex | null,
): Tensor {
  return torch.tidy(() => {
    const [n, heads, hd] = q.shape as [number, number, number];
    const covered = plan.groups.reduce((rows, g) => rows + g.count * g.length, 0);
    if (covered !== n) throw new RangeError(`segmentAttention: the segments cover ${covered} rows but q has ${n}`);
    const grouped = (t: Tensor): Tensor => (index ? t.indexSelect(0, index.order) : t);
    const [gq, gk, gv] = [grouped(q), grouped(k), grouped(v)];
    const parts: Tensor[] = [];
    let start = 0;
    for (const { count, length } of plan.groups) {
      const rows = count * length;
      // [rows, H, hd] -> [count, H, length, hd]: one batch entry per segment.
      const batch = (t: Tensor): Tensor => t.narrow(0, start, rows).reshape([count, length, heads, hd]).transpose(1, 2);
      parts.push(
        attend(batch(gq), batch(gk), batch(gv))
          .transpose(1, 2)
          .reshape([rows, heads * hd]),
      );
      start += rows;
    }
    const out = parts.length === 1 ? parts[0]! : torch.cat(parts, 0);
    return index ? out.indexSelect(0, index.restore) : out;
  });
}
