// Op values against independent expectations: plain-JS loops over arrays or known math, never the
// library itself. Also the error contract: shapes in messages, TypeErrors for bad arguments,
// disposed tensors and out-of-range indices as JS errors rather than crashes.
import { describe, it, expect } from 'vitest';
import { torch } from '../../lib/index.js';
import { rng } from './gradcheck.js';

type Tensor = torch.Tensor;
const F = torch.nn.functional;

// ---- plain-JS helpers -----------------------------------------------------------------------------

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Elements in row-major order as JS numbers (booleans as 0 / 1). */
function flat(t: Tensor): number[] {
  const a = t.toArray();
  const list = Array.isArray(a) ? (a as unknown[]).flat(Infinity) : [a];
  return list.map((v) => (typeof v === 'boolean' ? Number(v) : (v as number)));
}

/** Deterministic values rounded to float32, so JS and the float32 tensor hold the same numbers. */
function values(n: number, seed: number, min = -1, max = 1): number[] {
  const next = rng(seed);
  return Array.from({ length: n }, () => Math.fround(min + (max - min) * next()));
}

function randomTensor(shape: number[], seed: number, min = -1, max = 1): [Tensor, number[]] {
  const v = values(numel(shape), seed, min, max);
  return [torch.tensor(Float32Array.from(v), { shape }), v];
}

function expectClose(actual: Tensor | number[], expected: readonly number[], tol = 1e-5): void {
  const got = Array.isArray(actual) ? actual : flat(actual);
  expect(got.length).toBe(expected.length);
  const bad: string[] = [];
  got.forEach((v, k) => {
    const e = expected[k]!;
    const ok = Number.isNaN(e) ? Number.isNaN(v) : v === e || Math.abs(v - e) <= tol * (1 + Math.abs(e));
    if (!ok && bad.length < 8) bad.push(`[${k}] got ${v}, expected ${e}`);
  });
  expect(bad).toEqual([]);
}

function strides(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) out[d] = out[d + 1]! * shape[d + 1]!;
  return out;
}

function unravel(offset: number, shape: readonly number[]): number[] {
  const st = strides(shape);
  return shape.map((_, d) => Math.floor(offset / st[d]!) % shape[d]!);
}

/** NumPy broadcasting of a binary op, written out with index arithmetic. */
function broadcast(
  a: number[],
  as: number[],
  b: number[],
  bs: number[],
  op: (x: number, y: number) => number,
): { shape: number[]; values: number[] } {
  const nd = Math.max(as.length, bs.length);
  const pa = [...Array(nd - as.length).fill(1), ...as];
  const pb = [...Array(nd - bs.length).fill(1), ...bs];
  const shape = pa.map((n, d) => (n === 1 ? pb[d]! : n));
  const sa = strides(pa);
  const sb = strides(pb);
  const out: number[] = [];
  for (let o = 0; o < numel(shape); o++) {
    const idx = unravel(o, shape);
    let ia = 0;
    let ib = 0;
    idx.forEach((i, d) => {
      ia += (pa[d] === 1 ? 0 : i) * sa[d]!;
      ib += (pb[d] === 1 ? 0 : i) * sb[d]!;
    });
    out.push(op(a[ia]!, b[ib]!));
  }
  return { shape, values: out };
}

/** [n, k] @ [k, m] by the textbook triple loop. */
function mmJs(a: number[], b: number[], n: number, k: number, m: number): number[] {
  const out = new Array<number>(n * m).fill(0);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) for (let p = 0; p < k; p++) out[i * m + j]! += a[i * k + p]! * b[p * m + j]!;
  return out;
}

function softmaxJs(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((x, y) => x + y, 0);
  return e.map((v) => v / s);
}

