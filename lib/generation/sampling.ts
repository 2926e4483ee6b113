// Choosing the next token from last-position logits: greedy, or sampling after transformers'
// warpers in their order (temperature, then top-k, then top-p). Suppressed tokens (image
// placeholders, pad) are set to -inf first, so neither greedy nor sampling can pick them.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export interface SamplingOptions {
  /** false: greedy (argmax). */
  doSample?: boolean;
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP (1 = off). */
  topP?: number;
  /** Token ids never chosen: their logits become -inf before the warpers (and before argmax). */
  suppressTokenIds?: readonly number[];
}

export interface Choice {
  /** [B] int64 */
  tokens: Tensor;
  /**
   * [B] float32: log-probability of each chosen token under softmax(logits / temperature) of the
   * logits as given: no suppression, no top-k/top-p (the policy's own distribution, as a forward
   * over the sequence recomputes it).
   */
  logprobs: Tensor;
}

/**
 * logits [B, V] to one token per row. `uniforms` ([B] float32 in [0, 1), sampling only): the number
 * each row's inverse-CDF draw uses instead of torch's generator, so that a row's token depends on
 * its own random stream and not on the rows beside it (continuous batching, streamUniform).
 */
export function chooseNext(logits: Tensor, options: SamplingOptions = {}, uniforms?: Tensor): Choice {
  const temperature = options.temperature ?? 1;
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);
  return torch.tidy(() => {
    const scaled = logits.float().div(temperature);
    const logZ = scaled.logsumexp(-1, true);
    const allowed = suppressed(scaled, options.suppressTokenIds);
    const tokens = options.doSample ? sample(filtered(allowed, options), uniforms) : allowed.argmax(-1);
    return { tokens, logprobs: scaled.gather(1, tokens.unsqueeze(1)).sub(logZ).squeeze(1) };
  });
}

function suppressed(scaled: Tensor, ids: readonly number[] | undefined): Tensor {
  if (ids === undefined || ids.length === 0) return scaled;
  const vocab = scaled.shape[1]!;
  const blocked = new Uint8Array(vocab);
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(`Expected token ids in [0, ${vocab}) for suppressTokenIds but received ${id}`);
    }
    blocked[id] = 1;
  }
  if (blocked.every((b) => b === 1)) throw new RangeError(`suppressTokenIds blocks all ${vocab} tokens`);
  return scaled.maskedFill(torch.tensor(blocked, { dtype: 'bool', device: scaled.device }), -Infinity);
}

// One token per row drawn from softmax(scaled) by inverse CDF: the first token whose cumulative
// weight exceeds u · total, u uniform in [0, 1). The same distribution as softmax + multinomial,
// with one random number per row instead of multinomial's one exponential draw per vocabulary
// entry (most of a sampling step's time at a vocabulary of thousands). Zero-weight tokens
// (suppressed, filtered) cover an empty stretch of the CDF and are never drawn. `uniforms` [B]
// replaces torch.rand's draws (per-row streams).
function sample(scaled: Tensor, uniforms?: Tensor): Tensor {
  const [rows, vocab] = scaled.shape as [number, number];
  const weights = scaled.sub(scaled.amax(-1, true)).exp_();
  const cdf = weights.cumsum(-1);
  const draws = uniforms === undefined ? torch.rand([rows, 1], { device: scaled.device }) : rowUniforms(uniforms, rows);
  const u = draws.mul(cdf.narrow(1, vocab - 1, 1));
  const index = cdf.le(u).sum(1);
  // u · total can round up to total: then no token exceeds it, and the last token with weight is meant.
  if (!(index.eq(vocab).any().item() as boolean)) return index;
  const last = weights
    .gt(0)
    .mul(torch.arange(0, vocab, { dtype: 'int64', device: scaled.device }))
    .argmax(-1);
  return torch.where(index.eq(vocab), last, index);
}

function rowUniforms(uniforms: Tensor, rows: number): Tensor {
  if (uniforms.numel() !== rows) {
    throw new RangeError(`Expected ${rows} uniforms (one per row) but received shape [${uniforms.shape}]`);
  }
  return uniforms.float().reshape([rows, 1]);
}

function filtered(scaled: Tensor, options: SamplingOptions): Tensor {
  let out = scaled;
  const vocab = scaled.shape[1]!;
  const topK = options.topK ?? 0;
  if (topK > 0 && topK < vocab) {
    const kth = out.topk(topK, -1)[0].narrow(1, topK - 1, 1);
    out = out.maskedFill(out.lt(kth), -Infinity);
  }
  const topP = options.topP ?? 1;
  if (topP < 1) {
    const [sorted, order] = out.sort(-1, true);
    const probs = sorted.softmax(-1);
    // A token is dropped when the tokens ranked above it already reach topP; the first always stays.
    const before = probs.cumsum(-1).sub(probs);
    const drop = torch.zerosLike(before, { dtype: 'bool' }).scatter(1, order, before.ge(topP));
    out = out.maskedFill(drop, -Infinity);
  }
  return out;
}
