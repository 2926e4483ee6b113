// The preference loss over sequence log-probs: each configured type's mean over the pairs, mixed
// by lossWeights (TRL's sum_k w_k mean(loss_k)), plus InternVL's rpoAlpha x NLL of the chosen
// completions. PreferenceLoss runs it chunk by chunk over the fused LM head; preferenceLossFromLogps
// runs it on log-probs the caller already has (their own model, a cached reference, a test).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import {
  PreferenceLossConfigSchema,
  parseConfig,
  type PreferenceLossConfig,
  type PreferenceLossConfigInput,
} from './config.js';
import { DPO_LOSSES, scoresOf, type DpoLossOptions, type DpoLossType, type PairLogps, type PairScores } from './dpo.js';
import { MetricSums, metricMeans } from './metrics.js';
import { RunningMoments } from './running_moments.js';
import { modeOf, type ComputeOptions, type LossResult } from './token_loss.js';

/** Batch-wide divisors: a chunk's pairs then contribute their share of the batch's means. */
export interface PairNormalisers {
  pairs: number;
  /** Completion tokens of every chosen row of the batch (>= 1): the sft / rpo NLL's divisor. */
  chosenTokens: number;
}

export function dpoOptions(c: PreferenceLossConfig, bcoShift: Tensor | null): DpoLossOptions {
  const { beta, labelSmoothing, fDivergenceType, fAlphaDivergenceCoef, discopopTau, trlVersion } = c;
  return { beta, labelSmoothing, fDivergenceType, fAlphaDivergenceCoef, discopopTau, trlVersion, bcoShift };
}

/** Whether bco_pair is shifted by the running mean reward, which needs the whole batch first. */
export const usesBcoShift = (c: PreferenceLossConfig): boolean => c.bcoRunningMean && c.lossType.includes('bco_pair');

/**
 * Legacy bco_pair's D: the running mean of the batch's mean implicit reward mean(cat(beta r_c,
 * beta r_r)), updated with this batch before use in training. (TRL <= 0.28 also updates it on
 * evaluation batches; here an evaluation batch leaves the training state alone.) `p` is the whole batch.
 */
export function bcoShift(
  p: PairLogps,
  c: PreferenceLossConfig,
  running: RunningMoments,
  mode: 'train' | 'eval',
): Tensor | null {
  if (!usesBcoShift(c)) return null;
  if (mode === 'train') {
    const rewards = torch
      .cat([p.chosen.sub(p.refChosen), p.rejected.sub(p.refRejected)])
      .detach()
      .mul(c.beta);
    running.update([rewards.mean().item() as number]);
  }
  return torch.full([], running.mean, { dtype: p.chosen.dtype });
}

/**
 * The configured mix over the pairs `p` (some or all of a batch): sum_k w_k (sum over p of
 * loss_k) / pairs, with sft's NLL = -sum(lp_c) / chosenTokens, plus rpoAlpha x that NLL. Summed
 * over a batch's chunks it is the batch's loss; `perType` holds each type's unweighted share.
 */
export function mixPairLosses(
  p: PairLogps,
  scores: PairScores,
  c: PreferenceLossConfig,
  options: DpoLossOptions,
  norm: PairNormalisers,
): { loss: Tensor; perType: Record<string, Tensor> } {
  const chosenNll = p.chosen.sum().neg().div(norm.chosenTokens);
  const perType: Record<string, Tensor> = {};
  let loss = torch.zeros([], { dtype: p.chosen.dtype });
  c.lossType.forEach((type, k) => {
    const term = type === 'sft' ? chosenNll : DPO_LOSSES[type as DpoLossType](p, scores, options).sum().div(norm.pairs);
    perType[type] = term;
    loss = loss.add(term.mul(c.lossWeights[k]!));
  });
  if (c.rpoAlpha) loss = loss.add(chosenNll.mul(c.rpoAlpha));
  return { loss, perType };
}

/** TRL's per-pair metrics: rewards (beta r) per side, accuracies, summed log-probs per side. */
export function addPairMetrics(metrics: MetricSums, p: PairLogps, scores: PairScores, beta: number): void {
  const pairs = p.chosen.shape[0]!;
  metrics.add('rewards/chosen', scores.rc.mul(beta), pairs);
  metrics.add('rewards/rejected', scores.rr.mul(beta), pairs);
  metrics.add('rewards/accuracies', scores.rc.gt(scores.rr), pairs);
  metrics.add('logps/chosen', p.chosen, pairs);
  metrics.add('logps/rejected', p.rejected, pairs);
}

export interface PreferenceLogps {
  chosenLogps: Tensor; // [P] summed completion log-probs under the policy
  rejectedLogps: Tensor; // [P]
  refChosenLogps: Tensor; // [P] under the reference (no gradient flows to it)
  refRejectedLogps: Tensor; // [P]
  /** [P] completion token counts: ipo and sigmoid_norm divide by them, sft and rpoAlpha by the chosen total. */
  chosenTokens?: Tensor | readonly number[];
  rejectedTokens?: Tensor | readonly number[];
}