const rows = (v: number[], width: number): number[][] =>
  Array.from({ length: v.length / width }, (_, r) => v.slice(r * width, (r + 1) * width));

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): independent of libtorch.
function erfJs(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

const sigmoidJs = (x: number): number => 1 / (1 + Math.exp(-x));

// ---- tests ---------------------------------------------------------------------------------------

describe('elementwise arithmetic', () => {
  it('broadcasts add / sub / mul / div like NumPy', () => {
    torch.tidy(() => {
      const [a, av] = randomTensor([2, 1, 3], 1);
      const [b, bv] = randomTensor([4, 1], 2, 0.5, 2);
      const cases: Array<[Tensor, (x: number, y: number) => number]> = [
        [a.add(b), (x, y) => x + y],
        [a.sub(b), (x, y) => x - y],
        [a.mul(b), (x, y) => x * y],
        [a.div(b), (x, y) => x / y],
        [torch.add(a, b, 2), (x, y) => x + 2 * y],
        [a.sub(b, 0.5), (x, y) => x - 0.5 * y],
        [b.pow(a), (x, y) => y ** x], // x from a, y from b: b ** a
      ];
      for (const [t, op] of cases) {
        const expected = broadcast(av, [2, 1, 3], bv, [4, 1], op);
        expect(t.shape).toEqual([2, 4, 3]);
        expect(expected.shape).toEqual([2, 4, 3]);
        expectClose(t, expected.values);
      }
    });
  });

  it('scalar operands', () => {
    torch.tidy(() => {
      const [a, av] = randomTensor([5], 3, 0.5, 2);
      expectClose(
        a.add(1.5),
        av.map((x) => x + 1.5),
      );
      expectClose(
        a.add(2, 3),
        av.map((x) => x + 6),
      );
      expectClose(
        a.sub(0.25),
        av.map((x) => x - 0.25),
      );
      expectClose(
        a.mul(-3),
        av.map((x) => x * -3),
      );
      expectClose(
        a.div(4),
        av.map((x) => x / 4),
      );
      expectClose(
        a.pow(2),
        av.map((x) => x * x),
      );
      expectClose(a.pow(0.5), av.map(Math.sqrt));
      expectClose(
        a.rsub(10),
        av.map((x) => 10 - x),
      );
      expectClose(
        torch.pow(2, a),
        av.map((x) => 2 ** x),
      );
      expectClose(
        torch.mul(a, 2),
        av.map((x) => 2 * x),
      );
      expectClose(
        torch.sub(a, 1),
        av.map((x) => x - 1),
      );
      expectClose(
        torch.div(a, 2),
        av.map((x) => x / 2),
      );
    });
  });

  it('integer division modes, remainder and fmod follow Python / C semantics', () => {
    torch.tidy(() => {
      const a = torch.tensor([-7, 7, -6, 5]);
      expect(a.div(2, 'floor').toArray()).toEqual([-4, 3, -3, 2]);
      expect(a.div(2, 'trunc').toArray()).toEqual([-3, 3, -3, 2]);
      expect(a.div(2, 'floor').dtype).toBe('int64');
      expect(a.div(torch.tensor([2, -2, 4, -3]), 'floor').toArray()).toEqual([-4, -4, -2, -2]);
      expect(a.div(2).toArray()).toEqual([-3.5, 3.5, -3, 2.5]); // true division
      expect(a.div(2).dtype).toBe('float32');
      expect(a.remainder(3).toArray()).toEqual([2, 1, 0, 2]); // sign of the divisor
      expect(a.fmod(3).toArray()).toEqual([-1, 1, 0, 2]); // sign of the dividend
      expect(a.remainder(torch.tensor([-3])).toArray()).toEqual([-1, -2, 0, -1]);
      expect(torch.tensor([-7.5, 7.5]).remainder(2).toArray()).toEqual([0.5, 1.5]);
      expect(torch.tensor([-7.5, 7.5]).fmod(2).toArray()).toEqual([-1.5, 1.5]);
    });
  });

  it('integer vs float scalar promotion', () => {
    torch.tidy(() => {
      const i = torch.tensor([1, 2, 3]);
      expect(i.dtype).toBe('int64');
      const plusInt = i.add(2);
      expect(plusInt.dtype).toBe('int64');
      expect(plusInt.toArray()).toEqual([3, 4, 5]);
      const plusFloat = i.add(2.5);
      expect(plusFloat.dtype).toBe('float32');
      expect(plusFloat.toArray()).toEqual([3.5, 4.5, 5.5]);
      expect(i.mul(2.5).dtype).toBe('float32');
      expect(i.mul(2).dtype).toBe('int64');
      expect(i.pow(2).toArray()).toEqual([1, 4, 9]);
      expect(i.pow(2).dtype).toBe('int64');
      expect(i.add(true).toArray()).toEqual([2, 3, 4]);
      // a scalar never widens a tensor of the same kind
      expect(torch.tensor([1], { dtype: 'int32' }).add(2).dtype).toBe('int32');
      expect(torch.tensor([1], { dtype: 'int8' }).mul(3).dtype).toBe('int8');
      expect(torch.tensor([1], { dtype: 'float64' }).add(2).dtype).toBe('float64');
      expect(torch.tensor([1], { dtype: 'float16' }).mul(0.5).dtype).toBe('float16');
      expect(torch.tensor([true]).add(1).dtype).toBe('int64');
      // tensor-tensor promotion
      expect(torch.tensor([1], { dtype: 'int32' }).add(torch.tensor([1])).dtype).toBe('int64');
      expect(torch.tensor([1]).add(torch.tensor([1.5])).dtype).toBe('float32');
      expect(torch.tensor([1], { dtype: 'uint8' }).add(torch.tensor([1], { dtype: 'int8' })).dtype).toBe('int16');
      expect(torch.tensor([1], { dtype: 'float16' }).add(torch.tensor([1.5])).dtype).toBe('float32');
      expect(torch.tensor([1], { dtype: 'bfloat16' }).add(torch.tensor([1], { dtype: 'float16' })).dtype).toBe(
        'float32',
      );
      expect(torch.tensor([1.5]).add(torch.tensor([1], { dtype: 'float64' })).dtype).toBe('float64');
      // a zero-dim tensor does not promote like a full tensor (it is treated like a scalar)
      expect(torch.tensor([1], { dtype: 'int32' }).add(torch.tensor(5)).dtype).toBe('int32');
    });
  });

  it('comparisons and logical ops return bool', () => {
    torch.tidy(() => {
      const a = torch.tensor([
        [1, 5, 3],
        [4, 2, 6],
      ]);
      const b = torch.tensor([3, 2, 3]);
      const av = [1, 5, 3, 4, 2, 6];
      const bv = [3, 2, 3];
      const ops: Array<[Tensor, (x: number, y: number) => boolean]> = [
        [a.eq(b), (x, y) => x === y],
        [a.ne(b), (x, y) => x !== y],
        [a.lt(b), (x, y) => x < y],
        [a.le(b), (x, y) => x <= y],
        [a.gt(b), (x, y) => x > y],
        [a.ge(b), (x, y) => x >= y],
      ];
      for (const [t, op] of ops) {
        expect(t.dtype).toBe('bool');
        expect(t.shape).toEqual([2, 3]);
        expect(t.toArray()).toEqual(
          rows(broadcast(av, [2, 3], bv, [3], (x, y) => Number(op(x, y))).values, 3).map((r) => r.map(Boolean)),
        );
      }
      expect(a.gt(3).toArray()).toEqual([
        [false, true, false],
        [true, false, true],
      ]);
      expect(a.eq(2).dtype).toBe('bool');
      expect(a.le(2.5).toArray()).toEqual([
        [true, false, false],
        [false, true, false],
      ]);
      expect(
        torch
          .tensor([0.5, 1.5])
          .ge(torch.tensor([1], { dtype: 'int64' }))
          .toArray(),
      ).toEqual([false, true]);
      const p = torch.tensor([true, true, false, false]);
      const q = torch.tensor([true, false, true, false]);
      expect(p.logicalAnd(q).toArray()).toEqual([true, false, false, false]);
      expect(p.logicalOr(q).toArray()).toEqual([true, true, true, false]);
      expect(p.logicalXor(q).toArray()).toEqual([false, true, true, false]);
      expect(p.logicalNot().toArray()).toEqual([false, false, true, true]);
      expect(
        a.equal(
          torch.tensor([
            [1, 5, 3],
            [4, 2, 6],
          ]),
        ),
      ).toBe(true);
      expect(a.equal(a.float())).toBe(false); // dtype differs
      expect(a.equal(b)).toBe(false); // shape differs
      expect(
        torch
          .tensor([1, 2])
          .float()
          .allclose(torch.tensor([1, 2.000001])),
      ).toBe(true);
      expect(torch.allclose(torch.tensor([1, 2.1]), torch.tensor([1, 2]).float())).toBe(false);
      expect(torch.tensor([1, 1.001]).allclose(torch.tensor([1, 1]).float(), 0, 0.01)).toBe(true);
    });
  });

  it('unary math matches Math.*', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([7], 4, -2, 2);
      const [p, pv] = randomTensor([7], 5, 0.1, 3);
      expectClose(
        x.neg(),
        xv.map((v) => -v),
      );
      expectClose(x.abs(), xv.map(Math.abs));
      expectClose(x.exp(), xv.map(Math.exp));
      expectClose(p.log(), pv.map(Math.log));
      expectClose(p.log2(), pv.map(Math.log2));
      expectClose(p.log1p(), pv.map(Math.log1p));
      expectClose(x.expm1(), xv.map(Math.expm1));
      expectClose(p.sqrt(), pv.map(Math.sqrt));
      expectClose(
        p.rsqrt(),
        pv.map((v) => 1 / Math.sqrt(v)),
      );
      expectClose(
        x.square(),
        xv.map((v) => v * v),
      );
      expectClose(
        p.reciprocal(),
        pv.map((v) => 1 / v),
      );
      expectClose(x.sin(), xv.map(Math.sin));
      expectClose(x.cos(), xv.map(Math.cos));
      expectClose(x.tanh(), xv.map(Math.tanh));
      expectClose(x.sigmoid(), xv.map(sigmoidJs));
      expectClose(
        x.relu(),
        xv.map((v) => Math.max(v, 0)),
      );
      expectClose(
        x.silu(),
        xv.map((v) => v * sigmoidJs(v)),
      );
      expectClose(x.erf(), xv.map(erfJs), 1e-6);
      expectClose(x.sign(), xv.map(Math.sign));
      expectClose(x.floor(), xv.map(Math.floor));
      expectClose(x.ceil(), xv.map(Math.ceil));
      expectClose(x.trunc(), xv.map(Math.trunc));
      expectClose(
        x.atan2(p),
        xv.map((v, k) => Math.atan2(v, pv[k]!)),
      );
      expectClose(
        x.maximum(p.sub(1)),
        xv.map((v, k) => Math.max(v, pv[k]! - 1)),
      );
      expectClose(
        torch.minimum(x, p.sub(1)),
        xv.map((v, k) => Math.min(v, pv[k]! - 1)),
      );
      expect(torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5]).round().toArray()).toEqual([0, 2, 2, -0, -2]); // half to even
      expect(torch.tensor([1e-3, -2, 0]).sign().toArray()).toEqual([1, -1, 0]);
      expect(torch.exp(torch.tensor([0])).toArray()).toEqual([1]); // int input gives float
      expect(torch.sqrt(torch.tensor([4, 9])).dtype).toBe('float32');
    });
  });

  it('activations match their formulas', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([9], 6, -4, 4);
      expectClose(
        F.gelu(x),
        xv.map((v) => 0.5 * v * (1 + erfJs(v / Math.SQRT2))),
        1e-5,
      );
      const c = Math.sqrt(2 / Math.PI);
      expectClose(
        F.gelu(x, { approximate: 'tanh' }),
        xv.map((v) => 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v ** 3)))),
        1e-5,
      );
      expectClose(
        F.softplus(x),
        xv.map((v) => Math.log1p(Math.exp(v))),
      );
      expectClose(
        F.softplus(x, { beta: 2 }),
        xv.map((v) => Math.log1p(Math.exp(2 * v)) / 2),
      );
      // above the threshold softplus is the identity
      expectClose(F.softplus(torch.tensor([30, 5], { dtype: 'float32' }), { threshold: 20 }), [
        30,
        Math.log1p(Math.exp(5)),
      ]);
      expectClose(
        F.logsigmoid(x),
        xv.map((v) => Math.log(sigmoidJs(v))),
      );
      expectClose(F.logsigmoid(torch.tensor([-200], { dtype: 'float32' })), [-200]); // stable for large negative inputs
      expectClose(
        F.relu(x),
        xv.map((v) => Math.max(v, 0)),
      );
      expectClose(
        F.silu(x),
        xv.map((v) => v * sigmoidJs(v)),
      );
      expectClose(F.sigmoid(x), xv.map(sigmoidJs));
      expectClose(F.tanh(x), xv.map(Math.tanh));
    });
  });

  it('nan / inf predicates', () => {
    torch.tidy(() => {
      const t = torch.tensor([1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
      expect(t.isnan().toArray()).toEqual([false, true, false, false]);
      expect(t.isinf().toArray()).toEqual([false, false, true, true]);
      expect(t.isfinite().toArray()).toEqual([true, false, false, false]);
      expect(torch.tensor([-1]).log().isnan().item()).toBe(true);
      expect(torch.tensor([0]).float().log().item()).toBe(Number.NEGATIVE_INFINITY);
    });
  });

  it('where, maskedFill and clamp', () => {
    torch.tidy(() => {
      const m = torch.tensor([
        [true, false, true],
        [false, false, true],
      ]);
      const mv = [1, 0, 1, 0, 0, 1];
      const [a, av] = randomTensor([2, 3], 7);
      const [b, bv] = randomTensor([3], 8);
      expectClose(
        torch.where(m, a, b),
        mv.map((c, k) => (c ? av[k]! : bv[k % 3]!)),
      );
      expectClose(
        a.where(m, b),
        mv.map((c, k) => (c ? av[k]! : bv[k % 3]!)),
      );
      expectClose(
        torch.where(m, a, -1),
        mv.map((c, k) => (c ? av[k]! : -1)),
      );
      expectClose(
        torch.where(m, 2.5, b),
        mv.map((c, k) => (c ? 2.5 : bv[k % 3]!)),
      );
      expectClose(
        torch.where(m, 1.5, -1.5),
        mv.map((c) => (c ? 1.5 : -1.5)),
      );
      expectClose(
        a.maskedFill(m, 9),
        mv.map((c, k) => (c ? 9 : av[k]!)),
      );
      // a mask broadcasts
      expectClose(
        a.maskedFill(torch.tensor([false, true, false]), 0),
        av.map((v, k) => (k % 3 === 1 ? 0 : v)),
      );
      expect(
        torch
          .tensor([1, 2, 3])
          .maskedFill(torch.tensor([true, false, true]), 7)
          .toArray(),
      ).toEqual([7, 2, 7]);
      const [x, xv] = randomTensor([8], 9, -2, 2);
      expectClose(
        x.clamp(-0.5, 0.5),
        xv.map((v) => Math.min(0.5, Math.max(-0.5, v))),
      );
      expectClose(
        x.clamp(0),
        xv.map((v) => Math.max(0, v)),
      );
      expectClose(
        x.clamp(null, 1),
        xv.map((v) => Math.min(1, v)),
      );
      expectClose(
        torch.clamp(x, -1, 1),
        xv.map((v) => Math.min(1, Math.max(-1, v))),
      );
      const ci = torch.tensor([-5, 0, 5]).clamp(-2, 3);
      expect(ci.dtype).toBe('int64');
      expect(ci.toArray()).toEqual([-2, 0, 3]);
    });
  });

  it('where promotes a float scalar against an integer tensor (no truncation)', () => {
    torch.tidy(() => {
      // PyTorch: torch.where(cond, int64 tensor, 0.5) is float32 [1., 0.5, 3.]
      const r = torch.where(torch.tensor([true, false, true]), torch.tensor([1, 2, 3]), 0.5);
      expect(r.toArray()).toEqual([1, 0.5, 3]);
      expect(r.dtype).toBe('float32');
    });
  });

  it('lerp, addcmul, addcdiv', () => {
    torch.tidy(() => {
      const [a, av] = randomTensor([4], 10);
      const [b, bv] = randomTensor([4], 11);
      const [c, cv] = randomTensor([4], 12, 0.5, 2);
      expectClose(
        a.lerp(b, 0.25),
        av.map((v, k) => v + 0.25 * (bv[k]! - v)),
      );
      expectClose(
        a.addcmul(b, c, 0.5),
        av.map((v, k) => v + 0.5 * bv[k]! * cv[k]!),
      );
      expectClose(
        a.addcdiv(b, c, 2),
        av.map((v, k) => v + (2 * bv[k]!) / cv[k]!),
      );
    });
  });
});

