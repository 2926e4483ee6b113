// The fused LM-head kernels (losses.fusedTokenStats: the two-pass autograd Function;
// losses.tokenStatsNoGrad: forward only) against a reference written here with plain JS loops,
// against the eager tensor-API path's autograd and against finite differences; chunking, float32,
// the row-kernel ISA variants (in child processes, since the ISA is chosen once per process) and
// the input checks.
import { spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { torch, losses } from '../../lib/index.js';
import { native, nativeBinaryPath } from '../../lib/torch/native.js';
import { assertGradcheck } from '../torch/gradcheck.js';
import { float32Bound } from '../tolerance.js';
import { arr, expectAllClose, f32, f64, gradsOf, IGNORE, long, rng, uniform, type Tensor } from './helpers.js';

interface RefStats {
  logp: number[];
  entropy: number[];
  lse: number[];
  meanLogit: number[];
}

/** Plain loops: logits = x W^T + b; z = logits / T; lse; logp(label) (0 when ignored); entropy; mean logit. */
function referenceStats(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  labels: readonly number[],
  rows: number,
  hidden: number,
  vocab: number,
  temperature: number,
): RefStats {
  const out: RefStats = { logp: [], entropy: [], lse: [], meanLogit: [] };
  for (let i = 0; i < rows; i++) {
    const logits: number[] = [];
    for (let v = 0; v < vocab; v++) {
      let s = b ? b[v]! : 0;
      for (let h = 0; h < hidden; h++) s += x[i * hidden + h]! * w[v * hidden + h]!;
      logits.push(s);
    }
    const z = logits.map((l) => l / temperature);
    const m = Math.max(...z);
    let se = 0;
    for (const zv of z) se += Math.exp(zv - m);
    const lse = m + Math.log(se);
    let entropy = 0;
    for (const zv of z) entropy -= Math.exp(zv - lse) * (zv - lse);
    const y = labels[i]!;
    out.logp.push(y < 0 ? 0 : z[y]! - lse);
    out.entropy.push(entropy);
    out.lse.push(lse);
    out.meanLogit.push(logits.reduce((a, c) => a + c, 0) / vocab);
  }
  return out;
}

interface Case {
  rows: number;
  hidden: number;
  vocab: number;
  x: Float64Array;
  w: Float64Array;
  b: Float64Array;
  labels: number[];
}

function makeCase(seed: number, rows = 9, hidden = 6, vocab = 37, scale = 1, ignored = true): Case {
  const next = rng(seed);
  const labels = Array.from({ length: rows }, () => Math.floor(next() * vocab));
  if (ignored) {
    labels[1] = IGNORE;
    labels[rows - 2] = IGNORE;
  }
  labels[0] = vocab - 1; // the last vocabulary entry (a SIMD tail element when V % 16 != 0)
  return {
    rows,
    hidden,
    vocab,
    x: uniform(next, rows * hidden, -scale, scale),
    w: uniform(next, vocab * hidden, -1, 1),
    b: uniform(next, vocab, -0.5, 0.5),
    labels,
  };
}

function tensorsOf(
  c: Case,
  dtype: 'float64' | 'float32',
  withBias: boolean,
  requiresGrad = false,
): { x: Tensor; head: losses.LmHead; labels: Tensor } {
  const make = dtype === 'float64' ? f64 : f32;
  return {
    x: make(c.x, [c.rows, c.hidden], requiresGrad),
    head: {
      weight: make(c.w, [c.vocab, c.hidden], requiresGrad),
      bias: withBias ? make(c.b, [c.vocab], requiresGrad) : null,
    },
    labels: long(c.labels, [c.rows]),
  };
}

type StatsFn = (x: Tensor, head: losses.LmHead, labels: Tensor, options?: losses.HeadOptions) => losses.TokenStats;

/** A fixed random weighted sum of logp, entropy and meanLogit: the scalar whose gradients are compared. */
function objective(stats: losses.TokenStats, seed: number): Tensor {
  const rows = stats.logp.shape[0]!;
  const next = rng(seed);
  const dtype = stats.logp.dtype;
  const weights = (lo: number, hi: number): Tensor => torch.tensor(uniform(next, rows, lo, hi), { dtype });
  return stats.logp
    .mul(weights(-1.5, 1.5))
    .sum()
    .add(stats.entropy.mul(weights(-1, 1)).sum())
    .add(stats.meanLogit.mul(weights(-1, 1)).sum());
}

function gradients(
  fn: StatsFn,
  c: Case,
  withBias: boolean,
  temperature: number,
  chunkSize?: number,
  dtype: 'float64' | 'float32' = 'float64',
): number[][] {
  return torch.tidy(() => {
    const { x, head, labels } = tensorsOf(c, dtype, withBias, true);
    const loss = objective(fn(x, head, labels, { temperature, chunkSize }), 777);
    return gradsOf(loss, withBias ? [x, head.weight, head.bias!] : [x, head.weight]);
  });
}

const settings = [
  { withBias: true, temperature: 1 },
  { withBias: false, temperature: 1 },
  { withBias: true, temperature: 0.7 },
  { withBias: false, temperature: 0.7 },
];

describe('fused token stats: values against plain JS loops (float64)', () => {
  for (const { withBias, temperature } of settings) {
    const name = `${withBias ? 'with' : 'without'} bias, temperature ${temperature}`;
    it(name, () => {
      const c = makeCase(11);
      const ref = referenceStats(c.x, c.w, withBias ? c.b : null, c.labels, c.rows, c.hidden, c.vocab, temperature);
      torch.tidy(() => {
        const { x, head, labels } = tensorsOf(c, 'float64', withBias);
        for (const [what, fn] of [
          ['fusedTokenStats', losses.fusedTokenStats],
          ['tokenStatsNoGrad', losses.tokenStatsNoGrad],
          ['eagerTokenStats', losses.eagerTokenStats],
        ] as const) {
          const s = fn(x, head, labels, { temperature });
          expect(s.logp.shape).toEqual([c.rows]);
          expect(s.logp.dtype).toBe('float64');
          expectAllClose(arr(s.logp), ref.logp, 1e-10, 0, `${what} logp`);
          expectAllClose(arr(s.entropy), ref.entropy, 1e-10, 0, `${what} entropy`);
          expectAllClose(arr(s.meanLogit), ref.meanLogit, 1e-10, 0, `${what} meanLogit`);
          // ignored rows: logp exactly 0, entropy still computed
          expect(Math.abs(arr(s.logp)[1]!)).toBe(0);
          expect(arr(s.entropy)[1]).toBeGreaterThan(0);
        }
      });
    });
  }

  it('torch.linearLogprobStats also returns the log-sum-exp', () => {
    const c = makeCase(12);
    const ref = referenceStats(c.x, c.w, c.b, c.labels, c.rows, c.hidden, c.vocab, 0.7);
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true);
      const { logp, entropy, lse, meanLogit } = torch.linearLogprobStats(x, head.weight, head.bias, labels, {
        temperature: 0.7,
        chunkRows: 4,
      });
      expectAllClose(arr(logp), ref.logp, 1e-10, 0, 'logp');
      expectAllClose(arr(entropy), ref.entropy, 1e-10, 0, 'entropy');
      expectAllClose(arr(lse), ref.lse, 1e-10, 0, 'lse');
      expectAllClose(arr(meanLogit), ref.meanLogit, 1e-10, 0, 'meanLogit');
    });
  });

  it('large-magnitude logits (x scale 30) stay finite and exact', () => {
    const c = makeCase(13, 7, 5, 37, 30);
    const ref = referenceStats(c.x, c.w, c.b, c.labels, c.rows, c.hidden, c.vocab, 1);
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true);
      const s = losses.fusedTokenStats(x, head, labels);
      expectAllClose(arr(s.logp), ref.logp, 1e-9, 1e-12, 'logp');
      expectAllClose(arr(s.entropy), ref.entropy, 1e-9, 1e-12, 'entropy');
      expect(arr(s.logp).every(Number.isFinite)).toBe(true);
    });
  });

  it('fusedTokenStats outputs carry a graph; tokenStatsNoGrad outputs do not', () => {
    const c = makeCase(14);
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true, true);
      const fused = losses.fusedTokenStats(x, head, labels);
      expect(fused.logp.requiresGrad).toBe(true);
      expect(fused.entropy.requiresGrad).toBe(true);
      expect(fused.meanLogit.requiresGrad).toBe(true);
      const plain = losses.tokenStatsNoGrad(x, head, labels);
      expect(plain.logp.requiresGrad).toBe(false);
    });
  });
});

