// The LM head + log-softmax, three ways, all returning per-token {logp, entropy, meanLogit}:
//   eager      logits materialised [N, V] with the tensor API (the reference; what TRL does);
//   twoPass    the fused kernel as an autograd Function: backward recomputes each chunk's logits
//              (8NHV FLOPs, memory O(chunk x V)); composes with any loss;
//   singlePass the fused kernel with the loss evaluated chunk by chunk inside the forward, so the
//              gradients come out of the same pass (6NHV FLOPs); needs a loss that is a sum over
//              the layout's chunks.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { LmHead } from '../nn/index.js';
import type { TokenChunk, TokenLayout } from './token_layout.js';

export type { LmHead };

export interface TokenStats {
  logp: Tensor; // [n] log p(label), 0 for ignored labels
  entropy: Tensor; // [n]
  meanLogit: Tensor; // [n] mean over the vocabulary of the (untempered) logits
}

export interface HeadOptions {
  temperature?: number;
  /** Tokens per chunk of the fused kernels. */
  chunkSize?: number;
  /**
   * Cut Cross-Entropy's gradient filtering: vocabulary tiles whose logit gradients stay below this
   * magnitude in every token of a chunk are skipped in the backward GEMMs. 'auto' = 2^-28 (fp32
   * epsilon / 32, beneath what fp32 gradient sums resolve) for float32, 0 (exact) for float64.
   */
  gradFilter?: number | 'auto';
}

function gradFilterFor(x: Tensor, options: HeadOptions): number {
  const filter = options.gradFilter ?? 'auto';
  if (filter === 'auto') return x.dtype === 'float32' ? 2 ** -28 : 0;
  if (!(filter >= 0)) throw new RangeError(`gradFilter must be >= 0 or 'auto', got ${filter}`);
  return filter;
}

/** Reference path: the [N, V] logits in full. x [N, H], targets [N] int64 (negative: none). */
export function eagerTokenStats(x: Tensor, head: LmHead, targets: Tensor, options: HeadOptions = {}): TokenStats {
  const logits = torch.nn.functional.linear(x, head.weight, head.bias);
  const z = logits.div(options.temperature ?? 1);
  const logprobs = z.logSoftmax(-1);
  const valid = targets.ge(0);
  const logp = logprobs.gather(1, targets.clamp(0).unsqueeze(1)).squeeze(1).mul(valid);
  const entropy = logprobs.exp().mul(logprobs).sum(-1).neg();
  return { logp, entropy, meanLogit: logits.mean(-1) };
}

/** Fused kernel as an autograd Function; gradients flow to x, weight and bias. */
export function fusedTokenStats(x: Tensor, head: LmHead, targets: Tensor, options: HeadOptions = {}): TokenStats {
  const [logp, entropy, meanLogit] = torch.linearLogprobs(x, head.weight, head.bias, targets, {
    temperature: options.temperature ?? 1,
    chunkRows: chunkRows(options),
    gradFilter: gradFilterFor(x, options),
  });
  return { logp, entropy, meanLogit };
}

/** Forward-only stats (reference models, KL passes): no graph, no [N, V] buffer. */
export function tokenStatsNoGrad(x: Tensor, head: LmHead, targets: Tensor, options: HeadOptions = {}): TokenStats {
  [x, head] = float32Head(x, head);
  const { logp, entropy, lse, meanLogit } = torch.linearLogprobStats(x, head.weight, head.bias, targets, {
    temperature: options.temperature ?? 1,
    chunkRows: chunkRows(options),
  });
  lse.dispose();
  return { logp, entropy, meanLogit };
}

/**
 * The fused kernels compute in float32 or float64: a bfloat16 / float16 head (mixed-precision
 * training) runs on float32 casts, inside the graph, so its gradients come back in the half dtype.
 * The cast copies lm_head once per call (V x H floats); a kernel reading half inputs would not.
 */
function float32Head(x: Tensor, head: LmHead): [Tensor, LmHead] {
  if (x.dtype !== 'bfloat16' && x.dtype !== 'float16') return [x, head];
  return [x.float(), { ...head, weight: head.weight.float(), bias: head.bias?.float() ?? null }];
}

const chunkRows = (options: HeadOptions): number => {
  const size = options.chunkSize ?? 1024;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`chunkSize must be a positive integer, got ${size}`);
  return size;
};

