// losses.UnpairedPreferenceLoss (KTO, APO-zero unpaired, BCO; trl_peft.md §2) and losses.GrpoLoss
// (GRPO / BNPO / Dr. GRPO / DAPO, token and sequence importance sampling; §3.2) against the formulas
// written out here in plain JS number math, from per-token log-probs computed with the tensor API.
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

// ---- shared data -------------------------------------------------------------------------------

interface Data {
  R: number;
  T: number;
  H: number;
  V: number;
  hidden: Float64Array;
  refHidden: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  labels: number[];
}

function makeData(seed: number, spans: Array<[number, number]>, T = 7, H = 5, V = 13): Data {
  const next = rng(seed);
  const R = spans.length;
  const hidden = uniform(next, R * T * H, -1, 1);
  const noise = uniform(next, R * T * H, -0.4, 0.4);
  return {
    R,
    T,
    H,
    V,
    hidden,
    refHidden: hidden.map((h, k) => h + noise[k]!),
    weight: uniform(next, V * H, -1.2, 1.2),
    bias: uniform(next, V, -0.5, 0.5),
    labels: completionLabels(next, spans, T, V),
  };
}

function tensorsOf(
  d: Data,
  requiresGrad = false,
): { hidden: Tensor; refHidden: Tensor; labels: Tensor; head: { weight: Tensor; bias: Tensor } } {
  return {
    hidden: f64(d.hidden, [d.R, d.T, d.H], requiresGrad),
    refHidden: f64(d.refHidden, [d.R, d.T, d.H]),
    labels: long(d.labels, [d.R, d.T]),
    head: { weight: f64(d.weight, [d.V, d.H], requiresGrad), bias: f64(d.bias, [d.V], requiresGrad) },
  };
}

/** Per-token log-probs [R*T] (0 outside completions) of the policy and the reference, and entropies. */
function tokenQuantities(d: Data, temperature = 1): { lp: number[]; ref: number[]; entropy: number[] } {
  return torch.tidy(() => {
    const t = tensorsOf(d);
    return {
      lp: arr(eagerTokenLogps(t.hidden, t.head, t.labels, temperature)),
      ref: arr(eagerTokenLogps(t.refHidden, t.head, t.labels, temperature)),
      entropy: arr(eagerTokenExtras(t.hidden, t.head, temperature).entropy),
    };
  });
}

interface Run {
  loss: number;
  metrics: Record<string, number>;
  grads: number[][];
}

function expectSameGrads(a: Run, b: Run, tol: number, what: string): void {
  ['hidden', 'weight', 'bias'].forEach((name, k) =>
    expectAllClose(a.grads[k]!, b.grads[k]!, tol, 0, `${what} grad ${name}`),
  );
}

// =============================================================================================
// KTO / APO-zero unpaired / BCO
// =============================================================================================

const kd = makeData(401, [
  [1, 3],
  [2, 4],
  [1, 2],
  [3, 3],
  [1, 5],
  [2, 1],
]);
const desirable = [true, false, true, true, false, false];
const kq = tokenQuantities(kd);
const klp = rowSums(kq.lp, kd.R, kd.T);
const kref = rowSums(kq.ref, kd.R, kd.T);
const kr = klp.map((p, i) => p - kref[i]!);

// KL completions (mismatched pairs): given directly as sequence log-probs.
const klPolicy = [-7.5, -9.0, -6.25, -8.0];
const klRefPos = [-8.5, -9.5, -7.0, -8.25]; // mean(policy - ref) = 0.625 > 0
const klRefNeg = [-7.0, -8.5, -6.0, -7.5]; // mean(policy - ref) = -0.4375 < 0 -> z0 = 0

type KtoRef = 'hidden' | 'precomputed';

interface KtoRunOptions {
  kl?: number[];
  ref?: KtoRef;
  mode?: 'train' | 'eval';
  data?: Data;
  desirable?: boolean[];
}