describe('fused token stats: gradients', () => {
  for (const ignored of [false, true]) {
    const labelsKind = ignored ? 'labels with -100 rows' : 'all labels valid';
    for (const { withBias, temperature } of settings) {
      it(`fused == eager autograd, ${withBias ? 'with' : 'without'} bias, temperature ${temperature}, ${labelsKind}`, () => {
        const c = makeCase(21, 9, 6, 37, 1, ignored);
        const fused = gradients(losses.fusedTokenStats, c, withBias, temperature, 4);
        const eager = gradients(losses.eagerTokenStats, c, withBias, temperature);
        expect(fused.length).toBe(withBias ? 3 : 2);
        fused.forEach((g, k) => expectAllClose(g, eager[k]!, 1e-10, 0, `grad ${['x', 'weight', 'bias'][k]}`));
      });
    }

    it(`fused == central finite differences (x, weight, bias; temperature 0.7), ${labelsKind}`, () => {
      const c = makeCase(22, 5, 3, 7, 1, ignored);
      torch.tidy(() => {
        const { x, head, labels } = tensorsOf(c, 'float64', true);
        const fn = (xx: Tensor, ww: Tensor, bb: Tensor): Tensor => {
          const s = losses.fusedTokenStats(xx, { weight: ww, bias: bb }, labels, { temperature: 0.7, chunkSize: 2 });
          return torch.cat([s.logp, s.entropy, s.meanLogit]);
        };
        const err = assertGradcheck(fn, [x, head.weight, head.bias!], { atol: 1e-7, rtol: 1e-6 });
        expect(err).toBeLessThan(1e-7);
      });
    });

    it(`fused == central finite differences without bias, each output alone, ${labelsKind}`, () => {
      const c = makeCase(23, 4, 3, 6, 1, ignored);
      torch.tidy(() => {
        const { x, head, labels } = tensorsOf(c, 'float64', false);
        for (const key of ['logp', 'entropy', 'meanLogit'] as const) {
          const fn = (xx: Tensor, ww: Tensor): Tensor =>
            losses.fusedTokenStats(xx, { weight: ww }, labels, { chunkSize: 3 })[key];
          expect(assertGradcheck(fn, [x, head.weight], { atol: 1e-7, rtol: 1e-6 }), key).toBeLessThan(1e-7);
        }
      });
    });
  }

  it('an ignored row (label -100) gets no gradient through its logp (a constant 0)', () => {
    // Minimal repro of the backward kernel bug: d logp / d x must be 0 when the label is ignored.
    torch.tidy(() => {
      const x = f64([0.3, -0.2, 0.5], [1, 3], true);
      const weight = f64([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1], [4, 3], true);
      const labels = long([IGNORE], [1]);
      const s = losses.fusedTokenStats(x, { weight }, labels);
      expect(arr(s.logp).map(Math.abs)).toEqual([0]);
      const [gx, gw] = gradsOf(s.logp.sum(), [x, weight]);
      expect(gx!.map(Math.abs)).toEqual([0, 0, 0]);
      expect(gw!.map(Math.abs)).toEqual(new Array(12).fill(0));
    });
  });
});

