// Creating tensors (nested arrays, typed arrays, filled, ranges, random, *Like), dtype and device
// conversion, and reading back (item, toArray, data, metadata, toString).
import { describe, it, expect } from 'vitest';
import { torch } from '../../lib/index.js';

type Tensor = torch.Tensor;
type DType = torch.DType;

const DTYPES: DType[] = [
  'float32',
  'float64',
  'float16',
  'bfloat16',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
];
const flat = (t: Tensor): number[] => {
  const a = t.toArray();
  return (Array.isArray(a) ? (a as unknown[]).flat(Infinity) : [a]).map((v) =>
    typeof v === 'boolean' ? Number(v) : (v as number),
  );
};

describe('torch.tensor from nested arrays', () => {
  it('infers shape and dtype', () => {
    torch.tidy(() => {
      const i = torch.tensor([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      expect(i.shape).toEqual([2, 3]);
      expect(i.dtype).toBe('int64');
      expect(i.toArray()).toEqual([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      const f = torch.tensor([
        [1.5, 2],
        [3, 4],
      ]);
      expect(f.dtype).toBe('float32');
      expect(f.toArray()).toEqual([
        [1.5, 2],
        [3, 4],
      ]);
      const b = torch.tensor([[true], [false]]);
      expect(b.dtype).toBe('bool');
      expect(b.shape).toEqual([2, 1]);
      expect(b.toArray()).toEqual([[true], [false]]);
      expect(torch.tensor([[[7]]]).shape).toEqual([1, 1, 1]);
      // scalars are 0-d
      const s = torch.tensor(5);
      expect(s.shape).toEqual([]);
      expect(s.ndim).toBe(0);
      expect(s.dtype).toBe('int64');
      expect(s.item()).toBe(5);
      expect(torch.tensor(2.5).dtype).toBe('float32');
      expect(torch.tensor(true).dtype).toBe('bool');
      expect(torch.tensor(true).item()).toBe(true);
      // empty
      const e = torch.tensor([]);
      expect(e.shape).toEqual([0]);
      expect(e.dtype).toBe('float32');
      expect(e.numel()).toBe(0);
      expect(torch.tensor([[]]).shape).toEqual([1, 0]);
      // special values
      const sp = torch.tensor([Number.NaN, Number.POSITIVE_INFINITY, -0]);
      expect(sp.dtype).toBe('float32');
      expect(sp.toArray()).toEqual([Number.NaN, Number.POSITIVE_INFINITY, -0]);
    });
  });

  it('honours an explicit dtype', () => {
    torch.tidy(() => {
      const d = torch.tensor([1, 2], { dtype: 'float64' });
      expect(d.dtype).toBe('float64');
      expect(d.data()).toEqual(new Float64Array([1, 2]));
      expect(torch.tensor([1.7, -1.7], { dtype: 'int64' }).toArray()).toEqual([1, -1]); // truncation, as PyTorch
      expect(torch.tensor([1, 2], { dtype: 'int32' }).data()).toEqual(new Int32Array([1, 2]));
      expect(torch.tensor([-3, 4], { dtype: 'int16' }).data()).toEqual(new Int16Array([-3, 4]));
      expect(torch.tensor([-3, 4], { dtype: 'int8' }).data()).toEqual(new Int8Array([-3, 4]));
      expect(torch.tensor([3, 250], { dtype: 'uint8' }).data()).toEqual(new Uint8Array([3, 250]));
      expect(torch.tensor([true, false], { dtype: 'float32' }).toArray()).toEqual([1, 0]);
      expect(torch.tensor([0, 1], { dtype: 'bool' }).toArray()).toEqual([false, true]);
      // float16 / bfloat16 come back as raw bit patterns from data() and as numbers from toArray()
      const h = torch.tensor([1, 0.5, -2], { dtype: 'float16' });
      expect(h.dtype).toBe('float16');
      expect(h.data()).toEqual(new Uint16Array([0x3c00, 0x3800, 0xc000]));
      expect(h.toArray()).toEqual([1, 0.5, -2]);
      const bf = torch.tensor([1, 0.5, -2], { dtype: 'bfloat16' });
      expect(bf.data()).toEqual(new Uint16Array([0x3f80, 0x3f00, 0xc000]));
      expect(bf.toArray()).toEqual([1, 0.5, -2]);
      // int64 keeps integers up to 2^53 exactly
      const big = torch.tensor([2 ** 53, -(2 ** 53)]);
      expect(big.data()).toEqual(new BigInt64Array([2n ** 53n, -(2n ** 53n)]));
      expect(big.toArray()).toEqual([2 ** 53, -(2 ** 53)]);
    });
  });

  it('bool from numbers stores 0 / 1 (non-zero is true)', () => {
    torch.tidy(() => {
      const b = torch.tensor([0, 2, -1], { dtype: 'bool' });
      expect(b.toArray()).toEqual([false, true, true]);
      // The bytes of a bool tensor are 0 or 1, as PyTorch's torch.tensor([0, 2, -1], dtype=torch.bool).
      expect(b.data()).toEqual(new Uint8Array([0, 1, 1]));
    });
  });

  it('rejects ragged arrays with RangeError and mixed or non-numeric data with TypeError', () => {
    expect(() => torch.tensor([[1, 2], [3]])).toThrow(RangeError);
    expect(() => torch.tensor([[1, 2], 3] as never)).toThrow(RangeError);
    expect(() => torch.tensor([[[1], [2]], [[3]]])).toThrow(RangeError);
    expect(() => torch.tensor([[1, 2], [3]])).toThrow(/ragged/);
    expect(() => torch.tensor([true, 1])).toThrow(TypeError);
    expect(() => torch.tensor([[true], [0]])).toThrow(TypeError);
    expect(() => torch.tensor(['a'] as never)).toThrow(TypeError);
    expect(() => torch.tensor([1, null] as never)).toThrow(TypeError);
    expect(() => torch.tensor({} as never)).toThrow();
  });
});

describe('torch.tensor from typed arrays', () => {
  it('takes the dtype from each typed array', () => {
    torch.tidy(() => {
      const cases: Array<[ArrayBufferView & ArrayLike<number | bigint>, DType]> = [
        [new Float32Array([1.5, -2, 3]), 'float32'],
        [new Float64Array([1.5, -2, 1e300]), 'float64'],
        [new Int32Array([1, -2, 2 ** 31 - 1]), 'int32'],
        [new BigInt64Array([1n, -2n, 2n ** 62n + 1n]), 'int64'],
        [new Int16Array([1, -2, 32767]), 'int16'],
        [new Int8Array([1, -2, 127]), 'int8'],
        [new Uint8Array([1, 2, 255]), 'uint8'],
      ];
      for (const [array, dtype] of cases) {
        const t = torch.tensor(array as never);
        expect(t.dtype).toBe(dtype);
        expect(t.shape).toEqual([3]);
        expect(t.data()).toEqual(array);
        expect(t.data()).toBeInstanceOf(array.constructor);
      }
      // int64 beyond 2^53 survives through data(), though toArray() gives JS numbers
      expect((torch.tensor(new BigInt64Array([2n ** 62n + 1n])).data() as BigInt64Array)[0]).toBe(2n ** 62n + 1n);
    });
  });

  it('reads float16 / bfloat16 raw bits from a Uint16Array', () => {
    torch.tidy(() => {
      const h = torch.tensor(new Uint16Array([0x3c00, 0x4000, 0xbc00, 0x3555]), { dtype: 'float16' });
      expect(h.dtype).toBe('float16');
      expect(h.toArray()).toEqual([1, 2, -1, 0.333251953125]);
      expect(h.data()).toEqual(new Uint16Array([0x3c00, 0x4000, 0xbc00, 0x3555]));
      const b = torch.tensor(new Uint16Array([0x3f80, 0x4040, 0xbf80]), { dtype: 'bfloat16' });
      expect(b.dtype).toBe('bfloat16');
      expect(b.toArray()).toEqual([1, 3, -1]);
      expect(() => torch.tensor(new Uint16Array([1]))).toThrow(TypeError); // which 16-bit float?
    });
  });

  it('applies the shape option and checks it against the length', () => {
    torch.tidy(() => {
      const t = torch.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
      expect(t.shape).toEqual([2, 3]);
      expect(t.toArray()).toEqual([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      expect(torch.tensor(new Int32Array([7]), { shape: [] }).shape).toEqual([]);
      expect(torch.tensor(new Uint16Array([0x3c00, 0x3c00]), { dtype: 'float16', shape: [2, 1] }).shape).toEqual([
        2, 1,
      ]);
      expect(torch.tensor(new Float32Array([1, 2, 3, 4]), { dtype: 'float64', shape: [2, 2] }).toArray()).toEqual([
        [1, 2],
        [3, 4],
      ]);
      expect(() => torch.tensor(new Float32Array([1, 2, 3]), { shape: [2, 2] })).toThrow(RangeError);
      // a view into a larger buffer reads only its own elements
      const buffer = new Float32Array([9, 1, 2, 9]);
      expect(torch.tensor(buffer.subarray(1, 3)).toArray()).toEqual([1, 2]);
      // the tensor owns a copy
      const source = new Float32Array([1, 2]);
      const c = torch.tensor(source);
      source[0] = 100;
      expect(c.toArray()).toEqual([1, 2]);
      // options also apply
      const g = torch.tensor(new Float64Array([1, 2]), { requiresGrad: true });
      expect(g.requiresGrad).toBe(true);
    });
  });

  it('converts to a wider dtype by value', () => {
    torch.tidy(() => {
      expect(torch.tensor(new Float32Array([1.5, -2]), { dtype: 'float64' }).toArray()).toEqual([1.5, -2]);
      expect(torch.tensor(new Int32Array([3, -4]), { dtype: 'int64' }).toArray()).toEqual([3, -4]);
      expect(torch.tensor(new Uint8Array([0, 2]), { dtype: 'float32' }).toArray()).toEqual([0, 2]);
      expect(torch.tensor(new Float64Array([1.5]), { dtype: 'float32' }).toArray()).toEqual([1.5]);
      expect(torch.tensor(new Float32Array([1.5]), { dtype: 'float16' }).data()).toEqual(new Uint16Array([0x3e00]));
    });
  });

  it('converts to a dtype of the same width by value, not by reinterpreting the bytes', () => {
    torch.tidy(() => {
      // PyTorch: torch.tensor(np.array([1.5, 2], np.float32), dtype=torch.int32) -> [1, 2].
      // Collected in one object so a failure shows every case at once.
      const got = {
        'Float32Array -> int32': torch.tensor(new Float32Array([1.5, 2]), { dtype: 'int32' }).toArray(),
        'Int32Array -> float32': torch.tensor(new Int32Array([1, 2]), { dtype: 'float32' }).toArray(),
        'Float64Array -> int64': torch.tensor(new Float64Array([1, 2]), { dtype: 'int64' }).toArray(),
        'BigInt64Array -> float64': torch.tensor(new BigInt64Array([1n, 2n]), { dtype: 'float64' }).toArray(),
        'Int16Array -> float16': torch.tensor(new Int16Array([1, 2]), { dtype: 'float16' }).toArray(),
        'Int16Array -> bfloat16': torch.tensor(new Int16Array([1, 2]), { dtype: 'bfloat16' }).toArray(),
        'Uint8Array -> bool (bytes)': Array.from(
          torch.tensor(new Uint8Array([0, 2]), { dtype: 'bool' }).data() as Uint8Array,
        ),
      };
      expect(got).toEqual({
        'Float32Array -> int32': [1, 2],
        'Int32Array -> float32': [1, 2],
        'Float64Array -> int64': [1, 2],
        'BigInt64Array -> float64': [1, 2],
        'Int16Array -> float16': [1, 2],
        'Int16Array -> bfloat16': [1, 2],
        'Uint8Array -> bool (bytes)': [0, 1],
      });
    });
  });

  it('frombuffer views raw little-endian bytes', () => {
    torch.tidy(() => {
      const t = torch.frombuffer(new Uint8Array([0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]), { dtype: 'float32' });
      expect(t.toArray()).toEqual([1, 2]);
      const m = torch.frombuffer(new Int32Array([1, 2, 3, 4]).buffer, { dtype: 'int32', shape: [2, 2] });
      expect(m.toArray()).toEqual([
        [1, 2],
        [3, 4],
      ]);
    });
  });
});

describe('dtype and device conversion', () => {
  it('round-trips small integers through every pair of dtypes', () => {
    torch.tidy(() => {
      for (const from of DTYPES) {
        for (const to of DTYPES) {
          const values =
            from === 'bool' || to === 'bool'
              ? [0, 1, 1, 0]
              : from === 'uint8' || to === 'uint8'
                ? [0, 1, 7, 100]
                : [-3, 0, 1, 100];
          const a = torch.tensor(values, { dtype: from });
          const b = a.to(to);
          const back = b.to(from);
          expect(b.dtype).toBe(to);
          expect(back.dtype).toBe(from);
          expect(flat(b), `${from} -> ${to}`).toEqual(values);
          expect(flat(back), `${from} -> ${to} -> ${from}`).toEqual(values);
          expect(back.equal(a)).toBe(true);
        }
      }
    });
  });

  it('narrowing conversions behave as PyTorch', () => {
    torch.tidy(() => {
      const f = torch.tensor([1.7, -1.7, 0.5]);
      expect(f.long().toArray()).toEqual([1, -1, 0]); // truncation toward zero
      expect(f.int().dtype).toBe('int32');
      expect(f.bool().toArray()).toEqual([true, true, true]);
      expect(torch.tensor([0, 0.1]).bool().toArray()).toEqual([false, true]);
      expect(
        torch
          .tensor([1 / 3], { dtype: 'float64' })
          .float()
          .item(),
      ).toBe(Math.fround(1 / 3));
      expect(
        torch
          .tensor([1 / 3])
          .half()
          .data(),
      ).toEqual(new Uint16Array([0x3555]));
      expect(
        torch
          .tensor([1 / 3])
          .bfloat16()
          .data(),
      ).toEqual(new Uint16Array([0x3eab]));
      expect(torch.tensor([300]).to('uint8').toArray()).toEqual([44]); // wraps mod 256
      expect(torch.tensor([2]).double().dtype).toBe('float64');
      expect(torch.tensor([2.5]).float().dtype).toBe('float32');
    });
  });

  it('.to(cpu), .to with options, copy semantics', () => {
    torch.tidy(() => {
      const t = torch.ones(2, 3);
      expect(t.device).toBe('cpu');
      const c = t.to('cpu');
      expect(c.device).toBe('cpu');
      expect(c.shape).toEqual([2, 3]);
      expect(t.cpu().device).toBe('cpu');
      const both = t.to({ dtype: 'float64', device: 'cpu' });
      expect(both.dtype).toBe('float64');
      expect(both.device).toBe('cpu');
      // same dtype and device: an alias (writes show through), unless copy is asked for
      const alias = t.to('float32');
      alias.fill_(3);
      expect(flat(t)).toEqual([3, 3, 3, 3, 3, 3]);
      const copy = t.to({ dtype: 'float32', copy: true });
      copy.fill_(4);
      expect(flat(t)).toEqual([3, 3, 3, 3, 3, 3]);
      const cl = t.clone();
      cl.fill_(5);
      expect(flat(t)).toEqual([3, 3, 3, 3, 3, 3]);
    });
  });

  it('CUDA is unavailable here and moving to it throws an Error', () => {
    torch.tidy(() => {
      expect(torch.cuda.isAvailable()).toBe(false);
      expect(torch.cuda.deviceCount()).toBe(0);
      expect(torch.buildInfo().cuda).toBe(false);
      const t = torch.ones(2);
      expect(() => t.to('cuda')).toThrow(Error);
      expect(() => t.to('cuda:0')).toThrow(Error);
      expect(() => t.cuda()).toThrow(Error);
      expect(() => torch.zeros(2, { device: 'cuda' })).toThrow(Error);
      expect(() => torch.tensor([1], { device: 'cuda' })).toThrow(Error);
      // the process survives and the tensor is intact
      expect(t.toArray()).toEqual([1, 1]);
    });
  });

  it('bad dtype and device names are TypeErrors', () => {
    torch.tidy(() => {
      const t = torch.ones(2);
      expect(() => t.to('float8' as DType)).toThrow(TypeError);
      expect(() => torch.zeros(2, { dtype: 'complex64' as DType })).toThrow(TypeError);
      expect(() => t.to({ device: 'tpu' as 'cpu' })).toThrow(TypeError);
      expect(() => torch.ones(2, { device: 'gpu' as 'cpu' })).toThrow(TypeError);
      expect(() => torch.randn(2, { device: 'cuda:a' as 'cpu' })).toThrow(TypeError);
    });
  });
});

describe('filled tensors and ranges', () => {
  it('zeros / ones / empty take varargs or an array, and options', () => {
    torch.tidy(() => {
      const z = torch.zeros(2, 3);
      expect(z.shape).toEqual([2, 3]);
      expect(z.dtype).toBe('float32');
      expect(flat(z)).toEqual([0, 0, 0, 0, 0, 0]);
      expect(torch.zeros([2, 3]).shape).toEqual([2, 3]);
      const o = torch.ones([4], { dtype: 'int32' });
      expect(o.dtype).toBe('int32');
      expect(o.toArray()).toEqual([1, 1, 1, 1]);
      expect(torch.ones(2, 2, { dtype: 'bool' }).toArray()).toEqual([
        [true, true],
        [true, true],
      ]);
      const e = torch.empty(3, 4, { dtype: 'float64' });
      expect(e.shape).toEqual([3, 4]);
      expect(e.dtype).toBe('float64');
      expect(torch.zeros().shape).toEqual([]);
      expect(torch.zeros(0, 3).numel()).toBe(0);
      const g = torch.zeros([2], { requiresGrad: true });
      expect(g.requiresGrad).toBe(true);
      expect(g.isLeaf).toBe(true);
    });
  });

  it('full infers bool / int64 / float32 from the value', () => {
    torch.tidy(() => {
      const b = torch.full([2], true);
      expect(b.dtype).toBe('bool');
      expect(b.toArray()).toEqual([true, true]);
      const i = torch.full([2, 2], 7);
      expect(i.dtype).toBe('int64');
      expect(i.toArray()).toEqual([
        [7, 7],
        [7, 7],
      ]);
      const f = torch.full([3], 2.5);
      expect(f.dtype).toBe('float32');
      expect(f.toArray()).toEqual([2.5, 2.5, 2.5]);
      const d = torch.full([1], 7, { dtype: 'float64' });
      expect(d.dtype).toBe('float64');
      expect(d.toArray()).toEqual([7]);
      expect(torch.full([1], Number.NEGATIVE_INFINITY).toArray()).toEqual([Number.NEGATIVE_INFINITY]);
    });
  });

  it('arange: int64 for integer bounds, float32 otherwise', () => {
    torch.tidy(() => {
      const a = torch.arange(5);
      expect(a.dtype).toBe('int64');
      expect(a.toArray()).toEqual([0, 1, 2, 3, 4]);
      expect(torch.arange(2, 8, 3).toArray()).toEqual([2, 5]);
      expect(torch.arange(5, 0, -2).toArray()).toEqual([5, 3, 1]);
      expect(torch.arange(3, 3).numel()).toBe(0);
      const f = torch.arange(0, 1, 0.25);
      expect(f.dtype).toBe('float32');
      expect(f.toArray()).toEqual([0, 0.25, 0.5, 0.75]);
      expect(torch.arange(0.5, 3).toArray()).toEqual([0.5, 1.5, 2.5]);
      const d = torch.arange(4, { dtype: 'float64' });
      expect(d.dtype).toBe('float64');
      expect(d.toArray()).toEqual([0, 1, 2, 3]);
      expect(torch.arange(1, 4, { dtype: 'int32' }).dtype).toBe('int32');
      expect(() => torch.arange('5' as unknown as number)).toThrow(TypeError);
    });
  });

  it('linspace and eye', () => {
    torch.tidy(() => {
      const l = torch.linspace(0, 1, 5);
      expect(l.dtype).toBe('float32');
      expect(l.toArray()).toEqual([0, 0.25, 0.5, 0.75, 1]);
      expect(torch.linspace(-1, 1, 3, { dtype: 'float64' }).toArray()).toEqual([-1, 0, 1]);
      expect(torch.linspace(2, 3, 1).toArray()).toEqual([2]);
      expect(torch.linspace(5, 1, 3).toArray()).toEqual([5, 3, 1]);
      const e = torch.eye(3);
      expect(e.dtype).toBe('float32');
      expect(e.toArray()).toEqual([
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
      ]);
      expect(torch.eye(2, 3).toArray()).toEqual([
        [1, 0, 0],
        [0, 1, 0],
      ]);
      expect(torch.eye(2, 2, { dtype: 'int64' }).toArray()).toEqual([
        [1, 0],
        [0, 1],
      ]);
      expect(torch.eye(2, 2, { dtype: 'bool' }).toArray()).toEqual([
        [true, false],
        [false, true],
      ]);
    });
  });
});

describe('random tensors', () => {
  it('rand is uniform in [0, 1)', () => {
    torch.tidy(() => {
      torch.manualSeed(11);
      const r = torch.rand(100, 100);
      expect(r.shape).toEqual([100, 100]);
      expect(r.dtype).toBe('float32');
      const v = Array.from(r.data() as Float32Array);
      expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...v)).toBeLessThan(1);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
      // about a tenth in each tenth of the interval
      const bins = new Array<number>(10).fill(0);
      for (const x of v) bins[Math.floor(x * 10)]!++;
      for (const n of bins) expect(Math.abs(n / v.length - 0.1)).toBeLessThan(0.015);
      expect(torch.rand([3], { dtype: 'float64' }).dtype).toBe('float64');
    });
  });

  it('randn has mean ~0 and std ~1 over 10k samples', () => {
    torch.tidy(() => {
      torch.manualSeed(12);
      const v = Array.from(torch.randn(10000).data() as Float32Array);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1));
      expect(Math.abs(mean)).toBeLessThan(0.05);
      expect(Math.abs(std - 1)).toBeLessThan(0.05);
      // roughly 68% within one standard deviation
      const inside = v.filter((x) => Math.abs(x) < 1).length / v.length;
      expect(Math.abs(inside - 0.6827)).toBeLessThan(0.02);
      expect(torch.randn(2, 3, { dtype: 'float64' }).dtype).toBe('float64');
    });
  });

  it('randint draws int64 from [low, high)', () => {
    torch.tidy(() => {
      torch.manualSeed(13);
      const r = torch.randint(-2, 3, [5000]);
      expect(r.dtype).toBe('int64');
      expect(r.shape).toEqual([5000]);
      const v = flat(r);
      expect(new Set(v)).toEqual(new Set([-2, -1, 0, 1, 2]));
      for (const k of [-2, -1, 0, 1, 2])
        expect(Math.abs(v.filter((x) => x === k).length / 5000 - 0.2)).toBeLessThan(0.03);
      expect(torch.randint(0, 10, [2, 2], { dtype: 'int32' }).dtype).toBe('int32');
      expect(torch.randint(0, 1, [4]).toArray()).toEqual([0, 0, 0, 0]);
      expect(() => torch.randint(0, 1.5, [2])).toThrow(TypeError);
    });
  });

  it('manualSeed makes draws reproducible', () => {
    torch.tidy(() => {
      const draw = (): number[][] => [flat(torch.rand(8)), flat(torch.randn(8)), flat(torch.randint(0, 1000, [8]))];
      torch.manualSeed(2024);
      const a = draw();
      torch.manualSeed(2024);
      const b = draw();
      torch.manualSeed(2025);
      const c = draw();
      expect(b).toEqual(a);
      expect(c[0]).not.toEqual(a[0]);
      expect(c[1]).not.toEqual(a[1]);
      expect(c[2]).not.toEqual(a[2]);
      // without reseeding, the stream moves on
      torch.manualSeed(2024);
      flat(torch.rand(8));
      expect(flat(torch.rand(8))).not.toEqual(a[0]);
    });
  });
});

describe('*Like variants', () => {
  it('keep shape, dtype and device; dtype can be overridden', () => {
    torch.tidy(() => {
      const base = torch.ones([2, 3], { dtype: 'float64' });
      const checks: Array<[Tensor, number[] | null]> = [
        [torch.zerosLike(base), [0, 0, 0, 0, 0, 0]],
        [torch.onesLike(base), [1, 1, 1, 1, 1, 1]],
        [torch.emptyLike(base), null],
        [torch.fullLike(base, 2.5), [2.5, 2.5, 2.5, 2.5, 2.5, 2.5]],
        [torch.randLike(base), null],
        [torch.randnLike(base), null],
        [torch.randintLike(base, 3, 5), null],
      ];
      for (const [t, expected] of checks) {
        expect(t.shape).toEqual([2, 3]);
        expect(t.dtype).toBe('float64');
        expect(t.device).toBe('cpu');
        if (expected) expect(flat(t)).toEqual(expected);
      }
      const r = flat(torch.randLike(base));
      expect(r.every((x) => x >= 0 && x < 1)).toBe(true);
      const ri = flat(torch.randintLike(base, 3, 5));
      expect(ri.every((x) => x === 3 || x === 4)).toBe(true);
      const ints = torch.tensor([[1, 2]]);
      expect(torch.zerosLike(ints).dtype).toBe('int64');
      expect(torch.fullLike(ints, 9).toArray()).toEqual([[9, 9]]);
      expect(torch.onesLike(ints, { dtype: 'bool' }).toArray()).toEqual([[true, true]]);
      expect(torch.zerosLike(ints, { dtype: 'float16' }).dtype).toBe('float16');
      expect(torch.randnLike(ints, { dtype: 'float32' }).dtype).toBe('float32');
      expect(torch.randintLike(ints, 0, 4).dtype).toBe('int64');
      const g = torch.zerosLike(base, { requiresGrad: true });
      expect(g.requiresGrad).toBe(true);
      expect(() => torch.zerosLike([1, 2] as unknown as Tensor)).toThrow(TypeError);
    });
  });
});

describe('reading back and metadata', () => {
  it('item()', () => {
    torch.tidy(() => {
      expect(torch.tensor(2.5).item()).toBe(2.5);
      expect(torch.tensor([[3]]).item()).toBe(3);
      expect(torch.tensor([false]).item()).toBe(false);
      expect(torch.tensor([0.1], { dtype: 'float64' }).item()).toBe(0.1);
      expect(torch.tensor([0.1]).item()).toBe(Math.fround(0.1));
      expect(torch.tensor([1.5], { dtype: 'float16' }).item()).toBe(1.5);
      expect(torch.tensor([-7], { dtype: 'int8' }).item()).toBe(-7);
      expect(() => torch.tensor([1, 2]).item()).toThrow(Error);
      expect(() => torch.tensor([]).item()).toThrow(Error);
    });
  });

  it('toArray() and data()', () => {
    torch.tidy(() => {
      const t = torch.arange(6).reshape(2, 3);
      expect(t.toArray()).toEqual([
        [0, 1, 2],
        [3, 4, 5],
      ]);
      // data() is a copy in row-major order of the logical layout, also for a transposed view
      expect(t.t().data()).toEqual(new BigInt64Array([0n, 3n, 1n, 4n, 2n, 5n]));
      expect(t.t().toArray()).toEqual([
        [0, 3],
        [1, 4],
        [2, 5],
      ]);
      const f = torch.tensor([1, 2], { dtype: 'float32' });
      const d = f.data() as Float32Array;
      d[0] = 99;
      expect(f.toArray()).toEqual([1, 2]);
      expect(torch.tensor([true, false]).data()).toEqual(new Uint8Array([1, 0]));
      expect(torch.tensor([1, 2], { dtype: 'bfloat16' }).data()).toBeInstanceOf(Uint16Array);
      expect(torch.zeros(0).data().length).toBe(0);
      // a tensor with requiresGrad can be read without detaching
      expect(torch.ones([2], { requiresGrad: true }).mul(2).toArray()).toEqual([2, 2]);
    });
  });

  it('shape, dtype, device, numel, ndim', () => {
    torch.tidy(() => {
      const t = torch.zeros([2, 3, 4], { dtype: 'int16' });
      expect(t.shape).toEqual([2, 3, 4]);
      expect(t.dtype).toBe('int16');
      expect(t.device).toBe('cpu');
      expect(t.numel()).toBe(24);
      expect(t.ndim).toBe(3);
      expect(t.dim()).toBe(3);
      expect(t.size(1)).toBe(3);
      // shape is a copy
      const s = t.shape;
      s[0] = 100;
      expect(t.shape).toEqual([2, 3, 4]);
      expect(torch.tensor(1).numel()).toBe(1);
      expect(torch.zeros(3, 0).numel()).toBe(0);
      // dtype name constants
      expect(torch.float32).toBe('float32');
      expect(torch.bfloat16).toBe('bfloat16');
      expect(torch.int64).toBe('int64');
      expect(torch.bool).toBe('bool');
    });
  });

  it('toString() prints like PyTorch in the common cases', () => {
    torch.tidy(() => {
      expect(
        torch
          .tensor(
            [
              [1, 2],
              [3, 4],
            ],
            { dtype: 'float32' },
          )
          .toString(),
      ).toBe('tensor([[1., 2.],\n        [3., 4.]])');
      expect(torch.tensor([1, 2, 3]).toString()).toBe('tensor([1, 2, 3])');
      expect(torch.tensor([1, 2], { dtype: 'float64' }).toString()).toBe('tensor([1., 2.], dtype=float64)');
      expect(torch.tensor([1, 2], { dtype: 'int32' }).toString()).toBe('tensor([1, 2], dtype=int32)');
      expect(torch.tensor([1, 2], { dtype: 'float16' }).toString()).toBe('tensor([1., 2.], dtype=float16)');
      expect(torch.tensor(3).toString()).toBe('tensor(3)');
      expect(torch.arange(8).reshape(2, 2, 2).toString()).toBe(
        'tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])',
      );
      expect(torch.ones([2], { requiresGrad: true }).toString()).toBe('tensor([1., 1.], requires_grad=True)');
      expect(torch.ones([2], { requiresGrad: true }).mul(2).toString()).toMatch(
        /^tensor\(\[2\., 2\.\], grad_fn=<Mul\w*>\)$/,
      );
      expect(`${torch.tensor([1])}`).toBe('tensor([1])');
      // more than 1000 elements are summarised with the first and last three of each dim
      const long = torch.arange(2000).toString();
      expect(long).toMatch(/^tensor\(\[ *0, +1, +2, +\.\.\., 1997, 1998, 1999\]\)$/);
      expect(torch.zeros(0).toString()).toMatch(/^tensor\(\[\]/);
      const disposed = torch.ones(1);
      disposed.dispose();
      expect(disposed.toString()).toBe('tensor(<disposed>)');
    });
  });

  it('toString() aligns elements to a common width and precision like PyTorch', () => {
    torch.tidy(() => {
      // PyTorch pads every element to the widest one and prints floats with one precision.
      // Collected in one object so a failure shows every case at once.
      const cases: Array<[Tensor, string]> = [
        [torch.tensor([1.5, 2]), 'tensor([1.5000, 2.0000])'],
        [torch.tensor([0.5, 0.25]), 'tensor([0.5000, 0.2500])'],
        [torch.tensor(2.5), 'tensor(2.5000)'],
        [torch.tensor([1e-5, 1]), 'tensor([1.0000e-05, 1.0000e+00])'],
        [torch.tensor([true, false]), 'tensor([ True, False])'],
        [torch.tensor([1, 10, -100]), 'tensor([   1,   10, -100])'],
        [
          torch.tensor(
            [
              [-1, 2],
              [3, -4],
            ],
            { dtype: 'float32' },
          ),
          'tensor([[-1.,  2.],\n        [ 3., -4.]])',
        ],
        [torch.ones(2000), 'tensor([1., 1., 1.,  ..., 1., 1., 1.])'],
        [torch.arange(2000), 'tensor([   0,    1,    2,  ..., 1997, 1998, 1999])'],
      ];
      expect(cases.map(([t]) => t.toString())).toEqual(cases.map(([, text]) => text));
    });
  });
});