function runKto(config: losses.KtoLossConfigInput | losses.UnpairedPreferenceLoss, options: KtoRunOptions = {}): Run {
  const d = options.data ?? kd;
  return torch.tidy(() => {
    const t = tensorsOf(d, true);
    const batch: losses.UnpairedBatch = {
      hidden: t.hidden,
      targets: t.labels,
      desirable: options.desirable ?? desirable,
    };
    if ((options.ref ?? 'precomputed') === 'hidden') batch.ref = { hidden: t.refHidden, head: t.head };
    else batch.refLogps = losses.sequenceLogps(t.refHidden, t.head, t.labels);
    if (options.kl) batch.kl = { policyLogps: f64(klPolicy, [4]), refLogps: f64(options.kl, [4]) };
    const loss = config instanceof losses.UnpairedPreferenceLoss ? config : new losses.UnpairedPreferenceLoss(config);
    const result = loss.compute(batch, t.head, options.mode === undefined ? {} : { mode: options.mode });
    expect(result.loss.shape).toEqual([]);
    return {
      loss: num(result.loss),
      metrics: result.metrics,
      grads: gradsOf(result.loss, [t.hidden, t.head.weight, t.head.bias]),
    };
  });
}

function ktoExpected(beta: number, z0: number, wD: number, wU: number): number {
  return mean(
    kr.map((r, i) => (desirable[i] ? wD * (1 - sigmoid(beta * (r - z0))) : wU * (1 - sigmoid(beta * (z0 - r))))),
  );
}

