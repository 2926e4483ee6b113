// TRL's DPO loss types as per-pair formulas over sequence log-probs: the current form (TRL >= 0.29)
// or, with trlVersion 'legacy', TRL <= 0.28's where they differ (trl_peft.md §1.3-1.5).
//
// Notation per pair: lp_c, lp_r summed completion log-probs under the policy; ref_c, ref_r under
// the reference; r = lp - ref; s = g(r) the f-divergence score (reverse KL: s = r); delta = s_c - s_r;
// n_c, n_r completion token counts. Every function returns a [P] tensor of per-pair losses.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export interface PairLogps {
  chosen: Tensor; // [P] lp_c
  rejected: Tensor; // [P] lp_r
  refChosen: Tensor; // [P] ref_c
  refRejected: Tensor; // [P] ref_r
  chosenTokens: Tensor; // [P] n_c (float, >= 1)
  rejectedTokens: Tensor; // [P] n_r
}

export type FDivergence = 'reverse_kl' | 'forward_kl' | 'js_divergence' | 'alpha_divergence';

export type TrlVersion = 'current' | 'legacy';

export interface DpoLossOptions {
  beta: number;
  labelSmoothing: number;
  fDivergenceType: FDivergence;
  /** alpha_divergence's alpha; under 'legacy' TRL <= 0.28's alpha, which is 1 - the current one. */
  fAlphaDivergenceCoef: number;
  discopopTau: number;
  trlVersion: TrlVersion;
  /** Running-mean shift D of TRL <= 0.28 / InternVL bco_pair; null for the current TRL form. */
  bcoShift: Tensor | null;
}

export type ScoreOptions = Pick<DpoLossOptions, 'fDivergenceType' | 'fAlphaDivergenceCoef' | 'trlVersion'>;

export interface PairScores {
  rc: Tensor; // r_c
  rr: Tensor; // r_r
  sc: Tensor; // s_c
  sr: Tensor; // s_r
  delta: Tensor; // s_c - s_r
}

const F = torch.nn.functional;
const logsig = (x: Tensor): Tensor => F.logsigmoid(x);

// g(r) per f-divergence (TRL's _get_f_divergence scores); alpha's exponent is clamped at 80. Legacy
// alpha's delta (e^(-a r_r) - e^(-a r_c)) / a is the current form's with alpha = 1 - a.
function fScore(r: Tensor, o: ScoreOptions): Tensor {
  switch (o.fDivergenceType) {
    case 'reverse_kl':
      return r;
    case 'forward_kl':
      return r.neg().exp().neg();
    case 'js_divergence':
      return logsig(r);
    case 'alpha_divergence': {
      const a = o.trlVersion === 'legacy' ? 1 - o.fAlphaDivergenceCoef : o.fAlphaDivergenceCoef;
      if (Math.abs(a - 1) < 1e-6) return r;
      return r
        .mul(a - 1)
        .clamp(null, 80)
        .exp()
        .div(a - 1);
    }
  }
}

/** The per-pair rewards r and f-divergence scores s every loss type reads. */
export function scoresOf(p: PairLogps, o: ScoreOptions): PairScores {
  const rc = p.chosen.sub(p.refChosen);
  const rr = p.rejected.sub(p.refRejected);
  const sc = fScore(rc, o);
  const sr = fScore(rr, o);
  return { rc, rr, sc, sr, delta: sc.sub(sr) };
}

// -(1 - eps) log sigma(z) - eps log sigma(-z): cDPO's label smoothing, also aot's form.
const smoothedSigmoid = (z: Tensor, eps: number): Tensor =>
  logsig(z)
    .mul(-(1 - eps))
    .sub(logsig(z.neg()).mul(eps));

type PairLoss = (p: PairLogps, s: PairScores, o: DpoLossOptions) => Tensor;

// Legacy TRL used 1e-3 where exo_pair's label smoothing is 0; current TRL refuses 0.
const LEGACY_EXO_EPSILON = 1e-3;