describe('reductions', () => {
  // x[i][j][k] over [2, 3, 4]
  const shape = [2, 3, 4];
  const at = (v: number[], i: number, j: number, k: number): number => v[i * 12 + j * 4 + k]!;

  it('sum / mean over all, one and several dims, with keepdim', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor(shape, 20);
      const total = xv.reduce((a, b) => a + b, 0);
      expectClose(x.sum(), [total]);
      expect(x.sum().shape).toEqual([]);
      expectClose(x.mean(), [total / 24]);
      const sum1: number[] = [];
      for (let i = 0; i < 2; i++)
        for (let k = 0; k < 4; k++) sum1.push([0, 1, 2].reduce((s, j) => s + at(xv, i, j, k), 0));
      expect(x.sum(1).shape).toEqual([2, 4]);
      expectClose(x.sum(1), sum1);
      expect(x.sum(1, true).shape).toEqual([2, 1, 4]);
      expectClose(x.sum(1, true), sum1);
      expectClose(x.sum(-2), sum1);
      expectClose(
        x.mean(1),
        sum1.map((v) => v / 3),
      );
      const sum02: number[] = [];
      for (let j = 0; j < 3; j++) {
        let s = 0;
        for (let i = 0; i < 2; i++) for (let k = 0; k < 4; k++) s += at(xv, i, j, k);
        sum02.push(s);
      }
      expect(x.sum([0, 2]).shape).toEqual([3]);
      expectClose(x.sum([0, 2]), sum02);
      expect(x.mean([0, 2], true).shape).toEqual([1, 3, 1]);
      expectClose(
        x.mean([0, 2], true),
        sum02.map((v) => v / 8),
      );
    });
  });

  it('sum / mean of every element honour keepdim', () => {
    torch.tidy(() => {
      // PyTorch 2: x.sum(dim=None, keepdim=True) has shape [1, 1]; amax already behaves so here.
      const x = torch.ones(2, 3);
      const got = {
        amax: x.amax(undefined, true).shape,
        amin: x.amin(undefined, true).shape,
        sum: x.sum(undefined, true).shape,
        mean: x.mean(undefined, true).shape,
      };
      expect(got).toEqual({ amax: [1, 1], amin: [1, 1], sum: [1, 1], mean: [1, 1] });
    });
  });

  it('integer and bool sums, dtype option', () => {
    torch.tidy(() => {
      expect(torch.tensor([1, 2, 3], { dtype: 'int32' }).sum().dtype).toBe('int64');
      expect(torch.tensor([1, 2, 3], { dtype: 'int32' }).sum().item()).toBe(6);
      expect(torch.tensor([true, false, true]).sum().item()).toBe(2);
      const s = torch.tensor([1, 2]).sum(undefined, false, { dtype: 'float64' });
      expect(s.dtype).toBe('float64');
      expect(s.item()).toBe(3);
      expect(() => torch.tensor([1, 2]).mean()).toThrow(/floating point/); // as PyTorch
      expect(torch.tensor([1, 2]).mean(undefined, false, { dtype: 'float32' }).item()).toBe(1.5);
      // large-ish sums stay exact in int64
      expect(torch.full([1000], 1e9).sum().item()).toBe(1e12);
    });
  });

  it('prod, amax / amin, max / min with indices, argmax / argmin', () => {
    torch.tidy(() => {
      const v = [3, -1, 4, 1, -5, 9, 2, 6, -5, 3, 5, 8];
      const x = torch.tensor(v, { dtype: 'float32' }).reshape(3, 4);
      expect(x.prod().item()).toBe(v.reduce((a, b) => a * b, 1));
      expect(x.prod(1).toArray()).toEqual(rows(v, 4).map((r) => r.reduce((a, b) => a * b, 1)));
      expect(x.prod(0, true).shape).toEqual([1, 4]);
      expect(x.amax().item()).toBe(9);
      expect(x.amin().item()).toBe(-5);
      expect(x.amax(1).toArray()).toEqual(rows(v, 4).map((r) => Math.max(...r)));
      expect(x.amin(0).toArray()).toEqual([0, 1, 2, 3].map((c) => Math.min(v[c]!, v[4 + c]!, v[8 + c]!)));
      expect(x.max().item()).toBe(9);
      expect(x.min().item()).toBe(-5);
      const [mv, mi] = x.max(1);
      expect(mv.toArray()).toEqual([4, 9, 8]);
      expect(mi.toArray()).toEqual([2, 1, 3]);
      expect(mi.dtype).toBe('int64');
      const [nv, ni] = x.min(0, true);
      expect(nv.shape).toEqual([1, 4]);
      expect(nv.toArray()).toEqual([[-5, -1, 2, 1]]);
      expect(ni.toArray()).toEqual([[1, 0, 1, 0]]); // first of the tied -5s in column 0
      expect(x.argmax().item()).toBe(5); // flattened
      expect(x.argmin().item()).toBe(4); // first of the two -5s
      expect(x.argmax(1).toArray()).toEqual([2, 1, 3]);
      expect(x.argmin(0, true).toArray()).toEqual([[1, 0, 1, 0]]);
      expect(torch.tensor([1, 3, 3, 0]).argmax().item()).toBe(1); // first maximal value
    });
  });

  it('var / std with Bessel correction', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([3, 5], 21, -3, 3);
      const varJs = (r: number[], correction: number): number => {
        const m = r.reduce((a, b) => a + b, 0) / r.length;
        return r.reduce((a, b) => a + (b - m) ** 2, 0) / (r.length - correction);
      };
      expectClose(x.var(), [varJs(xv, 1)]);
      expectClose(x.std(), [Math.sqrt(varJs(xv, 1))]);
      expectClose(x.var(undefined, { correction: 0 }), [varJs(xv, 0)]);
      expectClose(
        x.var(1),
        rows(xv, 5).map((r) => varJs(r, 1)),
      );
      expectClose(
        x.std(1, { correction: 0 }),
        rows(xv, 5).map((r) => Math.sqrt(varJs(r, 0))),
      );
      const cols = [0, 1, 2, 3, 4].map((c) => [xv[c]!, xv[5 + c]!, xv[10 + c]!]);
      expect(x.var(0, { keepdim: true }).shape).toEqual([1, 5]);
      expectClose(
        x.var(0, { keepdim: true }),
        cols.map((c) => varJs(c, 1)),
      );
      expectClose(torch.tensor([2, 4, 4, 4, 5, 5, 7, 9], { dtype: 'float32' }).std(undefined, { correction: 0 }), [2]);
    });
  });

  it('vector norms', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([3, 4], 22, -2, 2);
      expectClose(x.norm(), [Math.sqrt(xv.reduce((a, b) => a + b * b, 0))]);
      expectClose(x.norm(1), [xv.reduce((a, b) => a + Math.abs(b), 0)]);
      expectClose(x.norm(Number.POSITIVE_INFINITY), [Math.max(...xv.map(Math.abs))]);
      expectClose(
        x.norm(3, 1),
        rows(xv, 4).map((r) => r.reduce((a, b) => a + Math.abs(b) ** 3, 0) ** (1 / 3)),
      );
      expect(x.norm(2, 0, true).shape).toEqual([1, 4]);
      expectClose(torch.tensor([3, 4], { dtype: 'float32' }).norm(), [5]);
    });
  });

  it('logsumexp is stable for large inputs', () => {
    torch.tidy(() => {
      expectClose(torch.tensor([1000, 1000], { dtype: 'float32' }).logsumexp(0), [1000 + Math.LN2], 1e-6);
      expectClose(torch.tensor([-1000, -1000], { dtype: 'float64' }).logsumexp(0), [-1000 + Math.LN2], 1e-12);
      expectClose(
        torch
          .tensor(
            [
              [1000, 1000],
              [0, -1000],
            ],
            { dtype: 'float64' },
          )
          .logsumexp(1),
        [1000 + Math.LN2, 0],
        1e-12,
      );
      const [x, xv] = randomTensor([3, 4], 23, -3, 3);
      expectClose(
        torch.logsumexp(x, 1),
        rows(xv, 4).map((r) => Math.log(r.reduce((a, b) => a + Math.exp(b), 0))),
      );
      expect(x.logsumexp([0, 1], true).shape).toEqual([1, 1]);
      expectClose(x.logsumexp([0, 1]), [Math.log(xv.reduce((a, b) => a + Math.exp(b), 0))]);
    });
  });

  it('softmax rows sum to 1 and match exp / sum; logSoftmax matches its log', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([4, 5], 24, -5, 5);
      const s = x.softmax(-1);
      expectClose(s.sum(-1), [1, 1, 1, 1], 1e-6);
      expectClose(s, rows(xv, 5).flatMap(softmaxJs));
      expectClose(
        x.logSoftmax(1),
        rows(xv, 5).flatMap((r) => softmaxJs(r).map(Math.log)),
      );
      expectClose(torch.softmax(x, 0).sum(0), [1, 1, 1, 1, 1], 1e-6);
      expectClose(F.softmax(torch.tensor([1000, 1001], { dtype: 'float32' }), 0), softmaxJs([0, 1]));
      expectClose(F.logSoftmax(torch.tensor([1000, 0], { dtype: 'float32' }), 0), [0, -1000]);
      const h = x.softmax(0, { dtype: 'float64' });
      expect(h.dtype).toBe('float64');
    });
  });

  it('cumsum / cumprod', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([3, 4], 25);
      const scan = (r: number[], op: (a: number, b: number) => number): number[] =>
        r.map((_, k) => r.slice(0, k + 1).reduce(op));
      expectClose(
        x.cumsum(1),
        rows(xv, 4).flatMap((r) => scan(r, (a, b) => a + b)),
      );
      expectClose(
        x.cumprod(1),
        rows(xv, 4).flatMap((r) => scan(r, (a, b) => a * b)),
      );
      expectClose(torch.cumsum(x, 0), [
        ...xv.slice(0, 4),
        ...xv.slice(4, 8).map((v, k) => v + xv[k]!),
        ...xv.slice(8).map((v, k) => v + xv[k]! + xv[4 + k]!),
      ]);
      const ci = torch.tensor([1, 2, 3], { dtype: 'int32' }).cumsum(0);
      expect(ci.dtype).toBe('int64');
      expect(ci.toArray()).toEqual([1, 3, 6]);
      expect(torch.tensor([1, 2, 3]).cumsum(0, { dtype: 'float64' }).dtype).toBe('float64');
    });
  });

  it('all / any', () => {
    torch.tidy(() => {
      const b = torch.tensor([
        [true, false],
        [true, true],
      ]);
      expect(b.all().item()).toBe(false);
      expect(b.any().item()).toBe(true);
      expect(b.all(0).toArray()).toEqual([true, false]);
      expect(b.all(1, true).toArray()).toEqual([[false], [true]]);
      expect(b.any(1).toArray()).toEqual([true, true]);
    });
  });

  it('sort / argsort / topk: values and indices', () => {
    torch.tidy(() => {
      const v = [3, -1, 4, 1, -5, 9, 2, 6];
      const x = torch.tensor(v, { dtype: 'float32' });
      const order = v.map((_, k) => k).sort((a, b) => v[a]! - v[b]!);
      const [sv, si] = x.sort();
      expect(sv.toArray()).toEqual(order.map((k) => v[k]));
      expect(si.toArray()).toEqual(order);
      const [dv, di] = torch.sort(x, 0, true);
      expect(dv.toArray()).toEqual([...order].reverse().map((k) => v[k]));
      expect(di.toArray()).toEqual([...order].reverse());
      expect(x.argsort().toArray()).toEqual(order);
      expect(x.argsort(0, true).toArray()).toEqual([...order].reverse());
      // stable sort keeps ties in input order
      const [, ti] = torch.tensor([2, 1, 2, 1, 0]).sort(0, false, true);
      expect(ti.toArray()).toEqual([4, 1, 3, 0, 2]);
      const [tv, tk] = x.topk(3);
      expect(tv.toArray()).toEqual([9, 6, 4]);
      expect(tk.toArray()).toEqual([5, 7, 2]);
      const [lv, lk] = torch.topk(x, 2, 0, false);
      expect(lv.toArray()).toEqual([-5, -1]);
      expect(lk.toArray()).toEqual([4, 1]);
      // along a dim of a matrix
      const m = torch.tensor([
        [1, 9, 5],
        [7, 3, 8],
      ]);
      const [mv, mk] = m.topk(2, 1);
      expect(mv.toArray()).toEqual([
        [9, 5],
        [8, 7],
      ]);
      expect(mk.toArray()).toEqual([
        [1, 2],
        [2, 0],
      ]);
      const [cv, ck] = m.sort(0, true);
      expect(cv.toArray()).toEqual([
        [7, 9, 8],
        [1, 3, 5],
      ]);
      expect(ck.toArray()).toEqual([
        [1, 0, 1],
        [0, 1, 0],
      ]);
    });
  });

  it('multinomial draws match the probabilities and are reproducible', () => {
    torch.tidy(() => {
      const probs = torch.tensor([0.1, 0.2, 0.7]);
      torch.manualSeed(1234);
      const draws = probs.multinomial(20000, true);
      expect(draws.dtype).toBe('int64');
      expect(draws.shape).toEqual([20000]);
      const counts = [0, 0, 0];
      for (const d of flat(draws)) counts[d]!++;
      expect(counts[0]! / 20000).toBeCloseTo(0.1, 1);
      expect(Math.abs(counts[0]! / 20000 - 0.1)).toBeLessThan(0.015);
      expect(Math.abs(counts[1]! / 20000 - 0.2)).toBeLessThan(0.015);
      expect(Math.abs(counts[2]! / 20000 - 0.7)).toBeLessThan(0.015);
      // unnormalised weights work too; a zero-weight category is never drawn
      torch.manualSeed(1);
      expect(flat(torch.multinomial(torch.tensor([0, 3, 1], { dtype: 'float32' }), 500, true)).includes(0)).toBe(false);
      // without replacement: distinct categories
      const distinct = flat(torch.tensor([1, 1, 1, 1, 1]).float().multinomial(5));
      expect([...distinct].sort()).toEqual([0, 1, 2, 3, 4]);
      // rows of a matrix sample independently
      expect(
        torch
          .tensor([
            [0, 1],
            [1, 0],
          ])
          .float()
          .multinomial(3, true)
          .toArray(),
      ).toEqual([
        [1, 1, 1],
        [0, 0, 0],
      ]);
      // same seed, same draws; another seed, other draws
      torch.manualSeed(42);
      const a = flat(probs.multinomial(64, true));
      torch.manualSeed(42);
      const b = flat(probs.multinomial(64, true));
      torch.manualSeed(43);
      const c = flat(probs.multinomial(64, true));
      expect(a).toEqual(b);
      expect(a).not.toEqual(c);
    });
  });
});