describe('UnpairedPreferenceLoss: kto and apo_zero_unpaired', () => {
  const z0 = Math.max(0, mean(klPolicy.map((p, i) => p - klRefPos[i]!)));
  const side = (want: boolean, f: (i: number) => number): number =>
    mean(desirable.flatMap((d, i) => (d === want ? [f(i)] : [])));

  for (const implementation of ['eager', 'fused'] as const) {
    describe(implementation, () => {
      it('kto: the KL reference point is max(0, mean(policy - ref)) and shifts the loss', () => {
        expect(z0).toBeCloseTo(0.625, 12);
        const beta = 0.5;
        const expected = ktoExpected(beta, z0, 1, 1);
        const got = runKto({ beta, implementation, chunkSize: 2 }, { kl: klRefPos });
        expectClose(got.loss, expected, 1e-10, implementation);
        expectClose(got.metrics.kl!, z0, 1e-12, 'kl metric');
        expect(Math.abs(expected - ktoExpected(beta, 0, 1, 1))).toBeGreaterThan(1e-4);
      });

      it('kto: a negative KL estimate clamps z0 to 0; no KL pair means z0 = 0', () => {
        const beta = 0.5;
        const a = runKto({ beta, implementation }, { kl: klRefNeg });
        const b = runKto({ beta, implementation });
        expectClose(a.loss, ktoExpected(beta, 0, 1, 1), 1e-10, 'clamped');
        expectClose(b.loss, ktoExpected(beta, 0, 1, 1), 1e-10, 'absent');
        expect(a.metrics.kl).toBe(0);
      });

      it('kto: desirable / undesirable weights', () => {
        const got = runKto(
          { beta: 0.3, desirableWeight: 1.33, undesirableWeight: 0.7, implementation, chunkSize: 4 },
          { kl: klRefPos },
        );
        expectClose(got.loss, ktoExpected(0.3, z0, 1.33, 0.7), 1e-10);
      });

      it('kto metrics: rewards and logps per side, kl', () => {
        const beta = 0.2;
        const got = runKto({ beta, implementation }, { kl: klRefPos });
        const chosen = side(true, (i) => beta * kr[i]!);
        const rejected = side(false, (i) => beta * kr[i]!);
        expectClose(got.metrics['rewards/chosen']!, chosen, 1e-10, 'rewards/chosen');
        expectClose(got.metrics['rewards/rejected']!, rejected, 1e-10, 'rewards/rejected');
        expectClose(got.metrics['rewards/margins']!, chosen - rejected, 1e-10, 'rewards/margins');
        expectClose(
          got.metrics['logps/chosen']!,
          side(true, (i) => klp[i]!),
          1e-10,
          'logps/chosen',
        );
        expectClose(
          got.metrics['logps/rejected']!,
          side(false, (i) => klp[i]!),
          1e-10,
          'logps/rejected',
        );
        expectClose(got.metrics.kl!, z0, 1e-12, 'kl');
        expectClose(got.metrics.loss!, got.loss, 1e-12, 'loss');
      });

      it('kto: refHidden and precomputed refLogps agree', () => {
        const a = runKto({ beta: 0.4, chunkSize: 3, implementation }, { kl: klRefPos, ref: 'hidden' });
        const b = runKto({ beta: 0.4, chunkSize: 3, implementation }, { kl: klRefPos, ref: 'precomputed' });
        expectClose(a.loss, b.loss, 1e-12);
        expectSameGrads(a, b, 1e-12, 'ref paths');
      });

      it('apo_zero_unpaired: 1 - sigma(beta r) for desirable rows, sigma(beta r) for undesirable ones; no z0', () => {
        const beta = 0.6;
        const expected = mean(kr.map((r, i) => (desirable[i] ? 1 - sigmoid(beta * r) : sigmoid(beta * r))));
        const got = runKto({ lossType: 'apo_zero_unpaired', beta, implementation, chunkSize: 2 }, { kl: klRefPos });
        expectClose(got.loss, expected, 1e-10);
      });
    });
  }

  it('kto: fused gradients == eager gradients, for chunk sizes 1, 4, 1000', () => {
    const config = { beta: 0.3, desirableWeight: 1.33, undesirableWeight: 0.7 };
    const eager = runKto({ ...config, implementation: 'eager' }, { kl: klRefPos });
    const fused = [1, 4, 1000].map((chunkSize) => runKto({ ...config, chunkSize }, { kl: klRefPos }));
    for (const f of fused) {
      expectSameGrads(f, eager, 1e-10, 'kto fused vs eager');
      expectSameGrads(f, fused[0]!, 1e-12, 'kto chunk sizes');
    }
  });

  it('apo_zero_unpaired: fused gradients == eager gradients', () => {
    const eager = runKto({ lossType: 'apo_zero_unpaired', beta: 0.6, implementation: 'eager' });
    const fused = runKto({ lossType: 'apo_zero_unpaired', beta: 0.6, chunkSize: 2 });
    expectSameGrads(fused, eager, 1e-10, 'apo');
  });

  it('the default configuration (kto, fused) computes at all', () => {
    // Minimal repro of the single-pass bug: the default path must not throw.
    torch.tidy(() => {
      const t = tensorsOf(kd);
      const refLogps = f64(kref, [kd.R]);
      const batch = { hidden: t.hidden, targets: t.labels, desirable, refLogps };
      const result = new losses.UnpairedPreferenceLoss().compute(batch, t.head);
      expectClose(num(result.loss), ktoExpected(0.1, 0, 1, 1), 1e-10);
    });
  });

  it('ref: { hidden, head } scores the reference with its own head', () => {
    const refWeight = kd.weight.map((w, k) => w - 0.4 * Math.cos(2 * k));
    const beta = 0.5;
    const expected = torch.tidy(() => {
      const t = tensorsOf(kd);
      const head = { weight: f64(refWeight, [kd.V, kd.H]), bias: t.head.bias };
      const own = rowSums(arr(eagerTokenLogps(t.refHidden, head, t.labels)), kd.R, kd.T);
      return mean(klp.map((p, i) => 1 - sigmoid((desirable[i] ? beta : -beta) * (p - own[i]!))));
    });
    expect(Math.abs(expected - ktoExpected(beta, 0, 1, 1))).toBeGreaterThan(1e-3);
    for (const implementation of ['fused', 'eager'] as const) {
      const got = torch.tidy(() => {
        const t = tensorsOf(kd);
        const ref = { hidden: t.refHidden, head: { weight: f64(refWeight, [kd.V, kd.H]), bias: t.head.bias } };
        const batch = { hidden: t.hidden, targets: t.labels, desirable, ref };
        return num(new losses.UnpairedPreferenceLoss({ beta, implementation }).compute(batch, t.head).loss);
      });
      expectClose(got, expected, 1e-10, implementation);
    }
  });

  it('errors: desirable length, missing reference', () => {
    expect(() => runKto({}, { desirable: [true, false] })).toThrow(RangeError);
    torch.tidy(() => {
      const t = tensorsOf(kd);
      const noRef = { hidden: t.hidden, targets: t.labels, desirable };
      expect(() => new losses.UnpairedPreferenceLoss().compute(noRef, t.head)).toThrow(TypeError);
      const shortRef = { ...noRef, refLogps: f64([1, 2], [2]) };
      expect(() => new losses.UnpairedPreferenceLoss().compute(shortRef, t.head)).toThrow(
        /refLogps must have shape \[6\]/,
      );
      const old = { hidden: t.hidden, targets: t.labels, desirable, refHidden: t.refHidden } as never;
      expect(() => new losses.UnpairedPreferenceLoss().compute(old, t.head)).toThrow(/ref: \{ hidden, head \}/);
    });
  });
});

