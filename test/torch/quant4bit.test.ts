// 4-bit quantisation against an independent plain-JS reference written from the bitsandbytes
// semantics (specs/trl_peft.md §5.3): published NF4 / FP4 tables, high-nibble-first packing,
// nearest code with ties to the lower code, error bounds, double quantisation, bytes per parameter.
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
import { runPythonText } from '../peers/python.js';
import { rng } from './gradcheck.js';
import { EPS32 } from '../tolerance.js';

const f = Math.fround;
const NF4 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
].map(f);
const FP4 = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => f(v / 12));

/** bitsandbytes' blockwise quantisation, element by element, in float32 arithmetic. */
function reference(values: Float32Array, code: number[], blocksize: number): { codes: number[]; absmax: number[] } {
  const order = code.map((_, k) => k).sort((a, b) => code[a]! - code[b]! || a - b);
  const mid = order.slice(0, -1).map((k, i) => f((code[k]! + code[order[i + 1]!]!) / 2));
  const nearest = (s: number): number => order[mid.filter((m) => m < s).length]!;
  const codes: number[] = [];
  const absmax: number[] = [];
  for (let start = 0; start < values.length; start += blocksize) {
    const block = values.subarray(start, Math.min(values.length, start + blocksize));
    const m = block.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    const scale = Math.max(m, f(1e-38));
    const full = block.length === blocksize;
    absmax.push(full ? m : scale);
    const inv = f(1 / scale);
    for (const v of block) codes.push(nearest(Math.min(1, Math.max(-1, full ? f(v * inv) : f(v / scale)))));
  }
  return { codes, absmax };
}

function pack(codes: number[], padCode: number): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < codes.length; i += 2)
    bytes.push((codes[i]! << 4) | (i + 1 < codes.length ? codes[i + 1]! : padCode));
  return bytes;
}

function randomWeight(n: number, seed: number): Float32Array {
  const next = rng(seed);
  // Normal-ish values with a few outliers, like a trained weight.
  return Float32Array.from({ length: n }, (_, k) => (next() + next() + next() - 1.5) * (k % 97 === 0 ? 8 : 1));
}

const numbers = (t: torch.Tensor): number[] => Array.from(t.data() as ArrayLike<number>);

