// TRL's logged metrics, accumulated chunk by chunk from detached values and reduced once:
// rewards/{chosen,rejected,accuracies,margins}, logps/{chosen,rejected}, logits/{chosen,rejected}
// (token-weighted means of the vocabulary-mean logit), nll_loss, entropy, loss.
import type { Tensor } from '../torch/index.js';
import type { TokenStats } from './fused_linear.js';
import type { TokenChunk } from './token_layout.js';

const values = (t: Tensor): Float64Array => Float64Array.from(t.detach().to({ dtype: 'float64' }).data() as Float64Array);
const total = (a: ArrayLike<number>): number => {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k]!;
  return s;
};

export class MetricSums {
  private readonly chosenRewards: number[] = [];
  private readonly rejectedRewards: number[] = [];
  private readonly chosenLogps: number[] = [];
  private readonly rejectedLogps: number[] = [];
  private logitSums = { chosen: 0, rejected: 0, chosenTokens: 0, rejectedTokens: 0 };
  private entropySum = 0;
  private nllSum = 0;

  /** Per-pair implicit rewards (beta * r) and summed log-probs of a chunk's pairs. */
  addPairs(chosenRewards: Tensor, rejectedRewards: Tensor, chosenLogps: Tensor, rejectedLogps: Tensor): void {
    this.chosenRewards.push(...values(chosenRewards));
    this.rejectedRewards.push(...values(rejectedRewards));
    this.chosenLogps.push(...values(chosenLogps));
    this.rejectedLogps.push(...values(rejectedLogps));
  }

  /** Token statistics of a chunk whose first `chosenSlots` slots are chosen rows. */
  addTokens(stats: TokenStats, chunk: TokenChunk, chosenSlots: number, chosenNllSum: Tensor): void {
    const slots = chunk.slot.data() as BigInt64Array;
    const mean = values(stats.meanLogit);
    slots.forEach((slot, k) => {
      const side = Number(slot) < chosenSlots ? 'chosen' : 'rejected';
      this.logitSums[side] += mean[k]!;
      this.logitSums[`${side}Tokens`] += 1;
    });
    this.entropySum += total(values(stats.entropy));
    this.nllSum += values(chosenNllSum)[0]!;
  }

  summary(loss: Tensor): Record<string, number> {
    const mean = (a: number[]): number => (a.length ? total(a) / a.length : Number.NaN);
    const pairs = this.chosenRewards.length;
    const wins = this.chosenRewards.filter((c, i) => c > this.rejectedRewards[i]!).length;
    const tokens = this.logitSums.chosenTokens + this.logitSums.rejectedTokens;
    return {
      loss: values(loss)[0]!,
      'rewards/chosen': mean(this.chosenRewards),
      'rewards/rejected': mean(this.rejectedRewards),
      'rewards/accuracies': pairs ? wins / pairs : Number.NaN,
      'rewards/margins': mean(this.chosenRewards.map((c, i) => c - this.rejectedRewards[i]!)),
      'logps/chosen': mean(this.chosenLogps),
      'logps/rejected': mean(this.rejectedLogps),
      'logits/chosen': this.logitSums.chosen / this.logitSums.chosenTokens,
      'logits/rejected': this.logitSums.rejected / this.logitSums.rejectedTokens,
      nll_loss: this.nllSum / this.logitSums.chosenTokens,
      entropy: this.entropySum / tokens,
    };
  }
}
