// losses.PreferenceLoss (DPO family, SFT, MPO, legacy / InternVL bco_pair) against the formulas of
// TRL written out here in plain JS number math (trl_peft.md §1.3-1.5, §1.8), from per-token
// log-probs computed with the tensor API (eager logSoftmax + gather). The fused and eager
// implementations must agree with the formulas and with each other, gradients included, for any
// chunk size.
import { describe, it, expect } from 'vitest';
import { torch, losses } from '../../lib/index.js';
import {
  arr,
  completionLabels,
  eagerTokenExtras,
  eagerTokenLogps,
  expectAllClose,
  expectClose,
  f64,
  freshMoments,
  gradsOf,
  IGNORE,
  logsig,
  long,
  mean,
  num,
  rng,
  rowCounts,
  rowSums,
  runningUpdate,
  sigmoid,
  sum,
  uniform,
  type Tensor,
} from './helpers.js';

// ---- data ----------------------------------------------------------------------------------------

interface PrefData {
  P: number;
  T: number;
  H: number;
  V: number;
  hidden: Float64Array;
  refHidden: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  labels: number[];
}

function makePref(seed: number, P = 4, spans?: Array<[number, number]>, T = 6, H = 5, V = 11): PrefData {
  const next = rng(seed);
  const rows = 2 * P;
  const layout =
    spans ??
    Array.from({ length: rows }, (): [number, number] => {
      const start = 1 + Math.floor(next() * 2);
      return [start, 1 + Math.floor(next() * (T - start))];
    });
  const hidden = uniform(next, rows * T * H, -1, 1);
  const noise = uniform(next, rows * T * H, -0.4, 0.4);
  return {
    P,
    T,
    H,
    V,
    hidden,
    refHidden: hidden.map((h, k) => h + noise[k]!),
    weight: uniform(next, V * H, -1.2, 1.2),
    bias: uniform(next, V, -0.5, 0.5),
    labels: completionLabels(next, layout, T, V),
  };
}

interface Tensors {
  hidden: Tensor;
  refHidden: Tensor;
  labels: Tensor;
  head: { weight: Tensor; bias: Tensor };
}

function tensorsOf(d: PrefData, requiresGrad = false): Tensors {
  const rows = 2 * d.P;
  return {
    hidden: f64(d.hidden, [rows, d.T, d.H], requiresGrad),
    refHidden: f64(d.refHidden, [rows, d.T, d.H]),
    labels: long(d.labels, [rows, d.T]),
    head: { weight: f64(d.weight, [d.V, d.H], requiresGrad), bias: f64(d.bias, [d.V], requiresGrad) },
  };
}

/** Everything the expected values need, from the tensor API's eager log-softmax. */
interface Quantities {
  lp: number[]; // [2P] summed completion log-probs under the policy
  ref: number[]; // [2P] under the reference
  counts: number[]; // [2P] completion tokens
  tokenLogp: number[]; // [2P * T]
  entropy: number[]; // [2P * T]
  meanLogit: number[]; // [2P * T]
}

function quantities(d: PrefData): Quantities {
  return torch.tidy(() => {
    const t = tensorsOf(d);
    const rows = 2 * d.P;
    const tokenLogp = arr(eagerTokenLogps(t.hidden, t.head, t.labels));
    const refTok = arr(eagerTokenLogps(t.refHidden, t.head, t.labels));
    const extras = eagerTokenExtras(t.hidden, t.head);
    return {
      lp: rowSums(tokenLogp, rows, d.T),
      ref: rowSums(refTok, rows, d.T),
      counts: rowCounts(d.labels, rows, d.T),
      tokenLogp,
      entropy: arr(extras.entropy),
      meanLogit: arr(extras.meanLogit),
    };
  });
}

// ---- the formulas, in plain JS ---------------------------------------------------------------------

interface Opts {
  beta: number;
  eps: number;
  legacy?: boolean; // TRL <= 0.28's sigmoid smoothing and exo_pair epsilon
  fdiv: 'reverse_kl' | 'forward_kl' | 'js_divergence' | 'alpha_divergence';
  alpha: number;
  tau: number;
}

const defaults: Opts = { beta: 0.1, eps: 0, fdiv: 'reverse_kl', alpha: 0.5, tau: 0.05 };

interface Pair {
  lpc: number;
  lpr: number;
  refc: number;
  refr: number;
  nc: number; // max(count, 1)
  nr: number;
}

function pairsOf(q: Quantities, P: number): Pair[] {
  return Array.from({ length: P }, (_, i) => ({
    lpc: q.lp[i]!,
    lpr: q.lp[P + i]!,
    refc: q.ref[i]!,
    refr: q.ref[P + i]!,
    nc: Math.max(q.counts[i]!, 1),
    nr: Math.max(q.counts[P + i]!, 1),
  }));
}

/** §1.3: s = g(r). */
function g(r: number, o: Opts): number {
  switch (o.fdiv) {
    case 'reverse_kl':
      return r;
    case 'forward_kl':
      return -Math.exp(-r);
    case 'js_divergence':
      return logsig(r);
    case 'alpha_divergence':
      if (Math.abs(o.alpha - 1) < 1e-6) return r;
      return Math.exp(Math.min((o.alpha - 1) * r, 80)) / (o.alpha - 1);
  }
}

const scores = (p: Pair, o: Opts): { rc: number; rr: number; sc: number; sr: number; delta: number } => {
  const rc = p.lpc - p.refc;
  const rr = p.lpr - p.refr;
  const sc = g(rc, o);
  const sr = g(rr, o);
  return { rc, rr, sc, sr, delta: sc - sr };
};