describe('fused token stats: chunking, dtype', () => {
  it('chunk sizes 1, 2, 7, 1000 give the same values and gradients (1e-12)', () => {
    const c = makeCase(31, 11, 5, 37);
    const values = (chunkSize: number): number[][] =>
      torch.tidy(() => {
        const { x, head, labels } = tensorsOf(c, 'float64', true);
        const a = losses.fusedTokenStats(x, head, labels, { chunkSize, temperature: 0.7 });
        const b = losses.tokenStatsNoGrad(x, head, labels, { chunkSize, temperature: 0.7 });
        return [a.logp, a.entropy, a.meanLogit, b.logp, b.entropy, b.meanLogit].map(arr);
      });
    const base = values(1000);
    const baseGrads = gradients(losses.fusedTokenStats, c, true, 0.7, 1000);
    for (const chunkSize of [1, 2, 7]) {
      values(chunkSize).forEach((v, k) => expectAllClose(v, base[k]!, 1e-12, 0, `chunk ${chunkSize} output ${k}`));
      gradients(losses.fusedTokenStats, c, true, 0.7, chunkSize).forEach((g, k) =>
        expectAllClose(g, baseGrads[k]!, 1e-12, 0, `chunk ${chunkSize} grad ${k}`),
      );
    }
  });

  it('chunkSize must be a positive integer', () => {
    const c = makeCase(32);
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true);
      expect(() => losses.fusedTokenStats(x, head, labels, { chunkSize: 0 })).toThrow(RangeError);
      expect(() => losses.tokenStatsNoGrad(x, head, labels, { chunkSize: 1.5 })).toThrow(RangeError);
    });
  });

  it('float32 matches float64 to ~1e-5 relative (values and gradients)', () => {
    const c = makeCase(33, 9, 8, 37, 2);
    const run = (dtype: 'float64' | 'float32'): number[][] =>
      torch.tidy(() => {
        const { x, head, labels } = tensorsOf(c, dtype, true);
        const a = losses.fusedTokenStats(x, head, labels, { temperature: 0.7, chunkSize: 4 });
        const b = losses.tokenStatsNoGrad(x, head, labels, { temperature: 0.7, chunkSize: 4 });
        expect(a.logp.dtype).toBe(dtype);
        return [a.logp, a.entropy, a.meanLogit, b.logp, b.entropy, b.meanLogit].map(arr);
      });
    const d = run('float64');
    run('float32').forEach((v, k) => expectAllClose(v, d[k]!, 1e-5, 1e-5, `float32 output ${k}`));
    const g64 = gradients(losses.fusedTokenStats, c, true, 0.7, 4, 'float64');
    const g32 = gradients(losses.fusedTokenStats, c, true, 0.7, 4, 'float32');
    g32.forEach((g, k) => expectAllClose(g, g64[k]!, 1e-4, 1e-4, `float32 grad ${k}`));
  });
});