describe('indexing', () => {
  it('gather, scatter, scatterAdd against JS loops', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([3, 4], 30);
      const idx = [
        [0, 3, 3],
        [1, 1, 0],
        [2, 0, 1],
      ];
      const g = x.gather(1, torch.tensor(idx));
      expect(g.shape).toEqual([3, 3]);
      expectClose(
        g,
        idx.flatMap((r, i) => r.map((j) => xv[i * 4 + j]!)),
      );
      const idx0 = [
        [2, 0, 1, 2],
        [0, 2, 2, 1],
      ];
      expectClose(
        torch.gather(x, 0, torch.tensor(idx0)),
        idx0.flatMap((r) => r.map((i, j) => xv[i * 4 + j]!)),
      );

      // scatter(dim 0): out[index[i][j]][j] = src[i][j]
      const self = torch.zeros(3, 4);
      const src = torch.arange(1, 9).float().reshape(2, 4);
      const sidx = [
        [0, 1, 2, 0],
        [2, 0, 1, 1],
      ];
      const expected = new Array<number>(12).fill(0);
      sidx.forEach((r, i) => r.forEach((t, j) => (expected[t * 4 + j] = i * 4 + j + 1)));
      expectClose(self.scatter(0, torch.tensor(sidx), src), expected);
      expect(self.toArray()).toEqual([
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
      ]); // out of place
      const valued = new Array<number>(12).fill(0);
      sidx.forEach((r) => r.forEach((t, j) => (valued[t * 4 + j] = -1)));
      expectClose(self.scatter(0, torch.tensor(sidx), -1), valued);

      // scatterAdd(dim 1) with duplicates: out[i][index[i][j]] += src[i][j]
      const aidx = [
        [0, 0, 3],
        [1, 2, 1],
      ];
      const base = torch.ones(2, 4);
      const add = torch.tensor(
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        { dtype: 'float32' },
      );
      const acc = new Array<number>(8).fill(1);
      aidx.forEach((r, i) =>
        r.forEach(
          (t, j) =>
            (acc[i * 4 + t]! += [
              [1, 2, 3],
              [4, 5, 6],
            ][i]![j]!),
        ),
      );
      expectClose(base.scatterAdd(1, torch.tensor(aidx), add), acc);
    });
  });

  it('indexSelect, indexAdd, advanced index, indexPut_', () => {
    torch.tidy(() => {
      const v = Array.from({ length: 12 }, (_, k) => k * 1.5);
      const x = torch.tensor(v, { dtype: 'float32' }).reshape(4, 3);
      const row = (i: number): number[] => v.slice(i * 3, i * 3 + 3);
      expect(x.indexSelect(0, torch.tensor([2, 0, 2])).toArray()).toEqual([row(2), row(0), row(2)]);
      expect(torch.indexSelect(x, 1, torch.tensor([2, 2])).toArray()).toEqual(
        [0, 1, 2, 3].map((i) => [v[i * 3 + 2], v[i * 3 + 2]]),
      );
      const added = x.indexAdd(0, torch.tensor([0, 3, 0]), torch.ones(3, 3));
      expect(added.toArray()).toEqual([row(0).map((a) => a + 2), row(1), row(2), row(3).map((a) => a + 1)]);
      // x[[3, 0]] and x[:, [1]] and x[[0, 3], [2, 1]]
      expect(x.index([torch.tensor([3, 0])]).toArray()).toEqual([row(3), row(0)]);
      expect(x.index([null, torch.tensor([1])]).toArray()).toEqual([0, 1, 2, 3].map((i) => [v[i * 3 + 1]]));
      expect(x.index([torch.tensor([0, 3]), torch.tensor([2, 1])]).toArray()).toEqual([v[2], v[10]]);
      // a 2-d index tensor gives a 2-d leading shape
      expect(
        x.index([
          torch.tensor([
            [0, 1],
            [1, 0],
          ]),
        ]).shape,
      ).toEqual([2, 2, 3]);
      // a boolean mask selects rows
      expect(x.index([torch.tensor([true, false, false, true])]).toArray()).toEqual([row(0), row(3)]);
      // indexPut_: assign, then accumulate with duplicates
      const y = torch.zeros(3, 2);
      expect(
        y.indexPut_([torch.tensor([0, 2]), torch.tensor([1, 0])], torch.tensor([5, 7], { dtype: 'float32' })),
      ).toBe(y);
      expect(y.toArray()).toEqual([
        [0, 5],
        [0, 0],
        [7, 0],
      ]);
      y.indexPut_([torch.tensor([1, 1, 1])], torch.ones(3, 2), true);
      expect(y.toArray()).toEqual([
        [0, 5],
        [3, 3],
        [7, 0],
      ]);
      y.indexPut_([null, torch.tensor([1])], torch.tensor([-1], { dtype: 'float32' }));
      expect(y.toArray()).toEqual([
        [0, -1],
        [3, -1],
        [7, -1],
      ]);
    });
  });

  it('maskedSelect and nonzero', () => {
    torch.tidy(() => {
      const x = torch.tensor([
        [1, -2, 3],
        [-4, 5, -6],
      ]);
      expect(x.maskedSelect(x.gt(0)).toArray()).toEqual([1, 3, 5]);
      expect(x.maskedSelect(torch.tensor([true, false, true])).toArray()).toEqual([1, 3, -4, -6]); // broadcast mask
      const nz = x.gt(0).nonzero();
      expect(nz.dtype).toBe('int64');
      expect(nz.toArray()).toEqual([
        [0, 0],
        [0, 2],
        [1, 1],
      ]);
      expect(torch.tensor([0, 3, 0, 1]).nonzero().toArray()).toEqual([[1], [3]]);
      expect(torch.zeros(2, 2).nonzero().shape).toEqual([0, 2]);
    });
  });
});

