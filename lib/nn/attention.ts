// Attention math shared by every family: eager softmax(q kᵀ·scale + mask) v in float32, grouped-query
// heads, additive masks built from padding and causality.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

/** [B, Hkv, S, hd] to [B, Hkv·groups, S, hd]: each key/value head serves `groups` query heads. */
export function repeatKv(x: Tensor, groups: number): Tensor {
  if (groups === 1) return x;
  return torch.tidy(() => {
    const [b, h, s, d] = x.shape as [number, number, number, number];
    return x
      .unsqueeze(2)
      .expand([b, h, groups, s, d])
      .reshape([b, h * groups, s, d]);
  });
}

export interface AttendOptions {
  /** Additive mask broadcastable to [B, H, Q, K] (0 = attend, dtype minimum = blocked). */
  mask?: Tensor | null;
  /** Softmax in float32 whatever the activation dtype (the Qwen rule; InternViT keeps its dtype). */
  softmaxFloat32?: boolean;
  dropout?: number;
  training?: boolean;
  /**
   * Called with the attention probabilities [B, H, Q, K] (after the softmax, before dropout), for
   * analyses that read them (MIA-DPO's attention-aware selection). Runs inside this call's scope:
   * what it keeps must be read out or `torch.keep`-ed. Absent: nothing extra happens.
   */
  onWeights?: (weights: Tensor) => void;
}

/** q [B, H, Q, hd], k/v [B, Hkv, K, hd] to [B, H, Q, hd]. */
export function attend(q: Tensor, k: Tensor, v: Tensor, options: AttendOptions = {}): Tensor {
  return torch.tidy(() => {
    const groups = q.shape[1]! / k.shape[1]!;
    const keys = repeatKv(k, groups);
    const values = repeatKv(v, groups);
    // Scaled and masked in place: the scores [B, H, Q, K] are the largest intermediates, and a fresh
    // buffer per step (all held until the scope ends) makes malloc hand their pages back to the OS
    // and fault them in again on every call. Autograd-safe: neither the matmul nor the division by
    // a scalar saves the scores for backward.
    let scores = q.matmul(keys.transpose(2, 3)).div_(Math.sqrt(q.shape[3]!));
    const mask = options.mask;
    if (mask) scores = broadcastsInto(mask.shape, scores.shape) ? scores.add_(mask) : scores.add(mask);
    // Half precision is upcast (float64 stays float64, so gradchecks stay exact).
    const half = scores.dtype === 'bfloat16' || scores.dtype === 'float16';
    let weights =
      half && options.softmaxFloat32 !== false ? scores.float().softmax(-1).to(q.dtype) : scores.softmax(-1);
    options.onWeights?.(weights);
    if (options.training && (options.dropout ?? 0) > 0)
      weights = torch.nn.functional.dropout(weights, options.dropout, true);
    return weights.matmul(values);
  });
}

/** Whether a tensor of shape `from` broadcasts to exactly `to` (an in-place op keeps `to`'s shape). */
function broadcastsInto(from: readonly number[], to: readonly number[]): boolean {
  const offset = to.length - from.length;
  return offset >= 0 && from.every((d, i) => d === 1 || d === to[offset + i]);
}

/** The most negative finite value of a floating dtype, as masks use it. */
export function dtypeMin(dtype: Tensor['dtype']): number {
  switch (dtype) {
    case 'float64':
      return -Number.MAX_VALUE;
    case 'float16':
      return -65504;
    case 'bfloat16':
      return -3.3895313892515355e38;
    default:
      return -3.4028234663852886e38;
  }
}

/**
 * Causal + padding mask [B, 1, Q, K] for queries at absolute positions past..past+Q-1 over keys
 * 0..K-1; `attentionMask` [B, K] marks real tokens with 1 (null: no padding).
 */
export function causalMask(
  queries: number,
  keys: number,
  attentionMask: Tensor | null,
  dtype: Tensor['dtype'],
  device: Tensor['device'] = 'cpu',
): Tensor {
  return torch.tidy(() => {
    const past = keys - queries;
    const row = torch.arange(past, keys, { dtype: 'int64', device }).unsqueeze(1);
    const col = torch.arange(0, keys, { dtype: 'int64', device }).unsqueeze(0);
    let blocked = col.gt(row).unsqueeze(0).unsqueeze(0); // [1, 1, Q, K]
    if (attentionMask !== null) blocked = blocked.logicalOr(attentionMask.eq(0).unsqueeze(1).unsqueeze(1));
    return torch.zeros(blocked.shape, { dtype, device }).maskedFill(blocked, dtypeMin(dtype));
  });
}

/**
 * Block-diagonal mask [1, 1, N, N] from cumulative segment boundaries [0, n1, n1+n2, ...]: each
 * segment (one image, or one window) attends only to itself.
 */
export function segmentMask(
  cuSeqlens: readonly number[],
  dtype: Tensor['dtype'],
  device: Tensor['device'] = 'cpu',
): Tensor {
  const n = cuSeqlens[cuSeqlens.length - 1]!;
  const segment = new Int32Array(n);
  for (let s = 0; s + 1 < cuSeqlens.length; s++) segment.fill(s, cuSeqlens[s]!, cuSeqlens[s + 1]!);
  return torch.tidy(() => {
    const ids = torch.tensor(segment, { device });
    const blocked = ids.unsqueeze(1).ne(ids.unsqueeze(0));
    return torch.zeros([n, n], { dtype, device }).maskedFill(blocked, dtypeMin(dtype)).unsqueeze(0).unsqueeze(0);
  });
}
