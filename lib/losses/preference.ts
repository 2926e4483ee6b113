// DPO-family and MPO losses from a model's last hidden states in one call: select completion
// tokens, run the LM head through the fused kernel, reduce to sequence log-probs, mix the loss
// types, and report TRL's metrics. A step is then: forward, `loss.compute(...)`, backward.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import {
  parseConfig,
  PreferenceLossConfigSchema,
  type PreferenceLossConfig,
  type PreferenceLossConfigInput,
} from './config.js';
import { BATCH_COUPLED_LOSSES, scoresOf, type PairLogps } from './dpo.js';
import type { LmHead } from './fused_linear.js';
import {
  addPairMetrics,
  bcoShift,
  dpoOptions,
  mixPairLosses,
  usesBcoShift,
  type PairNormalisers,
} from './pair_loss.js';
import { sequenceLogps, type ReferenceHidden } from './reference.js';
import { WithRunningMoments } from './running_moments.js';
import { sumBySlot } from './token_layout.js';
import {
  checkTokenBatch,
  modeOf,
  normaliserOf,
  targetsOf,
  tokenLoss,
  type ChunkInput,
  type ComputeOptions,
  type LossResult,
} from './token_loss.js';

export interface PreferenceBatch {
  /** [2P, T, H] last hidden states: P chosen rows, then the P rejected rows in the same order. */
  hidden: Tensor;
  /** [2P, T] int64: the token each position predicts, ignoreIndex outside the completions. */
  targets: Tensor;
  /** Reference log-probs: precomputed sums [P] each ... */
  refChosenLogps?: Tensor;
  refRejectedLogps?: Tensor;
  /**
   * ... or the reference model's hidden states with its own head: a frozen copy's lmHead(), or the
   * policy's lmHead() read while its adapters are disabled.
   */
  ref?: ReferenceHidden;
}

// What a chunk reads of the whole batch.
interface BatchSide {
  refChosen: Tensor; // [P]
  refRejected: Tensor; // [P]
  tokens: Tensor; // [2P] completion tokens per row, >= 1
  rowTokens: readonly number[];
}

export class PreferenceLoss extends WithRunningMoments {
  readonly config: PreferenceLossConfig;

  constructor(config: PreferenceLossConfigInput = {}) {
    super();
    this.config = parseConfig(PreferenceLossConfigSchema, config, 'preference loss config');
  }

  compute(batch: PreferenceBatch, head: LmHead, options: ComputeOptions = {}): LossResult {
    const mode = modeOf(options);
    const targets = targetsOf(batch, 'preference loss');
    const [rows] = checkTokenBatch(batch.hidden, targets);
    if (rows % 2 !== 0) {
      throw new RangeError(`hidden holds ${rows} rows; a preference batch needs chosen, then rejected rows (even)`);
    }
    const pairs = rows / 2;
    const c = this.config;
    const groups = Array.from({ length: pairs }, (_, i) => [i, pairs + i]);
    const coupled = usesBcoShift(c) || c.lossType.some((t) => BATCH_COUPLED_LOSSES.has(t));
    return tokenLoss({ hidden: batch.hidden, targets, groups, head, config: c, coupled }, (layout) => {
      const [refChosen, refRejected] = this.referenceLogps(batch, targets, pairs);
      const side: BatchSide = {
        refChosen,
        refRejected,
        tokens: torch.tensor(
          Float64Array.from(layout.rowTokens, (n) => Math.max(n, 1)),
          { dtype: batch.hidden.dtype },
        ),
        rowTokens: layout.rowTokens,
      };
      const chosenTokens = layout.rowTokens.slice(0, pairs).reduce((a, b) => a + b, 0);
      const norm: PairNormalisers = {
        pairs: normaliserOf(options, 'pairs', pairs),
        chosenTokens: normaliserOf(options, 'chosenTokens', Math.max(chosenTokens, 1)),
      };
      return (input) => this.chunkLoss(input, side, norm, mode);
    });
  }

  private referenceLogps(batch: PreferenceBatch, targets: Tensor, pairs: number): [Tensor, Tensor] {
    const dtype = batch.hidden.dtype;
    if ('refHidden' in batch) {
      throw new TypeError("preference loss: refHidden is now ref: { hidden, head } (the reference's own LM head)");
    }
    const { refChosenLogps, refRejectedLogps } = batch;
    if (refChosenLogps && refRejectedLogps) {
      for (const [name, t] of [
        ['refChosenLogps', refChosenLogps],
        ['refRejectedLogps', refRejectedLogps],
      ] as const) {
        if (t.shape.length !== 1 || t.shape[0] !== pairs) {
          throw new RangeError(`${name} must have shape [${pairs}], got [${t.shape}]`);
        }
      }
      return [refChosenLogps.detach().to({ dtype }), refRejectedLogps.detach().to({ dtype })];
    }
    if (!batch.ref) {
      throw new TypeError('preference loss: give refChosenLogps/refRejectedLogps or ref: { hidden, head }');
    }
    const sums = sequenceLogps(batch.ref.hidden, batch.ref.head, targets, this.config).to({ dtype });
    return [sums.narrow(0, 0, pairs), sums.narrow(0, pairs, pairs)];
  }

  // The chunk's share of the batch loss (its pairs' terms over the batch's divisors) and metrics.
  private chunkLoss(input: ChunkInput, side: BatchSide, norm: PairNormalisers, mode: 'train' | 'eval'): Tensor {
    const { stats, chunk, metrics } = input;
    const c = this.config;
    const k = chunk.rows.length / 2;
    const pairIds = chunk.rowIds.narrow(0, 0, k); // chosen row i is pair i
    const sums = sumBySlot(stats.logp, chunk);
    const tokens = side.tokens.indexSelect(0, chunk.rowIds);
    const p: PairLogps = {
      chosen: sums.narrow(0, 0, k),
      rejected: sums.narrow(0, k, k),
      refChosen: side.refChosen.indexSelect(0, pairIds),
      refRejected: side.refRejected.indexSelect(0, pairIds),
      chosenTokens: tokens.narrow(0, 0, k),
      rejectedTokens: tokens.narrow(0, k, k),
    };
    // A coupled loss runs one chunk: the whole batch, as the running-mean shift needs.
    const options = dpoOptions(c, bcoShift(p, c, this.running, mode));
    const scores = scoresOf(p, options);
    addPairMetrics(metrics, p, scores, c.beta);
    addTokenMetrics(input, side.rowTokens, k, p.chosen);
    return mixPairLosses(p, scores, c, options, norm).loss;
  }
}

// logits/* (token-weighted vocabulary-mean logit), nll_loss (per chosen token) and entropy of a
// chunk whose first k slots are chosen rows.
function addTokenMetrics(
  { stats, chunk, metrics }: ChunkInput,
  rowTokens: readonly number[],
  k: number,
  chosenLogps: Tensor,
): void {
  const tokensOf = (rows: number[]): number => rows.reduce((n, r) => n + rowTokens[r]!, 0);
  const chosenTokens = tokensOf(chunk.rows.slice(0, k));
  const logits = sumBySlot(stats.meanLogit.detach(), chunk);
  metrics.add('logits/chosen', logits.narrow(0, 0, k), chosenTokens);
  metrics.add('logits/rejected', logits.narrow(0, k, k), tokensOf(chunk.rows.slice(k)));
  metrics.add('nll_loss', chosenLogps.neg(), chosenTokens);
  metrics.add('entropy', stats.entropy, chunk.end - chunk.start);
}