describe('shapes and layout', () => {
  it('cat / stack / split / chunk / unbind', () => {
    torch.tidy(() => {
      const a = torch.tensor([
        [1, 2],
        [3, 4],
      ]);
      const b = torch.tensor([[5, 6]]);
      const c0 = torch.cat([a, b]);
      expect(c0.shape).toEqual([3, 2]);
      expect(c0.toArray()).toEqual([
        [1, 2],
        [3, 4],
        [5, 6],
      ]);
      const c1 = torch.cat([a, torch.tensor([[7], [8]])], 1);
      expect(c1.toArray()).toEqual([
        [1, 2, 7],
        [3, 4, 8],
      ]);
      expect(torch.cat([a, a], -1).shape).toEqual([2, 4]);
      const s0 = torch.stack([a, a.mul(10)]);
      expect(s0.shape).toEqual([2, 2, 2]);
      expect(s0.toArray()).toEqual([
        [
          [1, 2],
          [3, 4],
        ],
        [
          [10, 20],
          [30, 40],
        ],
      ]);
      const s2 = torch.stack([a, a.mul(10)], 2);
      expect(s2.shape).toEqual([2, 2, 2]);
      expect(s2.toArray()).toEqual([
        [
          [1, 10],
          [2, 20],
        ],
        [
          [3, 30],
          [4, 40],
        ],
      ]);
      expect(torch.stack([torch.tensor([1, 2]), torch.tensor([3, 4])], -1).toArray()).toEqual([
        [1, 3],
        [2, 4],
      ]);

      const x = torch.arange(10).reshape(5, 2);
      const parts = x.split(2);
      expect(parts.map((p) => p.shape)).toEqual([
        [2, 2],
        [2, 2],
        [1, 2],
      ]);
      expect(parts[2]!.toArray()).toEqual([[8, 9]]);
      const sized = torch.split(x, [1, 4]);
      expect(sized.map((p) => p.shape)).toEqual([
        [1, 2],
        [4, 2],
      ]);
      expect(sized[1]!.toArray()).toEqual([
        [2, 3],
        [4, 5],
        [6, 7],
        [8, 9],
      ]);
      const cols = x.split(1, 1);
      expect(cols.map((p) => p.toArray())).toEqual([
        [[0], [2], [4], [6], [8]],
        [[1], [3], [5], [7], [9]],
      ]);
      const chunks = x.chunk(2);
      expect(chunks.map((p) => p.shape)).toEqual([
        [3, 2],
        [2, 2],
      ]);
      expect(torch.chunk(torch.arange(6), 3).map((p) => p.toArray())).toEqual([
        [0, 1],
        [2, 3],
        [4, 5],
      ]);
      expect(
        torch
          .arange(6)
          .reshape(2, 3)
          .unbind(1)
          .map((p) => p.toArray()),
      ).toEqual([
        [0, 3],
        [1, 4],
        [2, 5],
      ]);
      expect(torch.unbind(a).map((p) => p.toArray())).toEqual([
        [1, 2],
        [3, 4],
      ]);
    });
  });

  it('view / reshape / permute / transpose / contiguous', () => {
    torch.tidy(() => {
      const v = Array.from({ length: 24 }, (_, k) => k);
      const x = torch.arange(24).reshape(2, 3, 4);
      expect(x.shape).toEqual([2, 3, 4]);
      expect(x.stride()).toEqual([12, 4, 1]);
      expect(x.size()).toEqual([2, 3, 4]);
      expect(x.size(-1)).toBe(4);
      expect(x.view(6, 4).shape).toEqual([6, 4]);
      expect(x.view([-1]).toArray()).toEqual(v);
      expect(x.view(4, -1).shape).toEqual([4, 6]);
      expect(x.reshape([3, 8]).shape).toEqual([3, 8]);
      const p = x.permute(2, 0, 1);
      expect(p.shape).toEqual([4, 2, 3]);
      // p[k][i][j] = x[i][j][k]
      const expected: number[] = [];
      for (let k = 0; k < 4; k++)
        for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expected.push(v[i * 12 + j * 4 + k]!);
      expect(flat(p)).toEqual(expected);
      expect(p.isContiguous()).toBe(false);
      expect(() => p.view(-1)).toThrow(/view/);
      const pc = p.contiguous();
      expect(pc.isContiguous()).toBe(true);
      expect(flat(pc.view(-1))).toEqual(expected);
      expect(flat(p.reshape(-1))).toEqual(expected);
      const t = x.transpose(0, 2);
      expect(t.shape).toEqual([4, 3, 2]);
      const te: number[] = [];
      for (let k = 0; k < 4; k++)
        for (let j = 0; j < 3; j++) for (let i = 0; i < 2; i++) te.push(v[i * 12 + j * 4 + k]!);
      expect(flat(t)).toEqual(te);
      expect(
        torch
          .tensor([
            [1, 2, 3],
            [4, 5, 6],
          ])
          .t()
          .toArray(),
      ).toEqual([
        [1, 4],
        [2, 5],
        [3, 6],
      ]);
      expect(x.movedim(0, -1).shape).toEqual([3, 4, 2]);
    });
  });

  it('expand / repeat / repeatInterleave / flatten / squeeze / unsqueeze / unflatten', () => {
    torch.tidy(() => {
      const c = torch.tensor([[1], [2], [3]]);
      const e = c.expand(2, 3, 4);
      expect(e.shape).toEqual([2, 3, 4]);
      expect(flat(e)).toEqual([1, 2].flatMap(() => [1, 2, 3].flatMap((r) => [r, r, r, r])));
      expect(e.stride()[0]).toBe(0); // a view, no copy
      expect(c.expand([-1, 2]).toArray()).toEqual([
        [1, 1],
        [2, 2],
        [3, 3],
      ]);
      expect(c.expandAs(torch.zeros(3, 2)).toArray()).toEqual([
        [1, 1],
        [2, 2],
        [3, 3],
      ]);
      const r = torch
        .tensor([
          [1, 2],
          [3, 4],
        ])
        .repeat(2, 3);
      expect(r.shape).toEqual([4, 6]);
      expect(r.toArray()).toEqual([
        [1, 2, 1, 2, 1, 2],
        [3, 4, 3, 4, 3, 4],
        [1, 2, 1, 2, 1, 2],
        [3, 4, 3, 4, 3, 4],
      ]);
      expect(torch.tensor([1, 2]).repeat(2, 2).toArray()).toEqual([
        [1, 2, 1, 2],
        [1, 2, 1, 2],
      ]);
      expect(torch.tensor([1, 2]).repeatInterleave(3).toArray()).toEqual([1, 1, 1, 2, 2, 2]);
      expect(
        torch
          .tensor([
            [1, 2],
            [3, 4],
          ])
          .repeatInterleave(2, 0)
          .toArray(),
      ).toEqual([
        [1, 2],
        [1, 2],
        [3, 4],
        [3, 4],
      ]);
      const x = torch.arange(24).reshape(2, 3, 4);
      expect(x.flatten().shape).toEqual([24]);
      expect(x.flatten(1).shape).toEqual([2, 12]);
      expect(x.flatten(0, 1).shape).toEqual([6, 4]);
      expect(flat(x.flatten(1))).toEqual(flat(x));
      expect(x.unflatten(2, [2, 2]).shape).toEqual([2, 3, 2, 2]);
      expect(x.flatten(1).unflatten(1, [3, -1]).shape).toEqual([2, 3, 4]);
      const s = torch.zeros(2, 1, 3, 1);
      expect(s.squeeze().shape).toEqual([2, 3]);
      expect(s.squeeze(1).shape).toEqual([2, 3, 1]);
      expect(s.squeeze(-1).shape).toEqual([2, 1, 3]);
      expect(s.squeeze(0).shape).toEqual([2, 1, 3, 1]); // size 2: unchanged
      expect(torch.tensor([1, 2]).unsqueeze(0).toArray()).toEqual([[1, 2]]);
      expect(torch.tensor([1, 2]).unsqueeze(-1).toArray()).toEqual([[1], [2]]);
      expect(torch.zeros(2, 3).unsqueeze(1).shape).toEqual([2, 1, 3]);
    });
  });

  it('narrow / slice / select / flip / roll', () => {
    torch.tidy(() => {
      const x = torch.arange(20).reshape(4, 5);
      const at = (i: number, j: number): number => i * 5 + j;
      expect(x.narrow(1, 1, 2).toArray()).toEqual([0, 1, 2, 3].map((i) => [at(i, 1), at(i, 2)]));
      expect(x.slice(1, 0, null, 2).toArray()).toEqual([0, 1, 2, 3].map((i) => [at(i, 0), at(i, 2), at(i, 4)]));
      expect(x.slice(0, 1, 3).toArray()).toEqual([1, 2].map((i) => [0, 1, 2, 3, 4].map((j) => at(i, j))));
      expect(x.slice(0, -1).toArray()).toEqual([[15, 16, 17, 18, 19]]);
      expect(x.slice(1, null, -2).shape).toEqual([4, 3]); // end -2 (Python's a[:, :-2])
      expect(x.select(0, -1).toArray()).toEqual([15, 16, 17, 18, 19]);
      expect(x.select(1, 2).toArray()).toEqual([2, 7, 12, 17]);
      expect(x.flip(1).select(0, 0).toArray()).toEqual([4, 3, 2, 1, 0]);
      expect(x.flip([0, 1]).select(0, 0).toArray()).toEqual([19, 18, 17, 16, 15]);
      expect(torch.tensor([1, 2, 3, 4]).roll(1, 0).toArray()).toEqual([4, 1, 2, 3]);
      expect(
        torch
          .tensor([
            [1, 2],
            [3, 4],
          ])
          .roll([1, 1], [0, 1])
          .toArray(),
      ).toEqual([
        [4, 3],
        [2, 1],
      ]);
      // slices are views: writing through one changes the base
      const base = torch.zeros(2, 3);
      base.select(1, 1).fill_(5);
      expect(base.toArray()).toEqual([
        [0, 5, 0],
        [0, 5, 0],
      ]);
    });
  });

  it('triu / tril', () => {
    torch.tidy(() => {
      const x = torch.arange(1, 13).reshape(3, 4);
      const v = flat(x);
      const mask = (keep: (i: number, j: number) => boolean): number[] =>
        v.map((a, k) => (keep(Math.floor(k / 4), k % 4) ? a : 0));
      expect(flat(x.triu())).toEqual(mask((i, j) => j >= i));
      expect(flat(x.triu(1))).toEqual(mask((i, j) => j - i >= 1));
      expect(flat(torch.triu(x, -1))).toEqual(mask((i, j) => j - i >= -1));
      expect(flat(x.tril())).toEqual(mask((i, j) => j <= i));
      expect(flat(torch.tril(x, -1))).toEqual(mask((i, j) => j - i <= -1));
      expect(flat(x.tril(2))).toEqual(mask((i, j) => j - i <= 2));
      // batched: per matrix
      const b = torch.ones(2, 2, 2).triu();
      expect(b.toArray()).toEqual([
        [
          [1, 1],
          [0, 1],
        ],
        [
          [1, 1],
          [0, 1],
        ],
      ]);
      // a causal mask the usual way
      expect(torch.ones([3, 3], { dtype: 'bool' }).tril().toArray()).toEqual([
        [true, false, false],
        [true, true, false],
        [true, true, true],
      ]);
    });
  });
});

