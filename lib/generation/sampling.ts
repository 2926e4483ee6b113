// Choosing the next token from last-position logits: greedy, or sampling after transformers'
// warpers in their order (temperature, then top-k, then top-p).
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
}

export interface Choice {
  /** [B] int64 */
  tokens: Tensor;
  /** [B] float32: log-probability of each chosen token under softmax(logits / temperature). */
  logprobs: Tensor;
}

/** logits [B, V] to one token per row. */
export function chooseNext(logits: Tensor, options: SamplingOptions = {}): Choice {
  const temperature = options.temperature ?? 1;
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);
  return torch.tidy(() => {
    const scaled = logits.float().div(temperature);
    const logProbs = scaled.logSoftmax(-1);
    const tokens = options.doSample
      ? filtered(scaled, options).softmax(-1).multinomial(1).squeeze(1)
      : scaled.argmax(-1);
    return { tokens, logprobs: logProbs.gather(1, tokens.unsqueeze(1)).squeeze(1) };
  });
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
