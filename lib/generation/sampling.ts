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

/** logits [B, V] to one token per row. */
export function chooseNext(logits: Tensor, options: SamplingOptions = {}): Choice {
  const temperature = options.temperature ?? 1;
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);
  return torch.tidy(() => {
    const scaled = logits.float().div(temperature);
    const logProbs = scaled.logSoftmax(-1);
    const allowed = suppressed(scaled, options.suppressTokenIds);
    const tokens = options.doSample
      ? filtered(allowed, options).softmax(-1).multinomial(1).squeeze(1)
      : allowed.argmax(-1);
    return { tokens, logprobs: logProbs.gather(1, tokens.unsqueeze(1)).squeeze(1) };
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