describe('fused token stats: row-kernel ISA variants agree (child processes)', () => {
  // The ISA is fixed once per process from VLALIGN_CPU_CAPABILITY, so each variant runs in its own
  // node process that loads the addon directly (float32: the only dtype with SIMD row kernels).
  const script = `
    const n = require(${JSON.stringify(nativeBinaryPath)});
    const d = JSON.parse(process.env.VL_CASE);
    const f = (a, shape) => n.fromBytes(new Float32Array(a), 6, shape);
    const read = (h) => Array.from(new Float32Array(n.bytes(h)));
    const results = [];
    for (const c of d.cases) {
      const x = f(c.x, [c.rows, c.hidden]);
      const w = f(c.w, [c.vocab, c.hidden]);
      const b = c.b ? f(c.b, [c.vocab]) : 0;
      const y = n.fromBytes(BigInt64Array.from(c.labels.map(BigInt)), 4, [c.rows]);
      const stats = n.linearLogprobStats(x, w, b, y, c.temperature, 4).map(read);
      n.requiresGrad_(x, true);
      n.requiresGrad_(w, true);
      if (b) n.requiresGrad_(b, true);
      // trailing 0: an exact backward (no gradient filtering) where the binding takes that option
      const outs = n.linearLogprobs(x, w, b, y, c.temperature, 3, 0);
      const seeds = [c.gl, c.ge, c.gm].map((g) => f(g, [c.rows]));
      const grads = n.autogradGrad(outs, b ? [x, w, b] : [x, w], seeds, false, false, false).map(read);
      results.push({ stats, forward: outs.map(read), grads });
    }
    process.stdout.write(JSON.stringify({ isa: n.rowKernelIsa(), results }));
  `;

  const cases = [
    { seed: 41, scale: 1, rows: 9, hidden: 8, vocab: 37, temperature: 1, bias: true },
    { seed: 42, scale: 30, rows: 7, hidden: 8, vocab: 37, temperature: 1, bias: true },
    { seed: 43, scale: 1, rows: 5, hidden: 5, vocab: 16, temperature: 0.7, bias: false },
    { seed: 44, scale: 3, rows: 6, hidden: 7, vocab: 53, temperature: 0.7, bias: true },
    { seed: 45, scale: 2, rows: 3, hidden: 4, vocab: 5, temperature: 1, bias: false },
  ].map((s) => {
    const c = makeCase(s.seed, s.rows, s.hidden, s.vocab, s.scale);
    const next = rng(s.seed + 1000);
    // float32-representable inputs, so the float64 reference sees exactly what the kernels see
    const r32 = (a: Float64Array): number[] => Array.from(Float32Array.from(a));
    return {
      rows: c.rows,
      hidden: c.hidden,
      vocab: c.vocab,
      x: r32(c.x),
      w: r32(c.w),
      b: s.bias ? r32(c.b) : null,
      labels: c.labels,
      temperature: s.temperature,
      gl: r32(uniform(next, c.rows)),
      ge: r32(uniform(next, c.rows)),
      gm: r32(uniform(next, c.rows)),
    };
  });

  const run = (
    isa: string,
  ): { isa: string; results: Array<{ stats: number[][]; forward: number[][]; grads: number[][] }> } => {
    const child = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, VLALIGN_CPU_CAPABILITY: isa, VL_CASE: JSON.stringify({ cases }), OMP_NUM_THREADS: '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (child.status !== 0) throw new Error(`child (${isa}) failed: ${child.stderr}`);
    return JSON.parse(child.stdout);
  };

  it('default, avx2 and avx512 give the same stats and gradients (V = 37, 16, 53, 5; logits up to scale 30)', () => {
    const variants = ['default', 'avx2', 'avx512'].map((isa) => ({ isa, out: run(isa) }));
    const reported = variants.map((v) => v.out.isa);
    expect(reported[0]).toBe('default');
    // This process picks the widest ISA the CPU has; the forced variants must not exceed it.
    const widest = native.rowKernelIsa() as string;
    if (widest === 'avx512') expect(reported).toEqual(['default', 'avx2', 'avx512']);
    if (widest === 'avx2') expect(reported).toEqual(['default', 'avx2', 'avx2']);

    // Elementwise relative for per-token values; gradients (sums over rows of products with x up
    // to 30) relative to the gradient's largest element.
    const close = (a: number[], b: number[], what: string, rel: number, scaleOfVector = false): void => {
      const scale = scaleOfVector ? Math.max(1, ...b.map(Math.abs)) : 0;
      for (let k = 0; k < a.length; k++) {
        const tol = rel * Math.max(1, scale, Math.abs(a[k]!), Math.abs(b[k]!));
        if (!(Math.abs(a[k]! - b[k]!) <= tol)) expect.fail(`${what} element ${k}: ${a[k]} vs ${b[k]}`);
      }
    };
    const maxLogit = (c: (typeof cases)[number]): number => {
      let m = 0;
      for (let r = 0; r < c.rows; r++) {
        for (let o = 0; o < c.vocab; o++) {
          let l = c.b ? c.b[o]! : 0;
          for (let h = 0; h < c.hidden; h++) l += c.x[r * c.hidden + h]! * c.w[o * c.hidden + h]!;
          m = Math.max(m, Math.abs(l / c.temperature));
        }
      }
      return m;
    };
    const base = variants[0]!.out.results;
    cases.forEach((c, i) => {
      // The default kernel itself against the float64 loops.
      const ref = referenceStats(c.x, c.w, c.b, c.labels, c.rows, c.hidden, c.vocab, c.temperature);
      const tolRef = 1e-4;
      [ref.logp, ref.entropy, ref.lse, ref.meanLogit].forEach((r, k) => {
        const got = base[i]!.stats[k]!;
        expect(got.every(Number.isFinite), `case ${i} output ${k} finite`).toBe(true);
        got.forEach((g, e) => {
          if (!(Math.abs(g - r[e]!) <= tolRef * Math.max(1, Math.abs(r[e]!))))
            expect.fail(`case ${i} output ${k} element ${e}: ${g} vs float64 ${r[e]}`);
        });
      });
      // The kernels round logits of size M (up to ~90 here) to ~eps·M, which p = exp(l - lse) carries
      // as a relative error, and sum V of them per row: ~eps·(M + √V); the gradients also sum the rows.
      const size = Math.max(1, maxLogit(c)) + Math.sqrt(c.vocab);
      const [valueTol, gradTol] = [float32Bound(1, size), float32Bound(c.rows, size)];
      for (const v of variants.slice(1)) {
        const other = v.out.results[i]!;
        base[i]!.stats.forEach((s, k) => close(other.stats[k]!, s, `${v.isa} case ${i} stats ${k}`, valueTol));
        base[i]!.forward.forEach((s, k) => close(other.forward[k]!, s, `${v.isa} case ${i} forward ${k}`, valueTol));
        base[i]!.grads.forEach((g, k) => close(other.grads[k]!, g, `${v.isa} case ${i} grad ${k}`, gradTol, true));
      }
    });
  });
});