describe('UnpairedPreferenceLoss: bco', () => {
  const beta = 0.5;
  const kd2 = makeData(402, [
    [2, 2],
    [1, 4],
    [1, 3],
    [2, 3],
    [3, 2],
    [1, 1],
  ]);
  const kq2 = tokenQuantities(kd2);
  const kr2 = rowSums(kq2.lp, kd2.R, kd2.T).map((p, i) => p - rowSums(kq2.ref, kd2.R, kd2.T)[i]!);
  const bcoLoss = (r: number[], D: number): number =>
    mean(r.map((x, i) => (desirable[i] ? -logsig(beta * x - D) : -logsig(-(beta * x - D)))));

  const s1 = runningUpdate(
    freshMoments(),
    kr.map((r) => beta * r),
  );
  const s2 = runningUpdate(
    s1,
    kr2.map((r) => beta * r),
  );

  for (const implementation of ['fused', 'eager'] as const) {
    it(`D is the running mean of every reward R = beta r, updated with the batch first (${implementation})`, () => {
      const loss = new losses.UnpairedPreferenceLoss({ lossType: 'bco', beta, implementation, chunkSize: 2 });
      const first = runKto(loss);
      expectClose(loss.running.mean, s1.mean, 1e-12, 'D after batch 1');
      expectClose(loss.running.var, s1.var, 1e-10, 'var after batch 1');
      expectClose(loss.running.count, 6, 1e-12, 'count after batch 1');
      expectClose(first.loss, bcoLoss(kr, s1.mean), 1e-10, 'loss 1');
      const second = runKto(loss, { data: kd2 });
      expectClose(loss.running.mean, s2.mean, 1e-12, 'D after batch 2');
      expectClose(loss.running.var, s2.var, 1e-10, 'var after batch 2');
      expectClose(s2.mean, mean([...kr, ...kr2].map((r) => beta * r)), 1e-12, 'D is the mean of every reward');
      expectClose(second.loss, bcoLoss(kr2, s2.mean), 1e-10, 'loss 2');
    });
  }

  it("mode: 'eval' uses D without updating it", () => {
    const loss = new losses.UnpairedPreferenceLoss({ lossType: 'bco', beta });
    runKto(loss);
    const before = loss.stateDict();
    const evalRun = runKto(loss, { data: kd2, mode: 'eval' });
    expect(loss.stateDict()).toEqual(before);
    expectClose(evalRun.loss, bcoLoss(kr2, s1.mean), 1e-10, 'eval loss uses the current D');
    const fresh = new losses.UnpairedPreferenceLoss({ lossType: 'bco', beta });
    runKto(fresh, { mode: 'eval' });
    expect(fresh.running.mean).toBe(0);
  });

  it('stateDict() / loadStateDict() round trip restores the exact next loss', () => {
    const a = new losses.UnpairedPreferenceLoss({ lossType: 'bco', beta });
    runKto(a);
    const saved = JSON.parse(JSON.stringify(a.stateDict()));
    const next = runKto(a, { data: kd2 }).loss;
    const b = new losses.UnpairedPreferenceLoss({ lossType: 'bco', beta });
    b.loadStateDict(saved);
    expect(runKto(b, { data: kd2 }).loss).toBe(next);
  });

  it('fused and eager gradients agree (chunk sizes 1 and 1000)', () => {
    const eager = runKto({ lossType: 'bco', beta, implementation: 'eager' });
    for (const chunkSize of [1, 1000])
      expectSameGrads(runKto({ lossType: 'bco', beta, chunkSize }), eager, 1e-10, `bco chunk ${chunkSize}`);
  });
});

// =============================================================================================
// GRPO family
// =============================================================================================

// 5 sequences with 3, 5, 2, 4, 1 completion tokens; advantages of both signs.
const gd = makeData(501, [
  [2, 3],
  [1, 5],
  [3, 2],
  [2, 4],
  [4, 1],
]);
const advantages = [1.2, -0.7, 0.5, -1.5, 0.9];
const S = gd.R;
const Tg = gd.T;
const gCounts = rowCounts(gd.labels, S, Tg);
const TEMPERATURE = 0.7;
const gq = tokenQuantities(gd, TEMPERATURE);
const inCompletion = (i: number, t: number): boolean => gd.labels[i * Tg + t] !== IGNORE;