/** §1.4, per pair. */
const PAIR_FORMULAS: Record<string, (p: Pair, o: Opts) => number> = {
  // §1.4: current TRL's sigmoid has no smoothing; legacy's is cDPO's.
  sigmoid: (p, o) => {
    const z = o.beta * scores(p, o).delta;
    const eps = o.legacy ? o.eps : 0;
    return -(1 - eps) * logsig(z) - eps * logsig(-z);
  },
  hinge: (p, o) => Math.max(0, 1 - o.beta * scores(p, o).delta),
  ipo: (p, o) => {
    const s = scores(p, o);
    return (s.sc / p.nc - s.sr / p.nr - 1 / (2 * o.beta)) ** 2;
  },
  exo_pair: (p, o) => {
    const z = o.beta * scores(p, o).delta;
    const qw = sigmoid(z);
    const ql = sigmoid(-z);
    const eps = o.legacy && o.eps === 0 ? 1e-3 : o.eps;
    return qw * (Math.log(qw) - Math.log(1 - eps)) + ql * (Math.log(ql) - Math.log(eps));
  },
  nca_pair: (p, o) => {
    const s = scores(p, o);
    return -logsig(o.beta * s.sc) - 0.5 * logsig(-o.beta * s.sc) - 0.5 * logsig(-o.beta * s.sr);
  },
  robust: (p, o) => {
    const z = o.beta * scores(p, o).delta;
    return (-(1 - o.eps) * logsig(z) + o.eps * logsig(-z)) / (1 - 2 * o.eps);
  },
  bco_pair: (p, o) => {
    const s = scores(p, o);
    return -logsig(o.beta * s.sc) - logsig(-o.beta * s.sr);
  },
  sppo_hard: (p, o) => {
    const s = scores(p, o);
    return (s.sc - 1 / (2 * o.beta)) ** 2 + (s.sr + 1 / (2 * o.beta)) ** 2;
  },
  apo_zero: (p, o) => {
    const s = scores(p, o);
    return 1 - sigmoid(o.beta * s.rc) + sigmoid(o.beta * s.rr);
  },
  apo_down: (p, o) => {
    const s = scores(p, o);
    return sigmoid(o.beta * s.rc) + 1 - sigmoid(o.beta * s.delta);
  },
  discopop: (p, o) => {
    const z = o.beta * scores(p, o).delta;
    const m = sigmoid(z / o.tau);
    return (1 - m) * -logsig(z) + m * Math.exp(-z);
  },
  sigmoid_norm: (p, o) => {
    const s = scores(p, o);
    return -logsig(o.beta * (s.sc / p.nc - s.sr / p.nr));
  },
};

const ascending = (a: number[]): number[] => [...a].sort((x, y) => x - y);

/** mean over pairs of one loss type (aot / aot_unpaired sort over the batch). */
function typeLoss(type: string, pairs: Pair[], q: Quantities, o: Opts): number {
  const smoothed = (d: number): number => -(1 - o.eps) * logsig(o.beta * d) - o.eps * logsig(-o.beta * d);
  if (type === 'aot' || type === 'aot_unpaired') {
    const a = ascending(pairs.map((p) => (type === 'aot' ? p.lpc - p.lpr : p.lpc - p.refc)));
    const b = ascending(pairs.map((p) => (type === 'aot' ? p.refc - p.refr : p.lpr - p.refr)));
    return mean(a.map((x, i) => smoothed(x - b[i]!)));
  }
  if (type === 'sft') return sftLoss(pairs, q);
  const f = PAIR_FORMULAS[type];
  if (!f) throw new Error(`no formula written for ${type}`);
  return mean(pairs.map((p) => f(p, o)));
}

/** Cross-entropy over the chosen completion tokens, averaged over those tokens. */
function sftLoss(pairs: Pair[], q: Quantities): number {
  const P = pairs.length;
  const tokens = sum(q.counts.slice(0, P));
  return -sum(pairs.map((p) => p.lpc)) / Math.max(tokens, 1);
}

/** §1.5 legacy bco_pair: x = mean(cat(beta r_c, beta r_r)) of a batch feeds the running mean D. */
const batchReward = (pairs: Pair[], beta: number): number =>
  mean([...pairs.map((p) => beta * (p.lpc - p.refc)), ...pairs.map((p) => beta * (p.lpr - p.refr))]);
const legacyBcoLoss = (pairs: Pair[], D: number, beta: number): number =>
  mean(pairs.map((p) => -logsig(beta * (p.lpc - p.refc) - D) - logsig(-(beta * (p.lpr - p.refr) - D))));

// ---- running the library ----------------------------------------------------------------------

interface Run {
  loss: number;
  metrics: Record<string, number>;
  grads: number[][]; // hidden, weight, bias
}

function run(
  config: losses.PreferenceLossConfigInput | losses.PreferenceLoss,
  d: PrefData,
  ref: 'hidden' | 'precomputed' = 'hidden',
  options: losses.ComputeOptions = {},
): Run {
  return torch.tidy(() => {
    const t = tensorsOf(d, true);
    const batch: losses.PreferenceBatch = { hidden: t.hidden, targets: t.labels };
    if (ref === 'hidden') batch.ref = { hidden: t.refHidden, head: t.head };
    else {
      const seq = losses.sequenceLogps(t.refHidden, t.head, t.labels);
      batch.refChosenLogps = seq.narrow(0, 0, d.P);
      batch.refRejectedLogps = seq.narrow(0, d.P, d.P);
    }
    const loss = config instanceof losses.PreferenceLoss ? config : new losses.PreferenceLoss(config);
    const result = loss.compute(batch, t.head, options);
    expect(result.loss.shape).toEqual([]);
    const inputs = [t.hidden, t.head.weight, t.head.bias];
    const grads = result.loss.requiresGrad
      ? gradsOf(result.loss, inputs)
      : inputs.map((x) => new Array<number>(x.numel()).fill(0));
    return { loss: num(result.loss), metrics: result.metrics, grads };
  });
}

function expectSameGrads(a: Run, b: Run, tol: number, what: string): void {
  ['hidden', 'weight', 'bias'].forEach((name, k) =>
    expectAllClose(a.grads[k]!, b.grads[k]!, tol, 0, `${what} grad ${name}`),
  );
}

const d1 = makePref(101);
const q1 = quantities(d1);
const pairs1 = pairsOf(q1, d1.P);

// Sanity of the data: rewards are neither 0 nor huge, and the pairs disagree in order.
it('the test batch has moderate, non-trivial implicit rewards', () => {
  const r = pairs1.map((p) => p.lpc - p.refc);
  expect(r.every((x) => Math.abs(x) > 1e-3 && Math.abs(x) < 10)).toBe(true);
  expect(new Set(q1.counts).size).toBeGreaterThan(1);
});

// ---- every loss type --------------------------------------------------------------------------------

