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
  sigmoid: (p, o) => {
    const z = o.beta * scores(p, o).delta;
    return -(1 - o.eps) * logsig(z) - o.eps * logsig(-z);
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
    return qw * (Math.log(qw) - Math.log(1 - o.eps)) + ql * (Math.log(ql) - Math.log(o.eps));
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

// ---- running the library ----------------------------------------------------------------------

interface Run {
  loss: number;
  metrics: Record<string, number>;
  grads: number[][]; // hidden, weight, bias
}

function run(config: losses.PreferenceLossConfigInput | losses.PreferenceLoss, d: PrefData, ref: 'hidden' | 'precomputed' = 'hidden'): Run {
  return torch.tidy(() => {
    const t = tensorsOf(d, true);
    const batch: losses.PreferenceBatch = { hidden: t.hidden, labels: t.labels };
    if (ref === 'hidden') batch.refHidden = t.refHidden;
    else {
      const seq = losses.sequenceLogps(t.refHidden, t.head, t.labels);
      batch.refChosenLogps = seq.narrow(0, 0, d.P);
      batch.refRejectedLogps = seq.narrow(0, d.P, d.P);
    }
    const loss = config instanceof losses.PreferenceLoss ? config : new losses.PreferenceLoss(config);
    const result = loss.compute(batch, t.head);
    expect(result.loss.shape).toEqual([]);
    const inputs = [t.hidden, t.head.weight, t.head.bias];
    const grads = result.loss.requiresGrad ? gradsOf(result.loss, inputs) : inputs.map((x) => new Array<number>(x.numel()).fill(0));
    return { loss: num(result.loss), metrics: result.metrics, grads };
  });
}

function expectSameGrads(a: Run, b: Run, tol: number, what: string): void {
  ['hidden', 'weight', 'bias'].forEach((name, k) => expectAllClose(a.grads[k]!, b.grads[k]!, tol, 0, `${what} grad ${name}`));
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
    for (const type of types) expect(type === 'sft' || type === 'aot' || type === 'aot_unpaired' || type in PAIR_FORMULAS, type).toBe(true);
  });

  for (const type of types) {
    const smoothing = ['exo_pair', 'robust', 'aot', 'aot_unpaired', 'sigmoid'].includes(type) ? [0.1] : [0];
    if (type === 'sigmoid' || type === 'aot' || type === 'robust') smoothing.unshift(0);
    for (const eps of smoothing) {
      it(`${type}${eps ? ` (labelSmoothing ${eps})` : ''}`, () => {
        const o = { ...defaults, beta: 0.3, eps };
        const expected = typeLoss(type, pairs1, q1, o);
        const config = { lossType: type, beta: 0.3, labelSmoothing: eps };
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
        const got = run({ lossType: type, beta: 0.2, labelSmoothing: eps, fDivergenceType: fdiv, fAlphaDivergenceCoef: 0.3, chunkSize: 3 }, d1);
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
    expect(() => new losses.PreferenceLoss({ lossType: 'sigmoid', lossWeights: [1, 2, 3] })).toThrow(/lossWeights has 3 .*lossType has 1/);
  });

  it('an unknown loss type is a TypeError naming it', () => {
    expect(() => new losses.PreferenceLoss({ lossType: 'sigmod' })).toThrow(TypeError);
    expect(() => new losses.PreferenceLoss({ lossType: 'sigmoid,sigmod' })).toThrow(/sigmod/);
  });

  it('MPO == 0.8 sigmoid + 0.2 bco_pair + 1.0 sft, each computed separately', () => {
    const o = { ...defaults };
    const expected = 0.8 * typeLoss('sigmoid', pairs1, q1, o) + 0.2 * typeLoss('bco_pair', pairs1, q1, o) + sftLoss(pairs1, q1);
    const mpo = run(losses.MPO, d1);
    const parts = ['sigmoid', 'bco_pair', 'sft'].map((lossType) => run({ lossType }, d1));
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
  const batchReward = (pairs: Pair[]): number => mean([...pairs.map((p) => beta * (p.lpc - p.refc)), ...pairs.map((p) => beta * (p.lpr - p.refr))]);
  const legacyBco = (pairs: Pair[], D: number): number =>
    mean(pairs.map((p) => -logsig(beta * (p.lpc - p.refc) - D) - logsig(-(beta * (p.lpr - p.refr) - D))));

  const state1 = runningUpdate(freshMoments(), [batchReward(pairs1)]);
  const state2 = runningUpdate(state1, [batchReward(pairs2)]);

  for (const implementation of ['fused', 'eager'] as const) {
    it(`D is the running mean of the batch-mean reward, updated before use (${implementation})`, () => {
      const loss = new losses.PreferenceLoss({ lossType: 'bco_pair', beta, bcoRunningMean: true, implementation, chunkSize: 2 });
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

  it('state() / loadState() round trip restores the exact next loss', () => {
    const original = new losses.PreferenceLoss({ lossType: 'bco_pair', beta, bcoRunningMean: true });
    run(original, d1);
    const saved = JSON.parse(JSON.stringify(original.state()));
    const next = run(original, d2).loss;
    const restored = new losses.PreferenceLoss({ lossType: 'bco_pair', beta, bcoRunningMean: true });
    restored.loadState(saved);
    expect(run(restored, d2).loss).toBe(next);
    expect(restored.state()).toEqual(original.state());
    expect(() => restored.loadState({ running: { mean: 0, var: 1 } as never })).toThrow(TypeError);
  });

  it("InternVL's MPO: 'sigmoid,bco_pair' with D plus rpoAlpha x NLL", () => {
    const loss = new losses.PreferenceLoss({ lossType: 'sigmoid,bco_pair', lossWeights: [0.8, 0.2], beta, bcoRunningMean: true, rpoAlpha: 1.0 });
    const got = run(loss, d1).loss;
    const expected = 0.8 * typeLoss('sigmoid', pairs1, q1, { ...defaults, beta }) + 0.2 * legacyBco(pairs1, state1.mean) + sftLoss(pairs1, q1);
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
      expect(() => loss.compute({ hidden: t.hidden, labels: t.labels }, t.head)).toThrow(TypeError);
      const wrong = f64([1, 2, 3], [3]);
      expect(() => loss.compute({ hidden: t.hidden, labels: t.labels, refChosenLogps: wrong, refRejectedLogps: wrong }, t.head)).toThrow(RangeError);
    });
  });
});

describe('padding and empty completions', () => {
  // pair 1's rejected completion is empty (row P + 1 = 4 of 6)
  const spans: Array<[number, number]> = [[1, 3], [2, 2], [1, 4], [2, 3], [1, 0], [3, 2]];
  const d = makePref(303, 3, spans);
  const q = quantities(d);
  const pairs = pairsOf(q, d.P);

  it('a pair with an empty rejected completion gives finite losses and gradients', () => {
    expect(q.counts[4]).toBe(0);
    for (const lossType of ['sigmoid', 'ipo', 'sigmoid_norm', 'bco_pair', 'sft']) {
      const expected = typeLoss(lossType, pairs, q, defaults);
      for (const config of [{ lossType, chunkSize: 1 }, { lossType, chunkSize: 1000 }, { lossType, implementation: 'eager' as const }]) {
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
      for (const r of rows) for (let t = 0; t < d1.T; t++) if (d1.labels[r * d1.T + t] !== IGNORE) picked.push(values[r * d1.T + t]!);
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
    for (const config of [{ chunkSize: 1 }, { chunkSize: 1000 }, { implementation: 'eager' as const }, { lossType: 'aot' }]) {
      const got = run({ lossType: ['sigmoid', 'sft'], beta, ...config }, d1);
      for (const [key, value] of Object.entries(expected)) expectClose(got.metrics[key]!, value, 1e-10, `${JSON.stringify(config)} ${key}`);
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
      expect(() => new losses.PreferenceLoss().compute({ hidden, labels, refHidden: t.refHidden.narrow(0, 0, 7) }, t.head)).toThrow(RangeError);
      expect(() => new losses.PreferenceLoss().compute({ hidden, labels, refHidden: t.refHidden.narrow(0, 0, 7) }, t.head)).toThrow(/7 rows/);
    });
  });

  it('labels whose shape does not match hidden is a RangeError naming both shapes', () => {
    torch.tidy(() => {
      const t = tensorsOf(d1);
      const labels = t.labels.narrow(1, 0, 5).contiguous();
      const call = (): unknown => new losses.PreferenceLoss().compute({ hidden: t.hidden, labels, refHidden: t.refHidden }, t.head);
      expect(call).toThrow(RangeError);
      expect(call).toThrow(/\[8, ?6\].*\[8, ?6, ?5\].*\[8, ?5\]/);
      const flat = t.labels.reshape(-1);
      expect(() => new losses.PreferenceLoss().compute({ hidden: t.hidden, labels: flat, refHidden: t.refHidden }, t.head)).toThrow(RangeError);
      expect(() => new losses.PreferenceLoss().compute({ hidden: t.hidden.reshape(8, -1), labels: t.labels, refHidden: t.refHidden }, t.head)).toThrow(RangeError);
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