// Old-policy log-probs: lp - log(target ratio), cycling through ratios that fall below 1 - 0.2,
// inside the clip range and above 1 + 0.28; garbage outside the completions (must be ignored).
const ratioCycle = [0.5, 0.95, 1.0, 1.6, 1.1, 0.75, 1.35, 0.9];
const oldLogps: number[] = [];
{
  let k = 0;
  for (let i = 0; i < S; i++) {
    for (let t = 0; t < Tg; t++)
      oldLogps.push(inCompletion(i, t) ? gq.lp[i * Tg + t]! - Math.log(ratioCycle[k++ % ratioCycle.length]!) : 5);
  }
}
// Reference log-probs: the reference hidden states' (differ from the policy's by a few tenths).
const refLogps = gq.ref.map((v, k) => (gd.labels[k] === IGNORE ? -3 : v));

interface GrpoOpts {
  lossType: 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';
  level: 'token' | 'sequence';
  epsilon: number;
  epsilonHigh: number;
  delta: number | null;
  beta: number;
  maxCompletionLength: number;
  numItems?: number;
}

/** §3.2 steps 7-8 and the clip / kl metrics, token by token in plain JS. */
function grpoExpected(
  o: GrpoOpts,
  lp: number[],
  old: number[] | null,
): { loss: number; low: number; high: number; kl: number } {
  const perSeq: number[] = [];
  let total = 0;
  let low = 0;
  let high = 0;
  let klSum = 0;
  let tokens = 0;
  for (let i = 0; i < S; i++) {
    const idx = Array.from({ length: Tg }, (_, t) => i * Tg + t).filter((k) => gd.labels[k] !== IGNORE);
    const logRatio = idx.map((k) => lp[k]! - (old ? old[k]! : lp[k]!));
    const seqW = Math.exp(sum(logRatio) / Math.max(idx.length, 1));
    const A = advantages[i]!;
    let seqSum = 0;
    idx.forEach((k, j) => {
      const w = o.level === 'token' ? Math.exp(logRatio[j]!) : seqW;
      const unclipped = (o.delta === null ? w : Math.min(w, o.delta)) * A;
      const clipped = Math.min(Math.max(w, 1 - o.epsilon), 1 + o.epsilonHigh) * A;
      let l = -Math.min(unclipped, clipped);
      if (o.beta > 0) {
        const d = refLogps[k]! - lp[k]!;
        const kl = Math.exp(d) - d - 1;
        klSum += kl;
        l += o.beta * kl;
      }
      if (w < 1 - o.epsilon && A < 0) low++;
      if (w > 1 + o.epsilonHigh && A > 0) high++;
      seqSum += l;
    });
    perSeq.push(seqSum / Math.max(idx.length, 1));
    total += seqSum;
    tokens += idx.length;
  }
  const loss = {
    grpo: mean(perSeq),
    bnpo: total / Math.max(tokens, 1),
    dr_grpo: total / (S * o.maxCompletionLength),
    dapo: total / Math.max(o.numItems ?? tokens, 1),
  }[o.lossType];
  return { loss, low: low / tokens, high: high / tokens, kl: klSum / tokens };
}

function runGrpo(
  config: losses.GrpoLossConfigInput,
  options: {
    old?: boolean;
    ref?: boolean;
    numItems?: number;
    data?: Data;
    adv?: number[];
    oldValues?: number[];
    refValues?: number[];
  } = {},
): Run {
  const d = options.data ?? gd;
  return torch.tidy(() => {
    const t = tensorsOf(d, true);
    const adv = options.adv ?? advantages;
    const batch: losses.GrpoBatch = { hidden: t.hidden, targets: t.labels, advantages: f64(adv, [adv.length]) };
    if (options.old ?? true) batch.oldLogps = f64(options.oldValues ?? oldLogps, [d.R, d.T]);
    if (options.ref ?? true) batch.refLogps = f64(options.refValues ?? refLogps, [d.R, d.T]);
    if (options.numItems !== undefined) batch.numItemsInBatch = options.numItems;
    const result = new losses.GrpoLoss(config).compute(batch, t.head);
    expect(result.loss.shape).toEqual([]);
    return {
      loss: num(result.loss),
      metrics: result.metrics,
      grads: gradsOf(result.loss, [t.hidden, t.head.weight, t.head.bias]),
    };
  });
}

