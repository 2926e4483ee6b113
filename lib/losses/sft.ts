// Supervised fine-tuning's loss (TRL SFTTrainer's chunked_nll): the negative log-likelihood of the
// labelled tokens, a mean over tokens, with the LM head run only on those tokens in chunks.
//   loss = -sum_t log p(target_t) / N,   N = labelled tokens of the batch (of the accumulated batch
//   when normalisers.tokens is given, TRL's num_items_in_batch)
import type { Tensor } from '../torch/index.js';
import { parseConfig, SftLossConfigSchema, type SftLossConfig, type SftLossConfigInput } from './config.js';
import type { LmHead } from './fused_linear.js';
import {
  checkTokenBatch,
  normaliserOf,
  targetsOf,
  tokenLoss,
  type ComputeOptions,
  type LossResult,
} from './token_loss.js';

export interface SftBatch {
  hidden: Tensor; // [R, T, H]
  targets: Tensor; // [R, T] int64: the token each position predicts, ignoreIndex where no loss applies
}

export class SftLoss {
  readonly config: SftLossConfig;

  constructor(config: SftLossConfigInput = {}) {
    this.config = parseConfig(SftLossConfigSchema, config, 'SFT loss config');
  }

  compute(batch: SftBatch, head: LmHead, options: ComputeOptions = {}): LossResult {
    const targets = targetsOf(batch, 'SFT loss');
    const [rows] = checkTokenBatch(batch.hidden, targets);
    const groups = Array.from({ length: rows }, (_, r) => [r]);
    const input = { hidden: batch.hidden, targets, groups, head, config: this.config, coupled: false };
    return tokenLoss(input, (layout, metrics) => {
      const own = Math.max(layout.targets.shape[0]!, 1);
      const tokens = normaliserOf(options, 'tokens', own);
      return ({ stats }) => {
        const n = stats.logp.shape[0]!;
        metrics.add('nll_loss', stats.logp.neg(), n);
        metrics.add('entropy', stats.entropy, n);
        return stats.logp.sum().neg().div(tokens);
      };
    });
  }
}