describe('quantize4bit', () => {
  it('uses the published NF4 table and bitsandbytes FP4 table', () => {
    torch.tidy(() => {
      const w = torch.randn(4, 64);
      expect(numbers(torch.quantize4bit(w, { quantType: 'nf4' }).code)).toEqual(NF4);
      expect(numbers(torch.quantize4bit(w, { quantType: 'fp4' }).code)).toEqual(FP4);
    });
  });

  it('packs the first element of each pair in the high nibble', () => {
    torch.tidy(() => {
      // One block of 64: -1 -> code 0, 1 -> 15, 0 -> 7, 0.44070982933044434 -> 12.
      const values = new Float32Array(64).fill(0);
      values.set([-1, 1, 0, NF4[12]!, 1, -1]);
      const q = torch.quantize4bit(torch.tensor(values, { shape: [2, 32] }), { quantType: 'nf4' });
      expect(q.packed.shape).toEqual([32, 1]);
      expect(numbers(q.packed).slice(0, 4)).toEqual([0x0f, 0x7c, 0xf0, 0x77]);
      expect(numbers(q.absmax)).toEqual([1]);
    });
  });

  it('breaks a tie on a midpoint towards the lower code', () => {
    torch.tidy(() => {
      const values = new Float32Array(64);
      values[0] = 1;
      values[1] = f((NF4[7]! + NF4[8]!) / 2);
      const q = torch.quantize4bit(torch.tensor(values), { quantType: 'nf4' });
      expect(numbers(q.packed)[0]).toBe(0xf7);
    });
  });

  for (const quantType of ['nf4', 'fp4'] as const) {
    for (const [n, blocksize, dtype] of [
      [64 * 37, 64, 'float32'],
      [1001, 64, 'float32'],
      [4096 + 96, 128, 'bfloat16'],
      [999, 32, 'float16'],
    ] as const) {
      it(`matches the reference bit for bit: ${quantType}, ${n} ${dtype} values, blocksize ${blocksize}`, () => {
        torch.tidy(() => {
          const w = torch.tensor(randomWeight(n, n + blocksize)).to(dtype);
          const values = w.to('float32').data() as Float32Array;
          const code = quantType === 'nf4' ? NF4 : FP4;
          const ref = reference(values, code, blocksize);
          const q = torch.quantize4bit(w, { quantType, blocksize });
          expect(q.packed.shape).toEqual([Math.ceil(n / 2), 1]);
          expect(numbers(q.absmax)).toEqual(ref.absmax);
          expect(numbers(q.packed)).toEqual(pack(ref.codes, reference(new Float32Array(1), code, 64).codes[0]!));
          // Dequantised: code[idx] * absmax in float32, rounded to the weight's dtype.
          const expected = ref.codes.map((c, i) => f(code[c]! * ref.absmax[Math.floor(i / blocksize)]!));
          const back = torch.dequantize4bit(q, { dtype: 'float32' });
          expect(back.shape).toEqual([n]);
          expect(numbers(back)).toEqual(expected);
          expect(numbers(torch.dequantize4bit(q))).toEqual(
            numbers(torch.tensor(Float32Array.from(expected)).to(dtype)),
          );
        });
      });
    }
  }

  it('stays within half the widest code gap times absmax', () => {
    torch.tidy(() => {
      for (const [quantType, code] of [
        ['nf4', NF4],
        ['fp4', FP4],
      ] as const) {
        const sorted = [...code].sort((a, b) => a - b);
        const gap = Math.max(...sorted.slice(1).map((v, k) => v - sorted[k]!));
        const values = randomWeight(64 * 50, 9);
        const q = torch.quantize4bit(torch.tensor(values, { shape: [50, 64] }), { quantType });
        const back = torch.dequantize4bit(q).data() as Float32Array;
        const absmax = numbers(q.absmax);
        // Plus float32 rounding of v/absmax (which picks the code) and of code·absmax: <= 1.5·eps·absmax.
        values.forEach((v, i) =>
          expect(Math.abs(back[i]! - v)).toBeLessThanOrEqual((gap / 2 + 2 * EPS32) * absmax[Math.floor(i / 64)]!),
        );
      }
    });
  });

  it('double-quantises the absmax with the 8-bit dynamic map (blocks of 256)', () => {
    torch.tidy(() => {
      const n = 64 * 700;
      const values = randomWeight(n, 11);
      const w = torch.tensor(values, { shape: [700, 64] });
      const plain = torch.quantize4bit(w);
      const q = torch.quantize4bit(w, { doubleQuant: true });
      expect(numbers(q.packed)).toEqual(numbers(plain.packed));
      expect(q.absmax.dtype).toBe('uint8');
      expect(q.nestedAbsmax!.shape).toEqual([Math.ceil(700 / 256)]);
      const map = numbers(q.nestedCode!);
      expect(map.length).toBe(256);
      expect(map).toEqual([...map].sort((a, b) => a - b));
      expect(Math.min(...map)).toBeCloseTo(-0.99297, 5);
      expect(Math.max(...map)).toBe(1);
      // offset is the mean; the codes are the reference blockwise quantisation of absmax - offset.
      const absmax = numbers(plain.absmax);
      const offset = q.offset!.item() as number;
      expect(offset).toBeCloseTo(absmax.reduce((a, b) => a + b, 0) / absmax.length, 6);
      const centred = Float32Array.from(absmax, (a) => f(a - offset));
      const ref = reference(centred, map, 256);
      expect(numbers(q.absmax)).toEqual(ref.codes);
      expect(numbers(q.nestedAbsmax!)).toEqual(ref.absmax);
      // Round trip: within half the widest gap of the map near each value, times the block's absmax,
      // plus float32 rounding of the centring, the code choice, the scaled code and the re-added offset.
      const restored = ref.codes.map((c, i) => f(f(map[c]! * ref.absmax[Math.floor(i / 256)]!) + offset));
      const maxGap = Math.max(...map.slice(1).map((v, k) => v - map[k]!));
      absmax.forEach((a, i) => {
        const nested = ref.absmax[Math.floor(i / 256)]!;
        expect(Math.abs(restored[i]! - a)).toBeLessThanOrEqual((maxGap / 2) * nested + 2 * EPS32 * (nested + a));
      });
      const packed = numbers(plain.packed);
      const expected = Array.from({ length: n }, (_, i) =>
        f(NF4[(packed[i >> 1]! >> (i % 2 ? 0 : 4)) & 15]! * restored[i >> 6]!),
      );
      expect(numbers(torch.dequantize4bit(q).reshape(-1))).toEqual(expected);
    });
  });

  it('stores about 0.516 bytes per parameter with double quantisation at blocksize 64', () => {
    torch.tidy(() => {
      const q = torch.quantize4bit(torch.randn(1024, 1024), { doubleQuant: true });
      const bytes = q.packed.numel() + q.absmax.numel() + q.nestedAbsmax!.numel() * 4;
      expect(bytes / (1024 * 1024)).toBeCloseTo(0.5158, 3);
    });
  });

  it('builds the dynamic map exactly as create_dynamic_map does in PyTorch', () => {
    // The construction of bitsandbytes' create_dynamic_map(signed=True), run in Python PyTorch.
    const script = [
      'import torch, json',
      'data = []',
      'for i in range(7):',
      '    b = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)',
      '    m = (b[:-1] + b[1:]) / 2.0',
      '    data += ((10 ** (-6 + i)) * m).tolist()',
      '    data += (-(10 ** (-6 + i)) * m).tolist()',
      'data += [0, 1.0]',
      'data.sort()',
      'print(json.dumps(torch.tensor(data, dtype=torch.float32).tolist()))',
    ].join('\n');
    const expected = JSON.parse(runPythonText(script)) as number[];
    torch.tidy(() =>
      expect(numbers(torch.quantize4bit(torch.randn(64), { doubleQuant: true }).nestedCode!)).toEqual(expected),
    );
  });

  it('validates its arguments in JS', () => {
    torch.tidy(() => {
      const w = torch.randn(4, 64);
      expect(() => torch.quantize4bit(w, { quantType: 'int4' as never })).toThrow(
        /^quantize4bit: expected 'nf4' or 'fp4' for quantType/,
      );
      expect(() => torch.quantize4bit(w, { blocksize: 48 })).toThrow(/^quantize4bit: .* for blocksize/);
      expect(() => torch.quantize4bit(torch.zeros(4, { dtype: 'int64' }))).toThrow(/^quantize4bit: .* for weight/);
    });
  });
});