describe('every DPO loss type against its formula (float64, fused and eager, chunk sizes)', () => {
  const types = [...Object.keys(losses.DPO_LOSSES), 'sft'];

  it('the formula table covers every exported loss type', () => {
    for (const type of types)
      expect(type === 'sft' || type === 'aot' || type === 'aot_unpaired' || type in PAIR_FORMULAS, type).toBe(true);
  });

  for (const type of types) {
    const smoothing = ['exo_pair', 'robust', 'aot', 'aot_unpaired', 'sigmoid'].includes(type) ? [0.1] : [0];
    if (type === 'sigmoid' || type === 'aot' || type === 'robust') smoothing.unshift(0);
    for (const eps of smoothing) {
      // sigmoid's smoothing is legacy TRL's (current TRL ignores it: see 'current vs legacy TRL').
      const legacy = type === 'sigmoid' && eps > 0;
      it(`${type}${eps ? ` (labelSmoothing ${eps}${legacy ? ', legacy' : ''})` : ''}`, () => {
        const o = { ...defaults, beta: 0.3, eps, legacy };
        const expected = typeLoss(type, pairs1, q1, o);
        const trlVersion = legacy ? ('legacy' as const) : ('current' as const);
        const config = { lossType: type, beta: 0.3, labelSmoothing: eps, trlVersion };
        const eager = run({ ...config, implementation: 'eager' }, d1);
        expectClose(eager.loss, expected, 1e-10, `${type} eager`);
        expect(eager.metrics.loss).toBeCloseTo(eager.loss, 12);
        const runs = [1, 5, 1000].map((chunkSize) => run({ ...config, implementation: 'fused', chunkSize }, d1));
        for (const [k, fused] of runs.entries()) {
          expectClose(fused.loss, expected, 1e-10, `${type} fused #${k}`);
          expectSameGrads(fused, eager, 1e-10, `${type} fused vs eager #${k}`);
          expectSameGrads(fused, runs[0]!, 1e-12, `${type} chunk sizes #${k}`);
        }
        // a non-degenerate gradient
        expect(eager.grads[0]!.some((v) => Math.abs(v) > 1e-6)).toBe(true);
      });
    }
  }

  it('every pairwise type under js_divergence and alpha_divergence (values, fused)', () => {
    for (const fdiv of ['js_divergence', 'alpha_divergence'] as const) {
      for (const type of Object.keys(PAIR_FORMULAS)) {
        const eps = type === 'exo_pair' ? 0.2 : 0;
        const o = { ...defaults, beta: 0.2, eps, fdiv, alpha: 0.3 };
        const got = run(
          {
            lossType: type,
            beta: 0.2,
            labelSmoothing: eps,
            fDivergenceType: fdiv,
            fAlphaDivergenceCoef: 0.3,
            chunkSize: 3,
          },
          d1,
        );
        expectClose(got.loss, typeLoss(type, pairs1, q1, o), 1e-10, `${type} ${fdiv}`);
      }
    }
  });
});

describe('f-divergences (sigmoid)', () => {
  for (const fdiv of ['forward_kl', 'js_divergence', 'alpha_divergence'] as const) {
    it(fdiv, () => {
      const o = { ...defaults, beta: 0.5, fdiv, alpha: 0.5 };
      const expected = typeLoss('sigmoid', pairs1, q1, o);
      const config = { lossType: 'sigmoid', beta: 0.5, fDivergenceType: fdiv, fAlphaDivergenceCoef: 0.5 };
      const eager = run({ ...config, implementation: 'eager' }, d1);
      const fused = run({ ...config, chunkSize: 4 }, d1);
      expectClose(eager.loss, expected, 1e-10, 'eager');
      expectClose(fused.loss, expected, 1e-10, 'fused');
      expectSameGrads(fused, eager, 1e-10, fdiv);
      // differs from reverse KL
      expect(Math.abs(expected - typeLoss('sigmoid', pairs1, q1, { ...o, fdiv: 'reverse_kl' }))).toBeGreaterThan(1e-6);
    });
  }

  it('alpha_divergence with coefficient 1 is reverse KL', () => {
    const a = run({ lossType: 'sigmoid', fDivergenceType: 'alpha_divergence', fAlphaDivergenceCoef: 1 }, d1);
    const b = run({ lossType: 'sigmoid' }, d1);
    expectClose(a.loss, b.loss, 1e-12);
  });
});

// ---- config handling --------------------------------------------------------------------------------

describe('loss configuration', () => {
  it('exo_pair needs labelSmoothing > 0', () => {
    expect(() => run({ lossType: 'exo_pair' }, d1)).toThrow(/labelSmoothing/);
    expect(() => run({ lossType: 'exo_pair', implementation: 'eager' }, d1)).toThrow(/labelSmoothing/);
  });

  it('rpoAlpha adds rpoAlpha x NLL of the chosen completions', () => {
    const o = { ...defaults };
    const expected = typeLoss('sigmoid', pairs1, q1, o) + 0.7 * sftLoss(pairs1, q1);
    const fused = run({ lossType: 'sigmoid', rpoAlpha: 0.7, chunkSize: 3 }, d1);
    const eager = run({ lossType: 'sigmoid', rpoAlpha: 0.7, implementation: 'eager' }, d1);
    expectClose(fused.loss, expected, 1e-10, 'fused');
    expectClose(eager.loss, expected, 1e-10, 'eager');
    expectSameGrads(fused, eager, 1e-10, 'rpo');
  });

  it("InternVL's comma string 'sigmoid,bco_pair' mixes both types", () => {
    const loss = new losses.PreferenceLoss({ lossType: 'sigmoid,bco_pair', lossWeights: [0.8, 0.2] });
    expect(loss.config.lossType).toEqual(['sigmoid', 'bco_pair']);
    expect(new losses.PreferenceLoss({ lossType: 'sigmoid, bco_pair' }).config.lossWeights).toEqual([1, 1]);
    const o = { ...defaults };
    const expected = 0.8 * typeLoss('sigmoid', pairs1, q1, o) + 0.2 * typeLoss('bco_pair', pairs1, q1, o);
    expectClose(run(loss, d1).loss, expected, 1e-10);
  });

  it('lossWeights of the wrong length is a TypeError naming both counts', () => {
    expect(() => new losses.PreferenceLoss({ lossType: ['sigmoid', 'bco_pair'], lossWeights: [1] })).toThrow(TypeError);
    expect(() => new losses.PreferenceLoss({ lossType: ['sigmoid', 'bco_pair'], lossWeights: [1] })).toThrow(/1.*2/);
    expect(() => new losses.PreferenceLoss({ lossType: 'sigmoid', lossWeights: [1, 2, 3] })).toThrow(
      /lossWeights has 3 .*lossType has 1/,
    );
  });

  it('an unknown loss type is a TypeError naming it', () => {
    expect(() => new losses.PreferenceLoss({ lossType: 'sigmod' })).toThrow(TypeError);
    expect(() => new losses.PreferenceLoss({ lossType: 'sigmoid,sigmod' })).toThrow(/sigmod/);
  });

  it("MPO (InternVL's, legacy TRL) == 0.8 sigmoid + 0.2 running-mean bco_pair + 1.0 sft, each alone", () => {
    const o = { ...defaults };
    const D = runningUpdate(freshMoments(), [batchReward(pairs1, o.beta)]).mean;
    const bco = legacyBcoLoss(pairs1, D, o.beta);
    const expected = 0.8 * typeLoss('sigmoid', pairs1, q1, o) + 0.2 * bco + sftLoss(pairs1, q1);
    const mpo = run(losses.MPO, d1);
    const parts = ['sigmoid', 'bco_pair', 'sft'].map((lossType) => run({ lossType, trlVersion: 'legacy' }, d1));
    const weights = [0.8, 0.2, 1.0];
    expectClose(mpo.loss, expected, 1e-10, 'MPO vs formulas');
    expectClose(mpo.loss, sum(parts.map((p, k) => weights[k]! * p.loss)), 1e-12, 'MPO vs parts');
    for (let g = 0; g < 3; g++) {
      const combined = parts[0]!.grads[g]!.map((_, e) => sum(parts.map((p, k) => weights[k]! * p.grads[g]![e]!)));
      expectAllClose(mpo.grads[g]!, combined, 1e-12, 0, `MPO grad ${g}`);
    }
    const eager = run({ ...losses.MPO, implementation: 'eager' }, d1);
    expectClose(eager.loss, expected, 1e-10, 'MPO eager');
    expectSameGrads(mpo, eager, 1e-10, 'MPO');
  });
});