describe('fused token stats: input errors', () => {
  const c = makeCase(51, 4, 3, 7);

  it('a label out of range names the vocabulary size', () => {
    torch.tidy(() => {
      const { x, head } = tensorsOf(c, 'float64', true);
      const labels = long([0, 7, 2, IGNORE], [4]);
      for (const fn of [losses.fusedTokenStats, losses.tokenStatsNoGrad]) {
        let error: unknown;
        try {
          fn(x, head, labels);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(RangeError);
        expect(String((error as Error).message)).toMatch(/vocabulary of 7/);
        expect(String((error as Error).message)).toMatch(/label 7/);
      }
    });
  });

  it('wrong shapes name the shapes', () => {
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true);
      const wideWeight = f64(uniform(rng(1), 7 * 4), [7, 4]);
      expect(() => losses.fusedTokenStats(x, { weight: wideWeight }, labels)).toThrow(/\[7, 4\]/);
      expect(() => losses.tokenStatsNoGrad(x, { weight: wideWeight }, labels)).toThrow(/\[4, 3\]/);
      expect(() => losses.fusedTokenStats(x, { weight: head.weight, bias: f64([1, 2, 3], [3]) }, labels)).toThrow(
        /bias must be \[7\].*\[3\]/,
      );
      expect(() => losses.fusedTokenStats(x, head, long([0, 1, 2], [3]))).toThrow(/labels must be int64 \[4\].*\[3\]/);
      expect(() => losses.fusedTokenStats(x.reshape(2, 2, 3), head, labels)).toThrow(/\[2, 2, 3\]/);
    });
  });

  it('wrong dtypes name the dtypes', () => {
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true);
      expect(() => losses.fusedTokenStats(x.float(), head, labels)).toThrow(/Float.*Double|Double.*Float/);
      expect(() => losses.tokenStatsNoGrad(x, head, labels.int())).toThrow(/int64.*Int/);
      expect(() => losses.fusedTokenStats(x.half(), { weight: head.weight.half() }, labels)).toThrow(
        /float32 or float64.*Half/,
      );
    });
  });

  it('temperature <= 0 is refused', () => {
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true);
      for (const t of [0, -1]) {
        expect(() => losses.fusedTokenStats(x, head, labels, { temperature: t })).toThrow(/temperature must be > 0/);
        expect(() => losses.tokenStatsNoGrad(x, head, labels, { temperature: t })).toThrow(/temperature must be > 0/);
      }
    });
  });

  it('frees every tensor it makes', () => {
    torch.tidy(() => {
      const { x, head, labels } = tensorsOf(c, 'float64', true, true);
      const before = torch.memory().numTensors;
      torch.tidy(() => {
        const s = losses.fusedTokenStats(x, head, labels, { chunkSize: 2 });
        torch.autograd.grad(objective(s, 1), [x, head.weight, head.bias!]);
        losses.tokenStatsNoGrad(x, head, labels, { chunkSize: 2 });
      });
      expect(torch.memory().numTensors).toBe(before);
    });
  });
});