describe('in-place ops return this and mutate', () => {
  it('arithmetic and unary in-place', () => {
    torch.tidy(() => {
      const x = torch.tensor([1, 2, 4], { dtype: 'float32' });
      const handle = x.handle;
      expect(x.add_(1)).toBe(x);
      expect(x.toArray()).toEqual([2, 3, 5]);
      expect(x.add_(torch.tensor([1, 1, 1], { dtype: 'float32' }), 2)).toBe(x);
      expect(x.toArray()).toEqual([4, 5, 7]);
      expect(x.sub_(1)).toBe(x);
      expect(x.sub_(torch.ones(3), 0.5).toArray()).toEqual([2.5, 3.5, 5.5]);
      expect(x.mul_(2)).toBe(x);
      expect(x.toArray()).toEqual([5, 7, 11]);
      expect(x.mul_(torch.tensor([2, 1, 0], { dtype: 'float32' })).toArray()).toEqual([10, 7, 0]);
      expect(x.div_(2)).toBe(x);
      expect(x.toArray()).toEqual([5, 3.5, 0]);
      expect(x.div_(torch.tensor([5, 7, 1], { dtype: 'float32' })).toArray()).toEqual([1, 0.5, 0]);
      expect(x.pow_(2).toArray()).toEqual([1, 0.25, 0]);
      expect(x.pow_(torch.tensor([3, 1, 1], { dtype: 'float32' })).toArray()).toEqual([1, 0.25, 0]);
      expect(x.neg_()).toBe(x);
      expect(x.toArray()).toEqual([-1, -0.25, -0]);
      expect(x.abs_().toArray()).toEqual([1, 0.25, 0]);
      expect(x.sqrt_().toArray()).toEqual([1, 0.5, 0]);
      expect(x.handle).toBe(handle); // same tensor throughout
      const y = torch.tensor([0, 1], { dtype: 'float64' });
      expectClose(y.clone().exp_(), [1, Math.E]);
      expectClose(y.clone().add_(1).log_(), [0, Math.log(2)]);
      expectClose(y.clone().sigmoid_(), [0.5, sigmoidJs(1)]);
      expectClose(y.clone().tanh_(), [0, Math.tanh(1)]);
      expectClose(y.clone().sub_(0.5).relu_(), [0, 0.5]);
      expectClose(y.clone().silu_(), [0, sigmoidJs(1)]);
      const z = torch.tensor([-3, 0.5, 3]);
      expect(z.clamp_(-1, 1)).toBe(z);
      expect(z.toArray()).toEqual([-1, 0.5, 1]);
      expect(z.clamp_(0).toArray()).toEqual([0, 0.5, 1]);
    });
  });

  it('fill_, zero_, maskedFill_, copy_, scatter_, uniform_, normal_', () => {
    torch.tidy(() => {
      const x = torch.zeros(2, 3);
      expect(x.fill_(2.5)).toBe(x);
      expect(x.toArray()).toEqual([
        [2.5, 2.5, 2.5],
        [2.5, 2.5, 2.5],
      ]);
      expect(x.maskedFill_(torch.tensor([true, false, true]), -1)).toBe(x);
      expect(x.toArray()).toEqual([
        [-1, 2.5, -1],
        [-1, 2.5, -1],
      ]);
      expect(x.zero_()).toBe(x);
      expect(x.toArray()).toEqual([
        [0, 0, 0],
        [0, 0, 0],
      ]);
      expect(x.copy_(torch.tensor([1, 2, 3]))).toBe(x); // broadcasts and casts
      expect(x.toArray()).toEqual([
        [1, 2, 3],
        [1, 2, 3],
      ]);
      expect(x.dtype).toBe('float32');
      expect(x.scatter_(1, torch.tensor([[2], [0]]), torch.tensor([[9], [8]], { dtype: 'float32' }))).toBe(x);
      expect(x.toArray()).toEqual([
        [1, 2, 9],
        [8, 2, 3],
      ]);
      torch.manualSeed(5);
      const u = torch.empty(1000);
      expect(u.uniform_(2, 3)).toBe(u);
      const uv = flat(u);
      expect(Math.min(...uv)).toBeGreaterThanOrEqual(2);
      expect(Math.max(...uv)).toBeLessThan(3);
      const n = torch.empty(4000, { dtype: 'float64' });
      expect(n.normal_(5, 2)).toBe(n);
      const nv = flat(n);
      const mean = nv.reduce((a, b) => a + b, 0) / nv.length;
      const sd = Math.sqrt(nv.reduce((a, b) => a + (b - mean) ** 2, 0) / (nv.length - 1));
      expect(Math.abs(mean - 5)).toBeLessThan(0.15);
      expect(Math.abs(sd - 2)).toBeLessThan(0.15);
    });
  });

  it('in-place through a view mutates the base; in-place on an int tensor rejects a float result', () => {
    torch.tidy(() => {
      const x = torch.zeros(2, 2);
      x.view(-1).add_(torch.tensor([1, 2, 3, 4], { dtype: 'float32' }));
      expect(x.toArray()).toEqual([
        [1, 2],
        [3, 4],
      ]);
      x.t().mul_(torch.tensor([1, 10], { dtype: 'float32' })); // x^T[:, j] *= [1, 10][j] -> rows of x scaled
      expect(x.toArray()).toEqual([
        [1, 2],
        [30, 40],
      ]);
      expect(() => torch.tensor([1, 2]).add_(1.5)).toThrow(Error);
      const i = torch.tensor([1, 2]);
      expect(i.add_(3).toArray()).toEqual([4, 5]);
      expect(i.dtype).toBe('int64');
    });
  });
});