// ---- legacy bco_pair with the running mean -------------------------------------------------------

describe('legacy bco_pair (bcoRunningMean)', () => {
  const d2 = makePref(202);
  const q2 = quantities(d2);
  const pairs2 = pairsOf(q2, d2.P);
  const beta = 0.4;

  /** x = mean(cat(beta r_c, beta r_r)) of a batch. */
  const batchReward = (pairs: Pair[]): number =>
    mean([...pairs.map((p) => beta * (p.lpc - p.refc)), ...pairs.map((p) => beta * (p.lpr - p.refr))]);
  const legacyBco = (pairs: Pair[], D: number): number =>
    mean(pairs.map((p) => -logsig(beta * (p.lpc - p.refc) - D) - logsig(-(beta * (p.lpr - p.refr) - D))));

  const state1 = runningUpdate(freshMoments(), [batchReward(pairs1)]);
  const state2 = runningUpdate(state1, [batchReward(pairs2)]);

  for (const implementation of ['fused', 'eager'] as const) {
    it(`D is the running mean of the batch-mean reward, updated before use (${implementation})`, () => {
      const loss = new losses.PreferenceLoss({
        lossType: 'bco_pair',
        beta,
        bcoRunningMean: true,
        implementation,
        chunkSize: 2,
      });
      const first = run(loss, d1);
      expectClose(loss.running.mean, state1.mean, 1e-12, 'D after 1 call');
      expectClose(first.loss, legacyBco(pairs1, state1.mean), 1e-10, 'loss 1');
      const second = run(loss, d2);
      expectClose(loss.running.mean, state2.mean, 1e-12, 'D after 2 calls');
      expectClose(loss.running.var, state2.var, 1e-10, 'var after 2 calls');
      expectClose(loss.running.count, 2, 1e-12, 'count after 2 calls');
      expectClose(state2.mean, (batchReward(pairs1) + batchReward(pairs2)) / 2, 1e-12, 'D is the cumulative average');
      expectClose(second.loss, legacyBco(pairs2, state2.mean), 1e-10, 'loss 2');
      // the shift matters: the new (unshifted) form differs
      expect(Math.abs(second.loss - typeLoss('bco_pair', pairs2, q2, { ...defaults, beta }))).toBeGreaterThan(1e-6);
    });
  }

  it('fused and eager gradients agree', () => {
    const a = run({ lossType: 'bco_pair', beta, bcoRunningMean: true, chunkSize: 1 }, d1);
    const b = run({ lossType: 'bco_pair', beta, bcoRunningMean: true, implementation: 'eager' }, d1);
    expectSameGrads(a, b, 1e-10, 'legacy bco');
  });

  it('stateDict() / loadStateDict() round trip restores the exact next loss', () => {
    const original = new losses.PreferenceLoss({ lossType: 'bco_pair', beta, bcoRunningMean: true });
    run(original, d1);
    const saved = JSON.parse(JSON.stringify(original.stateDict()));
    const next = run(original, d2).loss;
    const restored = new losses.PreferenceLoss({ lossType: 'bco_pair', beta, bcoRunningMean: true });
    restored.loadStateDict(saved);
    expect(run(restored, d2).loss).toBe(next);
    expect(restored.stateDict()).toEqual(original.stateDict());
    expect(() => restored.loadStateDict({ running: { mean: 0, var: 1 } as never })).toThrow(/state\.count/);
    expect(() => restored.loadStateDict({} as never)).toThrow(TypeError);
  });

  it("mode: 'eval' uses D as it stands and leaves it untouched (fused and eager)", () => {
    for (const implementation of ['fused', 'eager'] as const) {
      const loss = new losses.PreferenceLoss({ lossType: 'bco_pair', beta, bcoRunningMean: true, implementation });
      run(loss, d1);
      const before = loss.stateDict();
      const evaluated = run(loss, d2, 'hidden', { mode: 'eval' });
      expect(loss.stateDict()).toEqual(before);
      expectClose(evaluated.loss, legacyBco(pairs2, state1.mean), 1e-10, `${implementation} eval loss, current D`);
      expectClose(run(loss, d2).loss, legacyBco(pairs2, state2.mean), 1e-10, `${implementation} next training batch`);
    }
    expect(() => run({ lossType: 'bco_pair' }, d1, 'hidden', { mode: 'test' as never })).toThrow(/mode/);
  });

  it("InternVL's MPO: 'sigmoid,bco_pair' with D plus rpoAlpha x NLL", () => {
    const loss = new losses.PreferenceLoss({
      lossType: 'sigmoid,bco_pair',
      lossWeights: [0.8, 0.2],
      beta,
      bcoRunningMean: true,
      rpoAlpha: 1.0,
    });
    const got = run(loss, d1).loss;
    const expected =
      0.8 * typeLoss('sigmoid', pairs1, q1, { ...defaults, beta }) +
      0.2 * legacyBco(pairs1, state1.mean) +
      sftLoss(pairs1, q1);
    expectClose(got, expected, 1e-10);
  });

  it('without bco_pair in the mix, bcoRunningMean leaves D alone', () => {
    const loss = new losses.PreferenceLoss({ lossType: 'sigmoid', bcoRunningMean: true });
    run(loss, d1);
    expect(loss.running.mean).toBe(0);
  });
});