export interface PreferenceLogpsOptions extends ComputeOptions {
  /** Legacy bco_pair's running mean, updated in 'train' mode; default a fresh one (D = this batch's mean reward). */
  running?: RunningMoments;
}

export interface PreferenceLogpsResult extends LossResult {
  /** Each configured type's unweighted mean over the pairs (sft: the NLL). */
  perType: Record<string, Tensor>;
}

const TOKEN_TYPES = ['ipo', 'sigmoid_norm', 'sft'];

function checkLogps(logps: PreferenceLogps): number {
  const names = ['chosenLogps', 'rejectedLogps', 'refChosenLogps', 'refRejectedLogps'] as const;
  const pairs = logps.chosenLogps instanceof torch.Tensor ? logps.chosenLogps.shape[0] : undefined;
  for (const name of names) {
    const t = logps[name];
    if (!(t instanceof torch.Tensor)) throw new TypeError(`preferenceLossFromLogps: ${name} must be a Tensor [P]`);
    if (t.ndim !== 1 || t.shape[0] !== pairs) {
      throw new RangeError(`preferenceLossFromLogps: ${name} must be [${pairs}], got [${t.shape}]`);
    }
  }
  return pairs!;
}

// Token counts on the host: the NLL's divisor and the metrics' counts are numbers.
function tokenCounts(value: Tensor | readonly number[], name: string, pairs: number): number[] {
  const counts =
    value instanceof torch.Tensor
      ? Array.from(torch.tidy(() => value.detach().to({ dtype: 'float64' }).contiguous().data() as Float64Array))
      : Array.from(value, Number);
  if (counts.length !== pairs || counts.some((n) => !(n >= 0))) {
    throw new RangeError(`preferenceLossFromLogps: ${name} must hold ${pairs} counts >= 0, got [${counts}]`);
  }
  return counts;
}

/**
 * The preference loss from sequence log-probs, TRL's functional form: every configured loss type,
 * mixed by lossWeights, with the config's defaults (PreferenceLossConfigSchema; `{}` is TRL's
 * sigmoid DPO with beta 0.1). The same formulas as PreferenceLoss.compute.
 */
export function preferenceLossFromLogps(
  logps: PreferenceLogps,
  config: PreferenceLossConfigInput = {},
  options: PreferenceLogpsOptions = {},
): PreferenceLogpsResult {
  const c = parseConfig(PreferenceLossConfigSchema, config, 'preference loss config');
  const mode = modeOf(options);
  const pairs = checkLogps(logps);
  const needsTokens = c.lossType.some((t) => TOKEN_TYPES.includes(t)) || !!c.rpoAlpha;
  if (needsTokens && (!logps.chosenTokens || !logps.rejectedTokens)) {
    const what = `${c.lossType.join(', ')}${c.rpoAlpha ? ' with rpoAlpha' : ''}`;
    throw new TypeError(`preferenceLossFromLogps: ${what} needs chosenTokens and rejectedTokens`);
  }
  const metrics = new MetricSums();
  try {
    return torch.tidy(() => {
      const dtype = logps.chosenLogps.dtype;
      const counts = (v: Tensor | readonly number[] | undefined, name: string): number[] =>
        v ? tokenCounts(v, name, pairs) : new Array<number>(pairs).fill(1);
      const chosenCounts = counts(logps.chosenTokens, 'chosenTokens');
      const perPair = (n: number[]): Tensor =>
        torch.tensor(
          Float64Array.from(n, (v) => Math.max(v, 1)),
          { dtype },
        );
      const p: PairLogps = {
        chosen: logps.chosenLogps,
        rejected: logps.rejectedLogps,
        refChosen: logps.refChosenLogps.detach().to({ dtype }),
        refRejected: logps.refRejectedLogps.detach().to({ dtype }),
        chosenTokens: perPair(chosenCounts),
        rejectedTokens: perPair(counts(logps.rejectedTokens, 'rejectedTokens')),
      };
      const lossOptions = dpoOptions(c, bcoShift(p, c, options.running ?? new RunningMoments(), mode));
      const scores = scoresOf(p, lossOptions);
      const chosenTokens = Math.max(
        chosenCounts.reduce((a, b) => a + b, 0),
        1,
      );
      const { loss, perType } = mixPairLosses(p, scores, c, lossOptions, { pairs, chosenTokens });
      addPairMetrics(metrics, p, scores, c.beta);
      if (logps.chosenTokens) metrics.add('nll_loss', p.chosen.neg(), chosenTokens);
      metrics.add('loss', loss, 1);
      const totals = metrics.read();
      return { loss, perType, metrics: metricMeans(totals), totals };
    });
  } finally {
    metrics.dispose();
  }
}