describe('GrpoLoss against the formulas (float64)', () => {
  it('the old log-probs clip some ratios low and some high', () => {
    const e = grpoExpected(
      {
        lossType: 'grpo',
        level: 'token',
        epsilon: 0.2,
        epsilonHigh: 0.28,
        delta: null,
        beta: 0,
        maxCompletionLength: 8,
      },
      gq.lp,
      oldLogps,
    );
    expect(e.low).toBeGreaterThan(0);
    expect(e.high).toBeGreaterThan(0);
  });

  for (const lossType of ['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const) {
    for (const level of ['token', 'sequence'] as const) {
      it(`${lossType}, ${level}-level importance sampling, beta 0.05, temperature ${TEMPERATURE}`, () => {
        const o: GrpoOpts = {
          lossType,
          level,
          epsilon: 0.2,
          epsilonHigh: 0.28,
          delta: null,
          beta: 0.05,
          maxCompletionLength: 8,
        };
        const expected = grpoExpected(o, gq.lp, oldLogps);
        const config = {
          lossType,
          importanceSamplingLevel: level,
          epsilon: 0.2,
          epsilonHigh: 0.28,
          beta: 0.05,
          temperature: TEMPERATURE,
          maxCompletionLength: 8,
        };
        const eager = runGrpo({ ...config, implementation: 'eager' });
        expectClose(eager.loss, expected.loss, 1e-10, 'eager');
        const fused = [1, 4, 1000].map((chunkSize) => runGrpo({ ...config, chunkSize }));
        for (const f of fused) {
          expectClose(f.loss, expected.loss, 1e-10, 'fused');
          expectSameGrads(f, eager, 1e-10, 'fused vs eager');
          expectSameGrads(f, fused[0]!, 1e-12, 'chunk sizes');
          expectClose(f.metrics['clip_ratio/low_mean']!, expected.low, 1e-12, 'low_mean');
          expectClose(f.metrics['clip_ratio/high_mean']!, expected.high, 1e-12, 'high_mean');
          expectClose(f.metrics['clip_ratio/region_mean']!, expected.low + expected.high, 1e-12, 'region_mean');
          expectClose(f.metrics.kl!, expected.kl, 1e-10, 'kl');
        }
        expectClose(eager.metrics.kl!, expected.kl, 1e-10, 'eager kl');
        expect(eager.grads[0]!.some((v) => Math.abs(v) > 1e-8)).toBe(true);
      });
    }
  }

  it('delta caps the unclipped ratio (two-sided GRPO)', () => {
    const o: GrpoOpts = {
      lossType: 'bnpo',
      level: 'token',
      epsilon: 0.2,
      epsilonHigh: 0.28,
      delta: 1.4,
      beta: 0,
      maxCompletionLength: 8,
    };
    const expected = grpoExpected(o, gq.lp, oldLogps);
    expect(Math.abs(expected.loss - grpoExpected({ ...o, delta: null }, gq.lp, oldLogps).loss)).toBeGreaterThan(1e-4);
    const config = { lossType: 'bnpo' as const, epsilon: 0.2, epsilonHigh: 0.28, delta: 1.4, temperature: TEMPERATURE };
    const eager = runGrpo({ ...config, implementation: 'eager' }, { ref: false });
    const fused = runGrpo({ ...config, chunkSize: 3 }, { ref: false });
    expectClose(eager.loss, expected.loss, 1e-10, 'eager');
    expectClose(fused.loss, expected.loss, 1e-10, 'fused');
    expectSameGrads(fused, eager, 1e-10, 'delta');
    expect(() => new losses.GrpoLoss({ delta: 1.1, epsilonHigh: 0.28 })).toThrow(/delta/);
  });

  it('epsilonHigh defaults to epsilon; beta 0 reports kl 0', () => {
    const o: GrpoOpts = {
      lossType: 'dapo',
      level: 'token',
      epsilon: 0.3,
      epsilonHigh: 0.3,
      delta: null,
      beta: 0,
      maxCompletionLength: 8,
    };
    const expected = grpoExpected(o, gq.lp, oldLogps);
    const got = runGrpo({ lossType: 'dapo', epsilon: 0.3, temperature: TEMPERATURE }, { ref: false });
    expectClose(got.loss, expected.loss, 1e-10);
    expectClose(got.metrics['clip_ratio/high_mean']!, expected.high, 1e-12, 'high_mean');
    expect(got.metrics.kl).toBe(0);
  });

  it('dapo divides by numItemsInBatch when given', () => {
    const o: GrpoOpts = {
      lossType: 'dapo',
      level: 'token',
      epsilon: 0.2,
      epsilonHigh: 0.28,
      delta: null,
      beta: 0.05,
      maxCompletionLength: 8,
      numItems: 40,
    };
    const got = runGrpo(
      { lossType: 'dapo', epsilonHigh: 0.28, beta: 0.05, temperature: TEMPERATURE },
      { numItems: 40 },
    );
    expectClose(got.loss, grpoExpected(o, gq.lp, oldLogps).loss, 1e-10);
  });

  it('temperature matters: temperature 1 with these old log-probs differs', () => {
    const a = runGrpo({ lossType: 'bnpo', temperature: 1 }, { ref: false });
    const b = runGrpo({ lossType: 'bnpo', temperature: TEMPERATURE }, { ref: false });
    expect(Math.abs(a.loss - b.loss)).toBeGreaterThan(1e-6);
    const lp1 = tokenQuantities(gd, 1).lp;
    const o: GrpoOpts = {
      lossType: 'bnpo',
      level: 'token',
      epsilon: 0.2,
      epsilonHigh: 0.2,
      delta: null,
      beta: 0,
      maxCompletionLength: 512,
    };
    expectClose(a.loss, grpoExpected(o, lp1, oldLogps).loss, 1e-10);
  });

  it('metrics: entropy is the mean token entropy (tempered logits)', () => {
    const got = runGrpo({ lossType: 'grpo', temperature: TEMPERATURE, chunkSize: 2 });
    const picked = gq.entropy.filter((_, k) => gd.labels[k] !== IGNORE);
    expectClose(got.metrics.entropy!, mean(picked), 1e-10);
    expectClose(got.metrics.loss!, got.loss, 1e-12, 'loss');
  });
});

describe('GrpoLoss on-policy (no oldLogps)', () => {
  for (const lossType of ['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const) {
    for (const level of ['token', 'sequence'] as const) {
      it(`${lossType} / ${level}: the gradient is that of -A logp aggregated the same way`, () => {
        const expected = torch.tidy(() => {
          const t = tensorsOf(gd, true);
          const lp = eagerTokenLogps(t.hidden, t.head, t.labels, TEMPERATURE);
          const mask = t.labels.ne(IGNORE).to({ dtype: 'float64' });
          const perToken = lp
            .mul(f64(advantages, [S, 1]))
            .neg()
            .mul(mask);
          const n = mask.sum(1);
          const loss = {
            grpo: () => perToken.sum(1).div(n.clamp(1)).mean(),
            bnpo: () => perToken.sum().div(mask.sum().clamp(1)),
            dr_grpo: () => perToken.sum().div(S * 16),
            dapo: () => perToken.sum().div(mask.sum().clamp(1)),
          }[lossType]();
          return gradsOf(loss, [t.hidden, t.head.weight, t.head.bias]);
        });
        const config = { lossType, importanceSamplingLevel: level, temperature: TEMPERATURE, maxCompletionLength: 16 };
        for (const impl of [{ implementation: 'eager' as const }, { chunkSize: 2 }, { chunkSize: 1000 }]) {
          const got = runGrpo({ ...config, ...impl }, { old: false, ref: false });
          ['hidden', 'weight', 'bias'].forEach((name, k) =>
            expectAllClose(got.grads[k]!, expected[k]!, 1e-10, 0, `${JSON.stringify(impl)} ${name}`),
          );
          // the value: every ratio is 1, so l = -A per token
          const o: GrpoOpts = {
            lossType,
            level,
            epsilon: 0.2,
            epsilonHigh: 0.2,
            delta: null,
            beta: 0,
            maxCompletionLength: 16,
          };
          expectClose(got.loss, grpoExpected(o, gq.lp, null).loss, 1e-12, 'value');
          expect(got.metrics['clip_ratio/region_mean']).toBe(0);
        }
      });
    }
  }
});

describe('GrpoLoss edge cases', () => {
  it('a sequence without completion tokens counts in grpo mean but adds nothing', () => {
    const d = makeData(502, [
      [2, 3],
      [1, 0],
      [3, 2],
    ]);
    const adv = [0.8, -1.1, 0.4];
    const counts = rowCounts(d.labels, 3, d.T);
    expect(counts[1]).toBe(0);
    const perSeq = [0, 1, 2].map((i) => (counts[i] ? -adv[i]! : 0));
    // on-policy with every ratio 1: per-token loss -A, so the grpo mean is mean_i(-A_i [n_i > 0])
    for (const impl of [{ implementation: 'eager' as const }, { chunkSize: 1 }]) {
      const got = runGrpo({ lossType: 'grpo', ...impl }, { data: d, adv, old: false, ref: false });
      expectClose(got.loss, mean(perSeq), 1e-12, JSON.stringify(impl));
      for (const g of got.grads) expect(g.every(Number.isFinite)).toBe(true);
      for (const lossType of ['bnpo', 'dapo'] as const) {
        const other = runGrpo({ lossType, ...impl }, { data: d, adv, old: false, ref: false });
        expectClose(
          other.loss,
          (-adv[0]! * counts[0]! - adv[2]! * counts[2]!) / (counts[0]! + counts[2]!),
          1e-12,
          lossType,
        );
      }
      const seq = runGrpo(
        { lossType: 'grpo', importanceSamplingLevel: 'sequence', ...impl },
        { data: d, adv, old: false, ref: false },
      );
      expect(Number.isFinite(seq.loss)).toBe(true);
    }
  });

  it('metrics come back as sums and counts, read in one host transfer for any number of chunks', () => {
    const proto = torch.Tensor.prototype as unknown as Record<'data' | 'item', (...a: unknown[]) => unknown>;
    const [data, item] = [proto.data, proto.item];
    let reads = 0;
    const counted = (chunkSize: number): losses.LossResult['totals'] => {
      reads = 0;
      proto.data = function (this: unknown, ...a: unknown[]) {
        reads++;
        return data.apply(this, a);
      };
      proto.item = function (this: unknown, ...a: unknown[]) {
        reads++;
        return item.apply(this, a);
      };
      try {
        return torch.tidy(() => {
          const t = tensorsOf(gd);
          const batch = {
            hidden: t.hidden,
            targets: t.labels,
            advantages: f64(advantages, [S]),
            oldLogps: f64(oldLogps, [S, Tg]),
            refLogps: f64(refLogps, [S, Tg]),
          };
          return new losses.GrpoLoss({ beta: 0.05, chunkSize, temperature: TEMPERATURE }).compute(batch, t.head).totals;
        });
      } finally {
        proto.data = data;
        proto.item = item;
      }
    };
    const one = counted(1000);
    expect(reads).toBe(2); // the targets' layout, then the metrics
    const many = counted(1);
    expect(reads).toBe(2);
    const tokens = sum(gCounts);
    expect(many.counts.entropy).toBe(tokens);
    expectClose(many.sums.entropy!, one.sums.entropy!, 1e-10, 'entropy sum');
    const o: GrpoOpts = {
      lossType: 'dapo',
      level: 'token',
      epsilon: 0.2,
      epsilonHigh: 0.2,
      delta: null,
      beta: 0.05,
      maxCompletionLength: 512,
    };
    const e = grpoExpected(o, gq.lp, oldLogps);
    expectClose(many.sums['clip_ratio/low_mean']!, e.low * tokens, 1e-9, 'clip low count');
    expectClose(many.sums.kl! / many.counts.kl!, e.kl, 1e-10, 'kl');
  });

  it('errors: beta > 0 without refLogps, advantages of the wrong length', () => {
    expect(() => runGrpo({ beta: 0.1 }, { ref: false })).toThrow(TypeError);
    expect(() => runGrpo({}, { adv: [1, 2, 3] })).toThrow(RangeError);
    expect(() => runGrpo({}, { adv: [1, 2, 3] })).toThrow(/3 values for 5 sequences/);
  });
});

describe('losses.tokenLogps', () => {
  it('returns [S, T] with the completion log-probs and zeros elsewhere', () => {
    for (const temperature of [1, TEMPERATURE]) {
      const expected = tokenQuantities(gd, temperature).lp;
      const got = torch.tidy(() => {
        const t = tensorsOf(gd);
        const out = losses.tokenLogps(t.hidden, t.head, t.labels, { temperature, chunkSize: 3 });
        expect(out.shape).toEqual([S, Tg]);
        expect(out.dtype).toBe('float64');
        expect(out.requiresGrad).toBe(false);
        return arr(out);
      });
      expectAllClose(got, expected, 1e-10, 0, `tokenLogps T=${temperature}`);
      got.forEach((v, k) => {
        if (gd.labels[k] === IGNORE) expect(v).toBe(0);
        else expect(v).toBeLessThan(0);
      });
    }
    expect(gCounts).toEqual([3, 5, 2, 4, 1]);
  });
});