// ---- reference log-probs, padding, metrics, shapes ------------------------------------------------

describe('reference log-probs', () => {
  it('refHidden and precomputed refChosenLogps / refRejectedLogps (losses.sequenceLogps) agree', () => {
    for (const lossType of ['sigmoid', 'ipo', 'aot']) {
      const a = run({ lossType, chunkSize: 3 }, d1, 'hidden');
      const b = run({ lossType, chunkSize: 3 }, d1, 'precomputed');
      expectClose(a.loss, b.loss, 1e-12, lossType);
      expectSameGrads(a, b, 1e-12, lossType);
    }
  });

  it('losses.sequenceLogps equals the eager per-row sums', () => {
    const got = torch.tidy(() => {
      const t = tensorsOf(d1);
      return arr(losses.sequenceLogps(t.refHidden, t.head, t.labels, { chunkSize: 2 }));
    });
    expectAllClose(got, q1.ref, 1e-10, 0, 'sequenceLogps');
  });

  it('neither given is a TypeError; a wrong ref shape a RangeError', () => {
    torch.tidy(() => {
      const t = tensorsOf(d1);
      const loss = new losses.PreferenceLoss();
      expect(() => loss.compute({ hidden: t.hidden, targets: t.labels }, t.head)).toThrow(TypeError);
      const wrong = f64([1, 2, 3], [3]);
      const wrongRef = { hidden: t.hidden, targets: t.labels, refChosenLogps: wrong, refRejectedLogps: wrong };
      expect(() => loss.compute(wrongRef, t.head)).toThrow(RangeError);
    });
  });
});

describe('padding and empty completions', () => {
  // pair 1's rejected completion is empty (row P + 1 = 4 of 6)
  const spans: Array<[number, number]> = [
    [1, 3],
    [2, 2],
    [1, 4],
    [2, 3],
    [1, 0],
    [3, 2],
  ];
  const d = makePref(303, 3, spans);
  const q = quantities(d);
  const pairs = pairsOf(q, d.P);

  it('a pair with an empty rejected completion gives finite losses and gradients', () => {
    expect(q.counts[4]).toBe(0);
    for (const lossType of ['sigmoid', 'ipo', 'sigmoid_norm', 'bco_pair', 'sft']) {
      const expected = typeLoss(lossType, pairs, q, defaults);
      for (const config of [
        { lossType, chunkSize: 1 },
        { lossType, chunkSize: 1000 },
        { lossType, implementation: 'eager' as const },
      ]) {
        const got = run(config, d);
        expect(Number.isFinite(got.loss)).toBe(true);
        for (const grad of got.grads) expect(grad.every(Number.isFinite)).toBe(true);
        expectClose(got.loss, expected, 1e-10, JSON.stringify(config));
      }
    }
  });

  it('a batch with every label -100: no NaN; sft is 0, the pairwise losses see r = 0', () => {
    const empty = { ...d, labels: d.labels.map(() => IGNORE) };
    for (const implementation of ['fused', 'eager'] as const) {
      const sft = run({ lossType: 'sft', implementation }, empty);
      expect(sft.loss).toBe(0);
      for (const grad of sft.grads) expect(grad.every((v) => v === 0)).toBe(true);
      // TRL's formula with lp = ref = 0: -log sigma(0) = log 2; nothing depends on the inputs.
      const sig = run({ lossType: 'sigmoid', implementation }, empty);
      expectClose(sig.loss, Math.log(2), 1e-12, 'sigmoid on an empty batch');
      for (const grad of sig.grads) expect(grad.every((v) => v === 0)).toBe(true);
      const mpo = run({ ...losses.MPO, implementation }, empty);
      expect(Number.isFinite(mpo.loss)).toBe(true);
    }
  });
});

describe('metrics', () => {
  it('rewards, logps, logits, nll_loss and entropy match their definitions', () => {
    const beta = 0.25;
    const P = d1.P;
    const rc = pairs1.map((p) => beta * (p.lpc - p.refc));
    const rr = pairs1.map((p) => beta * (p.lpr - p.refr));
    const tokenMean = (values: number[], rows: number[]): number => {
      const picked: number[] = [];
      for (const r of rows)
        for (let t = 0; t < d1.T; t++) if (d1.labels[r * d1.T + t] !== IGNORE) picked.push(values[r * d1.T + t]!);
      return mean(picked);
    };
    const chosenRows = Array.from({ length: P }, (_, i) => i);
    const rejectedRows = Array.from({ length: P }, (_, i) => P + i);
    const expected: Record<string, number> = {
      'rewards/chosen': mean(rc),
      'rewards/rejected': mean(rr),
      'rewards/accuracies': mean(rc.map((c, i) => (c > rr[i]! ? 1 : 0))),
      'rewards/margins': mean(rc.map((c, i) => c - rr[i]!)),
      'logps/chosen': mean(pairs1.map((p) => p.lpc)),
      'logps/rejected': mean(pairs1.map((p) => p.lpr)),
      'logits/chosen': tokenMean(q1.meanLogit, chosenRows),
      'logits/rejected': tokenMean(q1.meanLogit, rejectedRows),
      nll_loss: sftLoss(pairs1, q1),
      entropy: tokenMean(q1.entropy, [...chosenRows, ...rejectedRows]),
    };
    expect(expected['rewards/accuracies']).toBeGreaterThan(0);
    expect(expected['rewards/accuracies']).toBeLessThan(1);
    for (const config of [
      { chunkSize: 1 },
      { chunkSize: 1000 },
      { implementation: 'eager' as const },
      { lossType: 'aot' },
    ]) {
      const got = run({ lossType: ['sigmoid', 'sft'], beta, ...config }, d1);
      for (const [key, value] of Object.entries(expected))
        expectClose(got.metrics[key]!, value, 1e-10, `${JSON.stringify(config)} ${key}`);
      expectClose(got.metrics.loss!, got.loss, 1e-12, 'loss');
    }
  });
});