export const DPO_LOSSES = {
  // Current TRL ignores label smoothing here; legacy applied cDPO's (conservative DPO) smoothing.
  sigmoid: (_p, s, o) => smoothedSigmoid(s.delta.mul(o.beta), o.trlVersion === 'legacy' ? o.labelSmoothing : 0),
  hinge: (_p, s, o) => s.delta.mul(-o.beta).add(1).relu(),
  // IPO (Azar et al. eq. 17) with TRL's length normalisation; beta plays tau.
  ipo: (p, s, o) =>
    s.sc
      .div(p.chosenTokens)
      .sub(s.sr.div(p.rejectedTokens))
      .sub(1 / (2 * o.beta))
      .square(),
  exo_pair: (_p, s, o) => {
    const eps = o.labelSmoothing > 0 || o.trlVersion !== 'legacy' ? o.labelSmoothing : LEGACY_EXO_EPSILON;
    if (!(eps > 0)) {
      throw new RangeError("exo_pair needs labelSmoothing > 0 (current TRL refuses 0; trlVersion 'legacy' uses 1e-3)");
    }
    const z = s.delta.mul(o.beta);
    const qw = z.sigmoid();
    const ql = z.neg().sigmoid();
    return qw.mul(logsig(z).sub(Math.log(1 - eps))).add(ql.mul(logsig(z.neg()).sub(Math.log(eps))));
  },
  nca_pair: (_p, s, o) =>
    logsig(s.sc.mul(o.beta))
      .neg()
      .sub(logsig(s.sc.mul(-o.beta)).mul(0.5))
      .sub(logsig(s.sr.mul(-o.beta)).mul(0.5)),
  robust: (_p, s, o) => {
    const eps = o.labelSmoothing;
    if (!(eps >= 0 && eps < 0.5)) throw new RangeError(`robust needs labelSmoothing in [0, 0.5), got ${eps}`);
    const z = s.delta.mul(o.beta);
    return logsig(z)
      .mul(-(1 - eps))
      .add(logsig(z.neg()).mul(eps))
      .div(1 - 2 * eps);
  },
  // Current TRL: no shift. With bcoShift (TRL <= 0.28, InternVL MPO): rewards are beta * r shifted by D.
  bco_pair: (_p, s, o) => {
    if (o.bcoShift === null)
      return logsig(s.sc.mul(o.beta))
        .neg()
        .sub(logsig(s.sr.mul(-o.beta)));
    const d = o.bcoShift;
    return logsig(s.rc.mul(o.beta).sub(d))
      .neg()
      .sub(logsig(s.rr.mul(o.beta).sub(d).neg()));
  },
  sppo_hard: (_p, s, o) =>
    s.sc
      .sub(1 / (2 * o.beta))
      .square()
      .add(s.sr.add(1 / (2 * o.beta)).square()),
  // AOT (Melnyk et al.): distributional ordering over the batch, so the pairs are coupled.
  aot: (p, _s, o) => {
    const [policy] = p.chosen.sub(p.rejected).sort(0);
    const [reference] = p.refChosen.sub(p.refRejected).sort(0);
    return smoothedSigmoid(policy.sub(reference).mul(o.beta), o.labelSmoothing);
  },
  aot_unpaired: (_p, s, o) => {
    const [chosen] = s.rc.sort(0);
    const [rejected] = s.rr.sort(0);
    return smoothedSigmoid(chosen.sub(rejected).mul(o.beta), o.labelSmoothing);
  },
  apo_zero: (_p, s, o) => s.rc.mul(o.beta).sigmoid().rsub(1).add(s.rr.mul(o.beta).sigmoid()),
  apo_down: (_p, s, o) => s.rc.mul(o.beta).sigmoid().add(s.delta.mul(o.beta).sigmoid().rsub(1)),
  // DiscoPOP (Chris Lu et al.): a log-ratio-modulated blend of the logistic and exponential losses.
  discopop: (_p, s, o) => {
    const z = s.delta.mul(o.beta);
    const m = z.div(o.discopopTau).sigmoid();
    return m.rsub(1).mul(logsig(z).neg()).add(m.mul(z.neg().exp()));
  },
  // SimPO-style length-normalised sigmoid.
  sigmoid_norm: (p, s, o) => logsig(s.sc.div(p.chosenTokens).sub(s.sr.div(p.rejectedTokens)).mul(o.beta)).neg(),
} satisfies Record<string, PairLoss>;

export type DpoLossType = keyof typeof DPO_LOSSES;

/** Loss types whose per-pair value depends on other pairs of the batch (they cannot be chunked by pair). */
export const BATCH_COUPLED_LOSSES: ReadonlySet<string> = new Set(['aot', 'aot_unpaired']);