describe('nn.functional against hand computations', () => {
  it('dropout: training zeroes ~p and scales survivors by 1/(1-p); eval is the identity', () => {
    torch.tidy(() => {
      torch.manualSeed(7);
      const p = 0.3;
      const x = torch.ones(20000);
      const y = F.dropout(x, p);
      const yv = flat(y);
      const zeros = yv.filter((v) => v === 0).length / yv.length;
      expect(Math.abs(zeros - p)).toBeLessThan(0.02);
      const survivors = yv.filter((v) => v !== 0);
      for (const s of new Set(survivors)) expect(s).toBeCloseTo(1 / (1 - p), 6);
      expect(x.toArray()).toEqual(flat(torch.ones(20000))); // input untouched
      const [r, rv] = randomTensor([3, 4], 40);
      expect(flat(F.dropout(r, 0.5, false))).toEqual(rv);
      expect(flat(F.dropout(r, 0))).toEqual(rv);
      expect(flat(F.dropout(r, 1)).every((v) => v === 0)).toBe(true);
      expect(() => F.dropout(r, 1.5)).toThrow(RangeError);
      expect(() => F.dropout(r, -0.1)).toThrow(RangeError);
      // the same seed drops the same elements
      torch.manualSeed(3);
      const a = flat(F.dropout(torch.ones(64), 0.5));
      torch.manualSeed(3);
      expect(flat(F.dropout(torch.ones(64), 0.5))).toEqual(a);
    });
  });

  // Hand-written cross entropy: mean over non-ignored rows of
  // -(1 - eps) log p[target] - eps / C * sum_c log p[c] (optionally class-weighted).
  function crossEntropyJs(
    logits: number[][],
    target: number[],
    o: { ignoreIndex?: number; labelSmoothing?: number; weight?: number[]; reduction?: string } = {},
  ): number[] {
    const eps = o.labelSmoothing ?? 0;
    const C = logits[0]!.length;
    const w = o.weight ?? new Array<number>(C).fill(1);
    const per: number[] = [];
    let denominator = 0;
    logits.forEach((row, i) => {
      const t = target[i]!;
      if (t === (o.ignoreIndex ?? -100)) {
        per.push(0);
        return;
      }
      const logp = softmaxJs(row).map(Math.log);
      const nll = -w[t]! * logp[t]!;
      const smooth = -logp.reduce((a, b, c) => a + w[c]! * b, 0) / C;
      per.push((1 - eps) * nll + eps * smooth);
      denominator += w[t]!;
    });
    if (o.reduction === 'none') return per;
    const total = per.reduce((a, b) => a + b, 0);
    return [o.reduction === 'sum' ? total : total / denominator];
  }

  it('crossEntropy matches a hand computation', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([4, 5], 41, -3, 3);
      const logits = rows(xv, 5);
      const target = [1, 0, 4, 2];
      const t = torch.tensor(target);
      expectClose(F.crossEntropy(x, t), crossEntropyJs(logits, target));
      expectClose(F.crossEntropy(x, t, { reduction: 'sum' }), crossEntropyJs(logits, target, { reduction: 'sum' }));
      expectClose(F.crossEntropy(x, t, { reduction: 'none' }), crossEntropyJs(logits, target, { reduction: 'none' }));
      expect(F.crossEntropy(x, t, { reduction: 'none' }).shape).toEqual([4]);
      const ignored = [1, -100, 4, 2];
      expectClose(F.crossEntropy(x, torch.tensor(ignored)), crossEntropyJs(logits, ignored));
      const custom = [1, 3, 3, 2];
      expectClose(
        F.crossEntropy(x, torch.tensor(custom), { ignoreIndex: 3 }),
        crossEntropyJs(logits, custom, { ignoreIndex: 3 }),
      );
      expectClose(
        F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
        crossEntropyJs(logits, target, { labelSmoothing: 0.1 }),
      );
      expectClose(
        F.crossEntropy(x, torch.tensor(custom), { ignoreIndex: 3, labelSmoothing: 0.2 }),
        crossEntropyJs(logits, custom, { ignoreIndex: 3, labelSmoothing: 0.2 }),
      );
      const weight = [0.5, 1, 2, 1, 3];
      expectClose(
        F.crossEntropy(x, t, { weight: torch.tensor(weight, { dtype: 'float32' }) }),
        crossEntropyJs(logits, target, { weight }),
      );
      // nllLoss on log-probabilities is the same loss without smoothing
      expectClose(F.nllLoss(x.logSoftmax(1), t), crossEntropyJs(logits, target));
      expectClose(
        F.nllLoss(x.logSoftmax(1), torch.tensor(ignored), { reduction: 'sum' }),
        crossEntropyJs(logits, ignored, { reduction: 'sum' }),
      );
      // uniform logits: log C
      expectClose(F.crossEntropy(torch.zeros(3, 4), torch.tensor([0, 1, 3])), [Math.log(4)]);
    });
  });

  it('crossEntropy over [N, C, d] treats dim 1 as classes', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([2, 3, 2], 42);
      const target = [
        [0, 2],
        [1, 1],
      ];
      // row (n, d) has logits x[n, :, d]
      const logits: number[][] = [];
      const flatTarget: number[] = [];
      for (let n = 0; n < 2; n++)
        for (let d = 0; d < 2; d++) {
          logits.push([0, 1, 2].map((c) => xv[n * 6 + c * 2 + d]!));
          flatTarget.push(target[n]![d]!);
        }
      expectClose(F.crossEntropy(x, torch.tensor(target)), crossEntropyJs(logits, flatTarget));
      expect(F.crossEntropy(x, torch.tensor(target), { reduction: 'none' }).shape).toEqual([2, 2]);
    });
  });

  it('mseLoss', () => {
    torch.tidy(() => {
      const [a, av] = randomTensor([2, 3], 43);
      const [b, bv] = randomTensor([2, 3], 44);
      const sq = av.map((v, k) => (v - bv[k]!) ** 2);
      expectClose(F.mseLoss(a, b), [sq.reduce((x, y) => x + y, 0) / 6]);
      expectClose(F.mseLoss(a, b, { reduction: 'sum' }), [sq.reduce((x, y) => x + y, 0)]);
      expectClose(F.mseLoss(a, b, { reduction: 'none' }), sq);
    });
  });

  it('layerNorm matches (x - mean) / sqrt(var + eps) * w + b', () => {
    torch.tidy(() => {
      const [x, xv] = randomTensor([2, 3, 4], 45, -2, 2);
      const [w, wv] = randomTensor([4], 46);
      const [b, bv] = randomTensor([4], 47);
      const norm = (r: number[], eps: number): number[] => {
        const m = r.reduce((a, c) => a + c, 0) / r.length;
        const v = r.reduce((a, c) => a + (c - m) ** 2, 0) / r.length; // biased
        return r.map((c) => (c - m) / Math.sqrt(v + eps));
      };
      expectClose(
        F.layerNorm(x, [4], w, b),
        rows(xv, 4).flatMap((r) => norm(r, 1e-5).map((c, k) => c * wv[k]! + bv[k]!)),
        1e-4,
      );
      expectClose(
        F.layerNorm(x, [4]),
        rows(xv, 4).flatMap((r) => norm(r, 1e-5)),
        1e-4,
      );
      expectClose(
        F.layerNorm(x, [3, 4], null, null, 0.1),
        rows(xv, 12).flatMap((r) => norm(r, 0.1)),
        1e-4,
      );
      const y = F.layerNorm(x, [4]);
      expectClose(y.mean(-1), new Array(6).fill(0), 1e-5);
    });
  });

  it('scaledDotProductAttention matches softmax(q k^T / sqrt(d)) v', () => {
    torch.tidy(() => {
      const [B, L, S, E, Ev] = [2, 3, 4, 5, 2];
      const [q, qv] = randomTensor([B, L, E], 48);
      const [k, kv] = randomTensor([B, S, E], 49);
      const [v, vv] = randomTensor([B, S, Ev], 50);
      const attention = (
        keep: (l: number, s: number) => boolean,
        additive: (l: number, s: number) => number,
        scale = 1 / Math.sqrt(E),
      ): number[] => {
        const out: number[] = [];
        for (let bi = 0; bi < B; bi++) {
          for (let l = 0; l < L; l++) {
            const scores: number[] = [];
            for (let s = 0; s < S; s++) {
              let dot = 0;
              for (let e = 0; e < E; e++) dot += qv[(bi * L + l) * E + e]! * kv[(bi * S + s) * E + e]!;
              scores.push(keep(l, s) ? dot * scale + additive(l, s) : Number.NEGATIVE_INFINITY);
            }
            const p = softmaxJs(scores);
            for (let c = 0; c < Ev; c++) out.push(p.reduce((acc, ps, s) => acc + ps * vv[(bi * S + s) * Ev + c]!, 0));
          }
        }
        return out;
      };
      const none = (): number => 0;
      const all = (): boolean => true;
      const plain = F.scaledDotProductAttention(q, k, v);
      expect(plain.shape).toEqual([B, L, Ev]);
      expectClose(plain, attention(all, none));
      expectClose(F.scaledDotProductAttention(q, k, v, { scale: 0.7 }), attention(all, none, 0.7));
      // causal, top-left aligned as PyTorch: query l sees keys s <= l
      expectClose(
        F.scaledDotProductAttention(q, k, v, { isCausal: true }),
        attention((l, s) => s <= l, none),
      );
      const keepMask = [
        [true, false, true, true],
        [false, true, false, false],
        [true, true, true, true],
      ];
      expectClose(
        F.scaledDotProductAttention(q, k, v, { attnMask: torch.tensor(keepMask) }),
        attention((l, s) => keepMask[l]![s]!, none),
      );
      const bias = values(L * S, 51, -2, 0);
      expectClose(
        F.scaledDotProductAttention(q, k, v, { attnMask: torch.tensor(Float32Array.from(bias), { shape: [L, S] }) }),
        attention(all, (l, s) => bias[l * S + s]!),
      );
    });
  });

  // out[n][o][y][x] = b[o] + sum_{c in group, i, j} in[n][c][y*s - p + i*d][x*s - p + j*d] * w[o][c'][i][j]
  function conv2dJs(
    inp: number[],
    is: number[],
    w: number[],
    ws: number[],
    bias: number[] | null,
    o: { stride: [number, number]; padding: [number, number]; dilation: [number, number]; groups: number },
  ): { values: number[]; shape: number[] } {
    const [N, C, H, W] = is as [number, number, number, number];
    const [O, Cg, KH, KW] = ws as [number, number, number, number];
    const [sh, sw] = o.stride;
    const [ph, pw] = o.padding;
    const [dh, dw] = o.dilation;
    const OH = Math.floor((H + 2 * ph - dh * (KH - 1) - 1) / sh) + 1;
    const OW = Math.floor((W + 2 * pw - dw * (KW - 1) - 1) / sw) + 1;
    const perGroupOut = O / o.groups;
    const out: number[] = [];
    for (let n = 0; n < N; n++)
      for (let oc = 0; oc < O; oc++)
        for (let y = 0; y < OH; y++)
          for (let x = 0; x < OW; x++) {
            const g = Math.floor(oc / perGroupOut);
            let acc = bias ? bias[oc]! : 0;
            for (let cc = 0; cc < Cg; cc++)
              for (let i = 0; i < KH; i++)
                for (let j = 0; j < KW; j++) {
                  const yy = y * sh - ph + i * dh;
                  const xx = x * sw - pw + j * dw;
                  if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                  const c = g * Cg + cc;
                  acc += inp[((n * C + c) * H + yy) * W + xx]! * w[((oc * Cg + cc) * KH + i) * KW + j]!;
                }
            out.push(acc);
          }
    return { values: out, shape: [N, O, OH, OW] };
  }

  it('conv2d matches a naive loop (stride, padding, dilation, groups, bias)', () => {
    torch.tidy(() => {
      const cases: Array<{
        is: number[];
        ws: number[];
        bias: boolean;
        stride: [number, number];
        padding: [number, number];
        dilation: [number, number];
        groups: number;
      }> = [
        {
          is: [1, 1, 4, 4],
          ws: [1, 1, 3, 3],
          bias: false,
          stride: [1, 1],
          padding: [0, 0],
          dilation: [1, 1],
          groups: 1,
        },
        {
          is: [2, 3, 6, 5],
          ws: [4, 3, 3, 2],
          bias: true,
          stride: [2, 1],
          padding: [1, 0],
          dilation: [1, 1],
          groups: 1,
        },
        {
          is: [1, 4, 5, 5],
          ws: [6, 2, 3, 3],
          bias: true,
          stride: [1, 1],
          padding: [1, 1],
          dilation: [1, 1],
          groups: 2,
        },
        {
          is: [1, 2, 7, 7],
          ws: [2, 1, 3, 3],
          bias: false,
          stride: [2, 2],
          padding: [2, 1],
          dilation: [2, 1],
          groups: 2,
        },
      ];
      cases.forEach((c, n) => {
        const [x, xv] = randomTensor(c.is, 60 + n);
        const [w, wv] = randomTensor(c.ws, 70 + n);
        const [b, bv] = randomTensor([c.ws[0]!], 80 + n);
        const got = F.conv2d(x, w, c.bias ? b : null, {
          stride: c.stride,
          padding: c.padding,
          dilation: c.dilation,
          groups: c.groups,
        });
        const expected = conv2dJs(xv, c.is, wv, c.ws, c.bias ? bv : null, c);
        expect(got.shape).toEqual(expected.shape);
        expectClose(got, expected.values, 1e-5);
      });
      // scalar stride / padding spell both dims
      const [x, xv] = randomTensor([1, 1, 5, 5], 90);
      const [w, wv] = randomTensor([1, 1, 2, 2], 91);
      expectClose(
        F.conv2d(x, w, null, { stride: 2, padding: 1 }),
        conv2dJs(xv, [1, 1, 5, 5], wv, [1, 1, 2, 2], null, {
          stride: [2, 2],
          padding: [1, 1],
          dilation: [1, 1],
          groups: 1,
        }).values,
      );
    });
  });

  it('conv3d matches a naive loop', () => {
    torch.tidy(() => {
      const [N, C, D, H, W] = [1, 2, 3, 4, 4];
      const [O, K] = [2, 2];
      const [x, xv] = randomTensor([N, C, D, H, W], 92);
      const [w, wv] = randomTensor([O, C, K, K, K], 93);
      const [b, bv] = randomTensor([O], 94);
      const got = F.conv3d(x, w, b, { padding: [0, 1, 1], stride: [1, 2, 2] });
      const OD = D - K + 1;
      const OH = Math.floor((H + 2 - K) / 2) + 1;
      const OW = OH;
      expect(got.shape).toEqual([N, O, OD, OH, OW]);
      const out: number[] = [];
      for (let o = 0; o < O; o++)
        for (let z = 0; z < OD; z++)
          for (let y = 0; y < OH; y++)
            for (let xx = 0; xx < OW; xx++) {
              let acc = bv[o]!;
              for (let c = 0; c < C; c++)
                for (let i = 0; i < K; i++)
                  for (let j = 0; j < K; j++)
                    for (let l = 0; l < K; l++) {
                      const zi = z + i;
                      const yi = y * 2 - 1 + j;
                      const xi = xx * 2 - 1 + l;
                      if (yi < 0 || yi >= H || xi < 0 || xi >= W) continue;
                      acc += xv[((c * D + zi) * H + yi) * W + xi]! * wv[(((o * C + c) * K + i) * K + j) * K + l]!;
                    }
              out.push(acc);
            }
      expectClose(got, out, 1e-5);
    });
  });

  it('embedding picks rows', () => {
    torch.tidy(() => {
      const [w, wv] = randomTensor([5, 3], 95);
      const ids = [
        [0, 4, 4],
        [2, 1, 0],
      ];
      const e = F.embedding(torch.tensor(ids), w);
      expect(e.shape).toEqual([2, 3, 3]);
      expectClose(
        e,
        ids.flat().flatMap((i) => wv.slice(i * 3, i * 3 + 3)),
      );
      expect(() => F.embedding(torch.tensor([5]), w)).toThrow(Error);
    });
  });

  it('matmul / mm / bmm / linear / addmm / baddbmm against JS loops', () => {
    torch.tidy(() => {
      const [a, av] = randomTensor([3, 4], 100);
      const [b, bv] = randomTensor([4, 2], 101);
      expectClose(a.matmul(b), mmJs(av, bv, 3, 4, 2));
      expectClose(torch.mm(a, b), mmJs(av, bv, 3, 4, 2));
      // vector cases
      const [u, uv] = randomTensor([4], 102);
      expect(u.matmul(u).shape).toEqual([]);
      expectClose(u.matmul(u), [uv.reduce((s, x) => s + x * x, 0)]);
      expectClose(u.matmul(b), mmJs(uv, bv, 1, 4, 2));
      expectClose(a.matmul(u), mmJs(av, uv, 3, 4, 1));
      // batched with broadcasting: [2, 3, 4] @ [4, 2]
      const [c, cv] = randomTensor([2, 3, 4], 103);
      const batched = torch.matmul(c, b);
      expect(batched.shape).toEqual([2, 3, 2]);
      expectClose(batched, [...mmJs(cv.slice(0, 12), bv, 3, 4, 2), ...mmJs(cv.slice(12), bv, 3, 4, 2)]);
      const [d, dv] = randomTensor([2, 4, 2], 104);
      expectClose(c.bmm(d), [
        ...mmJs(cv.slice(0, 12), dv.slice(0, 8), 3, 4, 2),
        ...mmJs(cv.slice(12), dv.slice(8), 3, 4, 2),
      ]);
      expectClose(torch.bmm(c, d), flat(c.matmul(d)));
      // linear: x @ W^T + b
      const [w, wv] = randomTensor([5, 4], 105);
      const [bias, biasv] = randomTensor([5], 106);
      const wt = [0, 1, 2, 3].flatMap((i) => [0, 1, 2, 3, 4].map((o) => wv[o * 4 + i]!));
      expectClose(F.linear(a, w), mmJs(av, wt, 3, 4, 5));
      expectClose(
        F.linear(a, w, bias),
        mmJs(av, wt, 3, 4, 5).map((x, k) => x + biasv[k % 5]!),
      );
      expect(F.linear(c, w, bias).shape).toEqual([2, 3, 5]);
      // addmm: beta * input + alpha * (m1 @ m2)
      const [inp, inpv] = randomTensor([3, 2], 107);
      expectClose(
        F.addmm(inp, a, b, { beta: 0.5, alpha: 2 }),
        mmJs(av, bv, 3, 4, 2).map((x, k) => 0.5 * inpv[k]! + 2 * x),
      );
      expectClose(
        F.addmm(inp, a, b),
        mmJs(av, bv, 3, 4, 2).map((x, k) => inpv[k]! + x),
      );
      const [binp, binpv] = randomTensor([2, 3, 2], 108);
      const prods = [...mmJs(cv.slice(0, 12), dv.slice(0, 8), 3, 4, 2), ...mmJs(cv.slice(12), dv.slice(8), 3, 4, 2)];
      expectClose(
        F.baddbmm(binp, c, d, { beta: -1, alpha: 0.5 }),
        prods.map((x, k) => -binpv[k]! + 0.5 * x),
      );
      // integer matmul stays integer
      const im = torch
        .tensor([
          [1, 2],
          [3, 4],
        ])
        .matmul(torch.tensor([[5], [6]]));
      expect(im.dtype).toBe('int64');
      expect(im.toArray()).toEqual([[17], [39]]);
    });
  });
});

