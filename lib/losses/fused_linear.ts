// The LM head + log-softmax, three ways, all returning per-token {logp, entropy, meanLogit}:
//   eager      logits materialised [N, V] with the tensor API (the reference; what TRL does);
//   twoPass    the fused kernel as an autograd Function: backward recomputes each chunk's logits
//              (8NHV FLOPs, memory O(chunk x V)); composes with any loss;
//   singlePass the fused kernel with the loss evaluated chunk by chunk inside the forward, so the
//              gradients come out of the same pass (6NHV FLOPs); needs a loss that is a sum over
//              the layout's chunks.
import { native as N } from '../torch/native.js';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { TokenChunk, TokenLayout } from './token_layout.js';

export interface LmHead {
  weight: Tensor; // [V, H]
  bias?: Tensor | null; // [V]
}

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

const handle = (t: Tensor | null | undefined): number => t?.handle ?? 0;
const wrap = (h: number): Tensor => new torch.Tensor(h);

/** Reference path: the [N, V] logits in full. x [N, H], labels [N] int64. */
export function eagerTokenStats(x: Tensor, head: LmHead, labels: Tensor, options: HeadOptions = {}): TokenStats {
  const logits = torch.nn.functional.linear(x, head.weight, head.bias);
  const z = logits.div(options.temperature ?? 1);
  const logprobs = z.logSoftmax(-1);
  const valid = labels.ge(0);
  const logp = logprobs.gather(1, labels.clamp(0).unsqueeze(1)).squeeze(1).mul(valid);
  const entropy = logprobs.exp().mul(logprobs).sum(-1).neg();
  return { logp, entropy, meanLogit: logits.mean(-1) };
}

/** Fused kernel as an autograd Function; gradients flow to x, weight and bias. */
export function fusedTokenStats(x: Tensor, head: LmHead, labels: Tensor, options: HeadOptions = {}): TokenStats {
  const [logp, entropy, meanLogit] = (
    N.linearLogprobs(x.handle, head.weight.handle, handle(head.bias), labels.handle, options.temperature ?? 1, chunkRows(options),
      gradFilterFor(x, options)) as number[]
  ).map(wrap) as [Tensor, Tensor, Tensor];
  return { logp, entropy, meanLogit };
}

/** Forward-only stats (reference models, KL passes): no graph, no [N, V] buffer. */
export function tokenStatsNoGrad(x: Tensor, head: LmHead, labels: Tensor, options: HeadOptions = {}): TokenStats {
  const [logp, entropy, lse, meanLogit] = (
    N.linearLogprobStats(x.handle, head.weight.handle, handle(head.bias), labels.handle, options.temperature ?? 1, chunkRows(options)) as number[]
  ).map(wrap) as [Tensor, Tensor, Tensor, Tensor];
  lse.dispose();
  return { logp, entropy, meanLogit };
}

const chunkRows = (options: HeadOptions): number => {
  const size = options.chunkSize ?? 1024;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`chunkSize must be a positive integer, got ${size}`);
  return size;
};

export type ChunkLoss = (stats: TokenStats, chunk: TokenChunk) => Tensor;

/**
 * Runs `lossOfChunk` on each chunk's stats and returns the summed loss as a scalar whose backward
 * hands the gradients computed here to x (keeping x's graph), weight and bias.
 */
export function singlePassLoss(x: Tensor, head: LmHead, labels: Tensor, chunks: readonly TokenChunk[], lossOfChunk: ChunkLoss, options: HeadOptions = {}): Tensor {
  const temperature = options.temperature ?? 1;
  const gradFilter = gradFilterFor(x, options);
  const xd = x.detach();
  const gradX = torch.zerosLike(xd);
  const gradWeight = torch.zerosLike(head.weight, { requiresGrad: false });
  const gradBias = head.bias ? torch.zerosLike(head.bias) : null;
  const largest = Math.max(1, ...chunks.map((c) => c.end - c.start));
  const scratch = torch.empty([largest, head.weight.shape[0]!], { dtype: xd.dtype });
  let total = torch.zeros([], { dtype: xd.dtype });
  for (const chunk of chunks) {
    const value = torch.tidy(() => {
      const xs = xd.narrow(0, chunk.start, chunk.end - chunk.start);
      const ys = labels.narrow(0, chunk.start, chunk.end - chunk.start);
      const [logp, entropy, lse, meanLogit] = (
        N.linearLogprobStatsChunk(xs.handle, head.weight.handle, handle(head.bias), ys.handle, temperature, scratch.handle) as number[]
      ).map(wrap) as [Tensor, Tensor, Tensor, Tensor];
      logp.requiresGrad_(true);
      entropy.requiresGrad_(true);
      const loss = torch.enableGrad(() => lossOfChunk({ logp, entropy, meanLogit }, chunk));
      if (!loss.requiresGrad) return loss;
      const [gLogp, gEntropy] = torch.autograd.grad(loss, [logp, entropy], { allowUnused: true });
      const dx = wrap(
        N.linearLogprobGradChunk(scratch.handle, xs.handle, head.weight.handle, ys.handle, temperature, lse.handle,
          entropy.handle, handle(gLogp), handle(gEntropy), 0, gradWeight.handle, handle(gradBias), gradFilter),
      );
      gradX.narrow(0, chunk.start, chunk.end - chunk.start).copy_(dx);
      return loss.detach();
    });
    const next = total.add(value);
    total.dispose();
    value.dispose();
    total = next;
  }
  scratch.dispose();
  const loss = wrap(N.attachGradients(total.handle, x.handle, head.weight.handle, handle(head.bias), gradX.handle, gradWeight.handle, handle(gradBias)));
  for (const t of [total, gradX, gradWeight, gradBias]) t?.dispose();
  return loss;
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
  if (options.implementation === 'eager') return lossOfChunk(eagerTokenStats(x, head, layout.labels, options), layout.whole);
  if (options.coupled) return lossOfChunk(fusedTokenStats(x, head, layout.labels, options), layout.whole);
  return singlePassLoss(x, head, layout.labels, layout.chunks, lossOfChunk, options);
}