describe('batch shape errors', () => {
  it('an odd number of rows is a RangeError', () => {
    torch.tidy(() => {
      const t = tensorsOf(d1);
      const hidden = t.hidden.narrow(0, 0, 7);
      const labels = t.labels.narrow(0, 0, 7).contiguous();
      const ref = { hidden: t.refHidden.narrow(0, 0, 7), head: t.head };
      expect(() => new losses.PreferenceLoss().compute({ hidden, targets: labels, ref }, t.head)).toThrow(RangeError);
      expect(() => new losses.PreferenceLoss().compute({ hidden, targets: labels, ref }, t.head)).toThrow(/7 rows/);
    });
  });

  it('targets whose shape does not match hidden is a RangeError naming both shapes', () => {
    torch.tidy(() => {
      const t = tensorsOf(d1);
      const ref = { hidden: t.refHidden, head: t.head };
      const targets = t.labels.narrow(1, 0, 5).contiguous();
      const call = (): unknown => new losses.PreferenceLoss().compute({ hidden: t.hidden, targets, ref }, t.head);
      expect(call).toThrow(RangeError);
      expect(call).toThrow(/\[8, ?6\].*\[8, ?6, ?5\].*\[8, ?5\]/);
      const flat = t.labels.reshape(-1);
      const loss = new losses.PreferenceLoss();
      expect(() => loss.compute({ hidden: t.hidden, targets: flat, ref }, t.head)).toThrow(RangeError);
      const flatHidden = t.hidden.reshape(8, -1);
      expect(() => loss.compute({ hidden: flatHidden, targets: t.labels, ref }, t.head)).toThrow(RangeError);
    });
  });

  it('a batch in the old shape (labels, refHidden) is a TypeError pointing to the new names', () => {
    torch.tidy(() => {
      const t = tensorsOf(d1);
      const loss = new losses.PreferenceLoss();
      const old = { hidden: t.hidden, labels: t.labels, refHidden: t.refHidden } as never;
      expect(() => loss.compute(old, t.head)).toThrow(/targets.*targetsFromLabels/);
      const halfOld = { hidden: t.hidden, targets: t.labels, refHidden: t.refHidden } as never;
      expect(() => loss.compute(halfOld, t.head)).toThrow(/ref: \{ hidden, head \}/);
    });
  });

  it('compute frees what it makes', () => {
    torch.tidy(() => {
      const before = torch.memory().numTensors;
      run({ lossType: ['sigmoid', 'sft'], chunkSize: 2 }, d1);
      run({ lossType: 'aot' }, d1);
      expect(torch.memory().numTensors).toBe(before);
    });
  });
});

// ---- a reference model with its own head ------------------------------------------------------

describe('reference head', () => {
  // Full fine-tuning against a frozen copy: the reference's head is not the policy's.
  const refWeight = d1.weight.map((w, k) => w + 0.5 * Math.sin(3 * k));
  const refHeadOf = (t: Tensors): { weight: Tensor; bias: Tensor } => ({
    weight: f64(refWeight, [d1.V, d1.H]),
    bias: t.head.bias,
  });
  const refSums = (head: 'own' | 'policy'): number[] =>
    torch.tidy(() => {
      const t = tensorsOf(d1);
      const logps = eagerTokenLogps(t.refHidden, head === 'own' ? refHeadOf(t) : t.head, t.labels);
      return rowSums(arr(logps), 2 * d1.P, d1.T);
    });

  it('ref: { hidden, head } scores the reference log-probs with its own head (fused, eager)', () => {
    const pairs = pairsOf({ ...q1, ref: refSums('own') }, d1.P);
    const expected = typeLoss('sigmoid', pairs, q1, defaults);
    const withPolicyHead = typeLoss('sigmoid', pairsOf({ ...q1, ref: refSums('policy') }, d1.P), q1, defaults);
    expect(Math.abs(expected - withPolicyHead)).toBeGreaterThan(1e-3);
    for (const implementation of ['fused', 'eager'] as const) {
      const got = torch.tidy(() => {
        const t = tensorsOf(d1);
        const batch = { hidden: t.hidden, targets: t.labels, ref: { hidden: t.refHidden, head: refHeadOf(t) } };
        const result = new losses.PreferenceLoss({ implementation, chunkSize: 3 }).compute(batch, t.head);
        return { loss: num(result.loss), chosen: result.metrics['rewards/chosen']! };
      });
      expectClose(got.loss, expected, 1e-10, `${implementation} loss`);
      const chosen = mean(pairs.map((p) => 0.1 * (p.lpc - p.refc)));
      expectClose(got.chosen, chosen, 1e-10, `${implementation} rewards/chosen`);
    }
  });
});

// ---- current vs legacy TRL ------------------------------------------------------------------------