export type ChunkLoss = (stats: TokenStats, chunk: TokenChunk) => Tensor;

// One chunk of the single pass: stats into the scratch logits, the loss with autograd over the
// chunk's [n] stats, then the scratch turned into the logit gradient; returns the loss, detached.
function singlePassChunk(
  x: Tensor,
  head: LmHead,
  targets: Tensor,
  chunk: TokenChunk,
  lossOfChunk: ChunkLoss,
  pass: { scratch: Tensor; temperature: number; gradFilter: number; gradX: Tensor; into: torch.HeadGradients },
): Tensor {
  const rows = chunk.end - chunk.start;
  const xs = x.narrow(0, chunk.start, rows);
  const ys = targets.narrow(0, chunk.start, rows);
  const { logp, entropy, lse, meanLogit } = torch.linearLogprobStatsChunk(
    xs,
    head.weight,
    head.bias,
    ys,
    pass.temperature,
    pass.scratch,
  );
  logp.requiresGrad_(true);
  entropy.requiresGrad_(true);
  const loss = torch.enableGrad(() => lossOfChunk({ logp, entropy, meanLogit }, chunk));
  if (!loss.requiresGrad) return loss;
  const [gLogp, gEntropy] = torch.autograd.grad(loss, [logp, entropy], { allowUnused: true });
  const dx = torch.linearLogprobGradChunk(
    pass.scratch,
    xs,
    head.weight,
    ys,
    pass.temperature,
    { lse, entropy },
    { logp: gLogp, entropy: gEntropy },
    pass.into,
    pass.gradFilter,
  );
  pass.gradX.narrow(0, chunk.start, rows).copy_(dx);
  return loss.detach();
}

/**
 * Runs `lossOfChunk` on each chunk's stats and returns the summed loss as a scalar whose backward
 * hands the gradients computed here to x (keeping x's graph), weight and bias.
 */
export function singlePassLoss(
  x: Tensor,
  head: LmHead,
  targets: Tensor,
  chunks: readonly TokenChunk[],
  lossOfChunk: ChunkLoss,
  options: HeadOptions = {},
): Tensor {
  const xd = x.detach();
  const gradWeight = torch.zerosLike(head.weight, { requiresGrad: false });
  const gradBias = head.bias ? torch.zerosLike(head.bias, { requiresGrad: false }) : null;
  const largest = Math.max(1, ...chunks.map((c) => c.end - c.start));
  const pass = {
    scratch: torch.empty([largest, head.weight.shape[0]!], { dtype: xd.dtype }),
    temperature: options.temperature ?? 1,
    gradFilter: gradFilterFor(x, options),
    gradX: torch.zerosLike(xd),
    into: { weight: gradWeight, bias: gradBias },
  };
  let total = torch.zeros([], { dtype: xd.dtype });
  try {
    for (const chunk of chunks) {
      const value = torch.tidy(() => singlePassChunk(xd, head, targets, chunk, lossOfChunk, pass));
      const next = total.add(value);
      total.dispose();
      value.dispose();
      total = next;
    }
    const grads = { x: pass.gradX, weight: gradWeight, bias: gradBias };
    return torch.attachGradients(total, { x, weight: head.weight, bias: head.bias }, grads);
  } finally {
    for (const t of [total, pass.scratch, pass.gradX, gradWeight, gradBias]) t?.dispose();
  }
}

/**
 * A loss over the layout's tokens by the configured path: eager (materialised logits), the fused
 * two-pass Function when the loss couples chunks, else the fused single pass.
 */
export function lossOverTokens(
  x: Tensor,
  head: LmHead,
  layout: TokenLayout,
  options: HeadOptions & { implementation: 'fused' | 'eager'; coupled: boolean },
  lossOfChunk: ChunkLoss,
): Tensor {
  if (options.implementation === 'eager') {
    return lossOfChunk(eagerTokenStats(x, head, layout.targets, options), layout.whole);
  }
  [x, head] = float32Head(x, head);
  if (options.coupled) return lossOfChunk(fusedTokenStats(x, head, layout.targets, options), layout.whole);
  return singlePassLoss(x, head, layout.targets, layout.chunks, lossOfChunk, options);
}