describe('errors', () => {
  const messageOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('expected a throw');
  };

  it('shape mismatches name both shapes', () => {
    torch.tidy(() => {
      const a = torch.ones(2, 3);
      const b = torch.ones(4);
      expect(() => a.add(b)).toThrow(Error);
      const add = messageOf(() => a.add(b));
      expect(add).toContain('[2, 3]');
      expect(add).toContain('[4]');
      expect(add).toMatch(/^add: /);
      const mul = messageOf(() => a.mul(b));
      expect(mul).toContain('[2, 3]');
      expect(mul).toContain('[4]');
      const mm = messageOf(() => a.matmul(torch.ones(4, 5)));
      expect(mm).toContain('[2, 3]');
      expect(mm).toContain('[4, 5]');
      const cat = messageOf(() => torch.cat([a, torch.ones(2, 4)]));
      expect(cat).toContain('[2, 3]');
      expect(cat).toContain('[2, 4]');
      expect(messageOf(() => torch.where(torch.tensor([true, false]), a, a))).toContain('[2, 3]');
      expect(messageOf(() => a.view(4, 2))).toContain('[2, 3]');
      expect(messageOf(() => F.linear(a, torch.ones(2, 4)))).toContain('[2, 4]');
      // no libtorch C++ backtrace in messages
      expect(add).not.toMatch(/Exception raised from|frame #/);
    });
  });

  it('wrong argument types are TypeErrors', () => {
    torch.tidy(() => {
      const x = torch.ones(2, 3);
      const bad = (v: unknown): never => v as never;
      expect(() => x.add(bad('x'))).toThrow(TypeError);
      expect(() => x.mul(bad({}))).toThrow(TypeError);
      expect(() => x.add(bad(null))).toThrow(TypeError);
      expect(() => torch.cat([x, bad(1)])).toThrow(TypeError);
      expect(() => torch.cat(bad(x))).toThrow(TypeError);
      expect(() => x.view(bad('a'))).toThrow(TypeError);
      expect(() => x.reshape(2.5, 2)).toThrow(TypeError);
      expect(() => x.sum(bad('x'))).toThrow(TypeError);
      expect(() => x.gather(0, bad([0]))).toThrow(TypeError);
      expect(() => torch.zeros(2.5)).toThrow(TypeError);
      expect(() => x.unsqueeze(0.5)).toThrow(TypeError);
      expect(() => x.transpose(bad('0'), 1)).toThrow(TypeError);
      expect(() => x.topk(1.5)).toThrow(TypeError);
      expect(() => x.requiresGrad_(bad(1))).toThrow(TypeError);
      expect(() => F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2), null, { stride: bad('a') })).toThrow(
        TypeError,
      );
      expect(() => F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2), null, { padding: [1, 2, 3] })).toThrow(
        TypeError,
      );
      expect(() => F.crossEntropy(x, torch.tensor([0, 1]), { reduction: bad('avg') })).toThrow(TypeError);
      expect(() => F.layerNorm(x, [3], null, null, bad('1e-5'))).toThrow(TypeError);
      expect(() => F.linear(x, bad('w'))).toThrow(TypeError);
      expect(() => torch.linspace(0, 1, 2.5)).toThrow(TypeError);
      expect(() => torch.manualSeed(bad('1'))).toThrow(TypeError);
      expect(() => x.size(bad('0'))).toThrow(TypeError);
    });
  });

  it('a disposed tensor throws an Error when used, not a crash', () => {
    torch.tidy(() => {
      const d = torch.ones(2);
      d.dispose();
      expect(d.isDisposed).toBe(true);
      expect(() => d.add(1)).toThrow(Error);
      expect(() => d.add(1)).toThrow(/disposed/);
      expect(() => d.toArray()).toThrow(/disposed/);
      expect(() => d.item()).toThrow(/disposed/);
      expect(() => d.dtype).toThrow(/disposed/);
      expect(() => d.numel()).toThrow(/disposed/);
      expect(() => d.data()).toThrow(/disposed/);
      expect(() => d.requiresGrad).toThrow(/disposed/);
      expect(() => d.sum().backward()).toThrow(/disposed/);
      const x = torch.ones(2);
      expect(() => x.add(d)).toThrow(/disposed/);
      expect(() => torch.cat([x, d])).toThrow(/disposed/);
      expect(() => torch.stack([d])).toThrow(/disposed/);
      expect(() => d.dispose()).not.toThrow(); // idempotent
      expect(d.toString()).toBe('tensor(<disposed>)');
      // the library keeps working afterwards
      expect(x.add(1).toArray()).toEqual([2, 2]);
    });
  });

  it('a disposed tensor passed where a tensor is optional throws instead of counting as absent', () => {
    torch.tidy(() => {
      const disposed = (t: Tensor): Tensor => {
        t.dispose();
        return t;
      };
      const outcome = (fn: () => unknown): string => {
        try {
          fn();
          return 'no error';
        } catch (error) {
          return /disposed/.test((error as Error).message) ? 'throws: disposed' : `throws: ${(error as Error).message}`;
        }
      };
      const x = torch.arange(6).reshape(2, 3);
      const q = torch.ones(1, 2, 2);
      const p = torch.ones([2], { requiresGrad: true });
      const got = {
        'linear bias': outcome(() => F.linear(torch.ones(1, 3), torch.ones(2, 3), disposed(torch.full([2], 100)))),
        'conv2d bias': outcome(() => F.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1), disposed(torch.ones(1)))),
        'layerNorm weight': outcome(() => F.layerNorm(torch.ones(2, 3), [3], disposed(torch.ones(3)))),
        'crossEntropy weight': outcome(() =>
          F.crossEntropy(torch.ones(2, 3), torch.tensor([0, 1]), { weight: disposed(torch.ones(3)) }),
        ),
        'attention mask': outcome(() =>
          F.scaledDotProductAttention(q, q, q, { attnMask: disposed(torch.tensor([true])) }),
        ),
        'index entry': outcome(() => x.index([torch.tensor([0]), disposed(torch.tensor([1]))])),
        'indexPut_ entry': outcome(() => x.clone().indexPut_([disposed(torch.tensor([0]))], torch.tensor([7]))),
        'grad setter': outcome(() => {
          p.grad = disposed(torch.ones(2));
        }),
      };
      expect(got).toEqual(Object.fromEntries(Object.keys(got).map((k) => [k, 'throws: disposed'])));
    });
  });

  it('out-of-range indices throw Errors', () => {
    torch.tidy(() => {
      const x = torch.ones(3);
      expect(() => x.gather(0, torch.tensor([99]))).toThrow(Error);
      expect(() => x.gather(0, torch.tensor([99]))).toThrow(/out of bounds|index/);
      expect(() => x.indexSelect(0, torch.tensor([99]))).toThrow(Error);
      expect(() => x.index([torch.tensor([-4])])).toThrow(Error);
      expect(() => x.select(0, 3)).toThrow(RangeError);
      expect(() => x.scatter(0, torch.tensor([5]), torch.ones(1))).toThrow(Error);
      expect(() => x.narrow(0, 2, 5)).toThrow(Error);
      expect(() => x.sum(3)).toThrow(RangeError);
      expect(() => x.size(2)).toThrow(RangeError);
      expect(() => F.crossEntropy(torch.ones(2, 3), torch.tensor([0, 5]))).toThrow(Error);
      expect(() => F.embedding(torch.tensor([7]), torch.ones(3, 2))).toThrow(Error);
      // and the process is still fine
      expect(x.sum().item()).toBe(3);
    });
  });

  it('bad dtype names and device strings are TypeErrors', () => {
    torch.tidy(() => {
      const bad = (v: unknown): never => v as never;
      const x = torch.ones(2);
      expect(() => torch.zeros(2, { dtype: bad('float8') })).toThrow(TypeError);
      expect(() => torch.tensor([1, 2], { dtype: bad('x') })).toThrow(TypeError);
      expect(() => x.to(bad('float8'))).toThrow(TypeError);
      expect(() => x.to({ dtype: bad('int128') })).toThrow(TypeError);
      expect(() => x.sum(undefined, false, { dtype: bad('x') })).toThrow(TypeError);
      expect(() => torch.zerosLike(x, { dtype: bad('half') })).toThrow(TypeError);
      expect(() => torch.zeros(2, { device: bad('gpu') })).toThrow(TypeError);
      expect(() => torch.ones(2, { device: bad('tpu') })).toThrow(TypeError);
      expect(() => x.to({ device: bad('tpu') })).toThrow(TypeError);
      expect(() => x.to(bad('cuda:x'))).toThrow(TypeError);
      expect(() => torch.tensor([1], { device: bad('CPU') })).toThrow(TypeError);
      expect(messageOf(() => torch.zeros(2, { dtype: bad('float8') }))).toContain('float8');
      expect(messageOf(() => torch.zeros(2, { device: bad('gpu') }))).toContain('gpu');
    });
  });
});