describe('current vs legacy TRL forms (trlVersion)', () => {
  const both = (config: losses.PreferenceLossConfigInput): [Run, Run] => [
    run({ ...config, chunkSize: 3 }, d1),
    run({ ...config, implementation: 'eager' }, d1),
  ];
  const delta = (p: Pair): number => p.lpc - p.refc - p.lpr + p.refr;

  it('sigmoid: current ignores labelSmoothing, legacy applies cDPO smoothing', () => {
    const beta = 0.3;
    const current = mean(pairs1.map((p) => -logsig(beta * delta(p))));
    const legacy = mean(pairs1.map((p) => -(1 - 0.2) * logsig(beta * delta(p)) - 0.2 * logsig(-beta * delta(p))));
    expect(Math.abs(current - legacy)).toBeGreaterThan(1e-3);
    const config = { lossType: 'sigmoid', beta, labelSmoothing: 0.2 };
    for (const r of both(config)) expectClose(r.loss, current, 1e-10, 'current');
    for (const r of both({ ...config, trlVersion: 'legacy' })) expectClose(r.loss, legacy, 1e-10, 'legacy');
  });

  it('exo_pair with labelSmoothing 0: current refuses it, legacy uses 1e-3', () => {
    expect(() => run({ lossType: 'exo_pair' }, d1)).toThrow(/labelSmoothing/);
    const beta = 0.3;
    const expected = mean(
      pairs1.map((p) => {
        const [qw, ql] = [sigmoid(beta * delta(p)), sigmoid(-beta * delta(p))];
        return qw * (Math.log(qw) - Math.log(1 - 1e-3)) + ql * (Math.log(ql) - Math.log(1e-3));
      }),
    );
    for (const r of both({ lossType: 'exo_pair', beta, trlVersion: 'legacy' })) expectClose(r.loss, expected, 1e-10);
  });

  it("alpha_divergence: legacy's delta = (e^(-a r_r) - e^(-a r_c)) / a, with a = 1 by default", () => {
    const beta = 0.4;
    const legacyDelta = (p: Pair, a: number): number =>
      (Math.exp(-a * (p.lpr - p.refr)) - Math.exp(-a * (p.lpc - p.refc))) / a;
    const legacySigmoid = (a: number): number => mean(pairs1.map((p) => -logsig(beta * legacyDelta(p, a))));
    const config = { lossType: 'sigmoid', beta, fDivergenceType: 'alpha_divergence', trlVersion: 'legacy' } as const;
    for (const r of both({ ...config, fAlphaDivergenceCoef: 0.3 })) expectClose(r.loss, legacySigmoid(0.3), 1e-10);
    for (const r of both(config)) expectClose(r.loss, legacySigmoid(1), 1e-10, 'legacy default a = 1');
    // current's default coefficient is 0.5: s = e^(-r/2) / (-1/2)
    const s = (r: number): number => -2 * Math.exp(-r / 2);
    const currentDefault = mean(pairs1.map((p) => -logsig(beta * (s(p.lpc - p.refc) - s(p.lpr - p.refr)))));
    expectClose(run({ ...config, trlVersion: 'current' }, d1).loss, currentDefault, 1e-10, 'current default');
    expect(Math.abs(currentDefault - legacySigmoid(1))).toBeGreaterThan(1e-4);
  });

  it('bco_pair: legacy shifts by the running mean unless bcoRunningMean is false', () => {
    const beta = 0.3;
    const D = runningUpdate(freshMoments(), [batchReward(pairs1, beta)]).mean;
    const config = { lossType: 'bco_pair', beta, trlVersion: 'legacy' } as const;
    for (const r of both(config)) expectClose(r.loss, legacyBcoLoss(pairs1, D, beta), 1e-10, 'legacy');
    const unshifted = run({ ...config, bcoRunningMean: false }, d1);
    expectClose(unshifted.loss, typeLoss('bco_pair', pairs1, q1, { ...defaults, beta }), 1e-10, 'without the shift');
    expect(new losses.PreferenceLoss(losses.MPO).config).toMatchObject({ trlVersion: 'legacy', bcoRunningMean: true });
  });

  it("legacy's name aot_pair is aot_unpaired", () => {
    const loss = new losses.PreferenceLoss({ lossType: 'aot_pair', labelSmoothing: 0.1 });
    expect(loss.config.lossType).toEqual(['aot_unpaired']);
    expectClose(run(loss, d1).loss, typeLoss('aot_unpaired', pairs1, q1, { ...defaults, eps: 0.1 }), 1e-10);
  });
});

// ---- the functional form over sequence log-probs ----------------------------------------------------

describe('losses.preferenceLossFromLogps', () => {
  const P = d1.P;
  const inputs = (t?: Tensor): losses.PreferenceLogps => ({
    chosenLogps: t ? t.narrow(0, 0, P) : f64(q1.lp.slice(0, P), [P]),
    rejectedLogps: t ? t.narrow(0, P, P) : f64(q1.lp.slice(P), [P]),
    refChosenLogps: f64(q1.ref.slice(0, P), [P]),
    refRejectedLogps: f64(q1.ref.slice(P), [P]),
    chosenTokens: q1.counts.slice(0, P),
    rejectedTokens: f64(q1.counts.slice(P), [P]),
  });
  const lossOf = (config: losses.PreferenceLossConfigInput): number =>
    torch.tidy(() => num(losses.preferenceLossFromLogps(inputs(), config).loss));

  it('every loss type against its formula, and a weighted mix with rpoAlpha (float64)', () => {
    for (const type of [...Object.keys(losses.DPO_LOSSES), 'sft']) {
      const eps = ['exo_pair', 'robust', 'aot', 'aot_unpaired'].includes(type) ? 0.1 : 0;
      const got = torch.tidy(() => {
        const result = losses.preferenceLossFromLogps(inputs(), { lossType: type, beta: 0.3, labelSmoothing: eps });
        return [num(result.loss), num(result.perType[type]!)];
      });
      const expected = typeLoss(type, pairs1, q1, { ...defaults, beta: 0.3, eps });
      expectClose(got[0]!, expected, 1e-12, type);
      expectClose(got[1]!, expected, 1e-12, `${type} perType`);
    }
    const mixed = lossOf({ lossType: ['ipo', 'hinge', 'sft'], lossWeights: [0.5, 2, 0.25], rpoAlpha: 0.7 });
    const parts = [typeLoss('ipo', pairs1, q1, defaults), typeLoss('hinge', pairs1, q1, defaults), sftLoss(pairs1, q1)];
    expectClose(mixed, 0.5 * parts[0]! + 2 * parts[1]! + (0.25 + 0.7) * parts[2]!, 1e-12, 'mix');
  });

  it("defaults are TRL's: sigmoid, beta 0.1; token counts are optional where no type reads them", () => {
    const { chosenLogps, rejectedLogps, refChosenLogps, refRejectedLogps } = inputs();
    const logps = { chosenLogps, rejectedLogps, refChosenLogps, refRejectedLogps };
    const result = losses.preferenceLossFromLogps(logps);
    expectClose(num(result.loss), typeLoss('sigmoid', pairs1, q1, defaults), 1e-12);
    const margins = mean(pairs1.map((p) => 0.1 * (p.lpc - p.refc - p.lpr + p.refr)));
    expectClose(result.metrics['rewards/margins']!, margins, 1e-12, 'margins');
    expect(() => losses.preferenceLossFromLogps(logps, { lossType: 'ipo' })).toThrow(/chosenTokens and rejectedTokens/);
    expect(() => losses.preferenceLossFromLogps({ ...logps, rejectedLogps: f64([1, 2], [2]) })).toThrow(
      /rejectedLogps must be \[4\], got \[2\]/,
    );
    expect(() => losses.preferenceLossFromLogps({ ...inputs(), chosenTokens: [1, 2, 3] }, { lossType: 'sft' })).toThrow(
      /chosenTokens/,
    );
  });

  for (const config of [
    { lossType: ['sigmoid', 'ipo', 'sft'], lossWeights: [0.8, 0.3, 1], beta: 0.2 },
    { ...losses.MPO },
    { lossType: 'aot', beta: 0.5 },
  ] as losses.PreferenceLossConfigInput[]) {
    it(`PreferenceLoss.compute equals it on the same log-probs (${JSON.stringify(config)})`, () => {
      const engine = run({ ...config, chunkSize: 3 }, d1, 'precomputed');
      const functional = torch.tidy(() => {
        const t = tensorsOf(d1, true);
        const lp = eagerTokenLogps(t.hidden, t.head, t.labels).sum(1);
        const result = losses.preferenceLossFromLogps(inputs(lp), config);
        const grads = gradsOf(result.loss, [t.hidden, t.head.weight, t.head.bias]);
        return { loss: num(result.loss), metrics: result.metrics, grads };
      });
      expectClose(engine.loss, functional.loss, 1e-12, 'loss');
      const rewards = ['rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins'];
      for (const key of [...rewards, 'logps/chosen', 'logps/rejected', 'nll_loss']) {
        expectClose(engine.metrics[key]!, functional.metrics[key]!, 1e-12, key);
      }
      ['hidden', 'weight', 'bias'].forEach((name, k) =>
        expectAllClose(engine.grads[k]!, functional.grads[k]!, 1e-12, 0, `grad ${name}`),
      );
    });
  }

  it('legacy bco_pair: a given RunningMoments is updated in training and left alone in evaluation', () => {
    const beta = 0.4;
    const running = new losses.RunningMoments();
    const config = { lossType: 'bco_pair', beta, trlVersion: 'legacy' } as const;
    const lossWith = (mode: 'train' | 'eval'): number =>
      torch.tidy(() => num(losses.preferenceLossFromLogps(inputs(), config, { running, mode }).loss));
    const first = lossWith('train');
    const D = runningUpdate(freshMoments(), [batchReward(pairs1, beta)]);
    expectClose(running.mean, D.mean, 1e-12, 'D');
    expectClose(first, legacyBcoLoss(pairs1, D.mean, beta), 1e-12, 'loss');
    const evaluated = lossWith('eval');
    expect(running.stateDict()).toEqual(D);
    expectClose(evaluated, legacyBcoLoss(pairs1, D.mean, beta), 1e-12, 'eval loss');
  });
});

// ---- metrics as sums and counts ----------------------------------------------------------------

describe('metric totals', () => {
  const d2 = makePref(202);
  const q2 = quantities(d2);
  const pairs2 = pairsOf(q2, d2.P);
  const config = { lossType: ['sigmoid', 'sft'], beta: 0.25, chunkSize: 2 };
  const totalsOf = (d: PrefData): losses.MetricTotals =>
    torch.tidy(() => {
      const t = tensorsOf(d);
      const batch = { hidden: t.hidden, targets: t.labels, ref: { hidden: t.refHidden, head: t.head } };
      return new losses.PreferenceLoss(config).compute(batch, t.head).totals;
    });

  it('merged over two batches, they give the pooled means (accumulation, ranks)', () => {
    const beta = config.beta;
    const results = [totalsOf(d1), totalsOf(d2)] as const;
    const merged = losses.metricMeans(losses.mergeMetricTotals(results[0], results[1]));
    const all = [...pairs1, ...pairs2];
    expectClose(merged['rewards/chosen']!, mean(all.map((p) => beta * (p.lpc - p.refc))), 1e-10, 'rewards/chosen');
    const margins = mean(all.map((p) => beta * (p.lpc - p.refc - p.lpr + p.refr)));
    expectClose(merged['rewards/margins']!, margins, 1e-10, 'margins');
    expectClose(merged['logps/rejected']!, mean(all.map((p) => p.lpr)), 1e-10, 'logps/rejected');
    const chosenTokens = sum(q1.counts.slice(0, d1.P)) + sum(q2.counts.slice(0, d2.P));
    expectClose(merged.nll_loss!, -sum(all.map((p) => p.lpc)) / chosenTokens, 1e-10, 'nll_loss per chosen token');
    expectClose(merged.loss!, (results[0].sums.loss! + results[1].sums.loss!) / 2, 1e-12, 'loss per batch');
    expectClose(results[0].sums.loss!, run(config, d1).loss, 1e-12, 'loss sum');
    expect(results[0].counts['rewards/chosen']).toBe(d1.P);
  });

  it('a compute reads the device once for its metrics, whatever the number of chunks', () => {
    const reads = (chunkSize: number, lossType: string): number => {
      const proto = torch.Tensor.prototype as unknown as Record<'data' | 'item', (...a: unknown[]) => unknown>;
      const [data, item] = [proto.data, proto.item];
      let count = 0;
      proto.data = function (this: unknown, ...a: unknown[]) {
        count++;
        return data.apply(this, a);
      };
      proto.item = function (this: unknown, ...a: unknown[]) {
        count++;
        return item.apply(this, a);
      };
      try {
        torch.tidy(() => {
          const t = tensorsOf(d1);
          const refChosenLogps = f64(q1.ref.slice(0, d1.P), [d1.P]);
          const refRejectedLogps = f64(q1.ref.slice(d1.P), [d1.P]);
          const batch = { hidden: t.hidden, targets: t.labels, refChosenLogps, refRejectedLogps };
          new losses.PreferenceLoss({ lossType, chunkSize }).compute(batch, t.head);
        });
      } finally {
        proto.data = data;
        proto.item = item;
      }
      return count;
    };
    // the targets' layout, then the metrics
    for (const lossType of ['sigmoid', 'sft']) expect([reads(1, lossType), reads(1000, lossType)]).toEqual([2, 2]);
  });
});
