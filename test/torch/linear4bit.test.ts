// The QLoRA linear layer: forward and dx equal a linear layer on the dequantised weight (up to
// summation order), float64 gradcheck, bias gradient, tiling of any size, the tiles' dequantised
// bits (every SIMD variant), and no full-weight copy.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
import { native, nativeBinaryPath } from '../../lib/torch/native.js';
import { assertGradcheck, input } from './gradcheck.js';

type Tensor = torch.Tensor;
const F = torch.nn.functional;

function maxRelError(a: Tensor, b: Tensor): number {
  return torch.tidy(() => (a.sub(b).abs().max().item() as number) / (b.abs().max().item() as number));
}

describe('linear4bit', () => {
  for (const tileBytes of [4 << 20, 3000, 1]) {
    it(`matches a linear layer on the dequantised weight, forward and dx (tiles of ${tileBytes} bytes)`, () => {
      torch.tidy(() => {
        const state = torch.quantize4bit(torch.randn(96, 80), { doubleQuant: true });
        const w = torch.dequantize4bit(state);
        const bias = torch.randn(96).requiresGrad_(true);
        const x = torch.randn(3, 7, 80).requiresGrad_(true);
        const y = torch.linear4bit(x, state, bias, { tileBytes });
        expect(y.shape).toEqual([3, 7, 96]);
        const dy = torch.randn(3, 7, 96);
        y.backward(dy);
        const [dx, db] = [x.grad!, bias.grad!];
        const xr = x.detach().requiresGrad_(true);
        const br = bias.detach().requiresGrad_(true);
        const yr = F.linear(xr, w, br);
        yr.backward(dy);
        expect(maxRelError(y, yr)).toBeLessThan(1e-5);
        expect(maxRelError(dx, xr.grad!)).toBeLessThan(1e-5);
        expect(maxRelError(db, br.grad!)).toBeLessThan(1e-6);
      });
    });
  }

  it('passes gradcheck in float64 (x and bias)', () => {
    torch.tidy(() => {
      const state = torch.quantize4bit(torch.randn(6, 64), { quantType: 'fp4' });
      assertGradcheck((x, b) => torch.linear4bit(x, state, b, { tileBytes: 64 * 8 * 2 }), [input([4, 64]), input([6])]);
    });
  });

  it('computes in bfloat16 when x is bfloat16', () => {
    torch.tidy(() => {
      const state = torch.quantize4bit(torch.randn(32, 64));
      const x = torch.randn(5, 64).to('bfloat16');
      const y = torch.linear4bit(x, state);
      expect(y.dtype).toBe('bfloat16');
      const ref = F.linear(x.to('float32'), torch.dequantize4bit(state, { dtype: 'bfloat16' }).to('float32'));
      expect(maxRelError(y.to('float32'), ref)).toBeLessThan(2e-2);
    });
  });

  // x = I gives y = W^T and dy = I gives dx = [W; 0] exactly (one product per sum), so the tiles' own
  // dequantisation is visible bit for bit: rows of 100 (unaligned to the SIMD width), blocks of 32,
  // tiles that start mid-block, and bfloat16's column tiles.
  for (const dtype of ['float32', 'bfloat16'] as const) {
    for (const tileBytes of [16 << 20, 7 * 100 * 4, 1]) {
      it(`dequantises each tile bit for bit like dequantize4bit (${dtype}, tiles of ${tileBytes} bytes)`, () => {
        torch.tidy(() => {
          const state = torch.quantize4bit(torch.randn(40, 100), {
            quantType: 'fp4',
            blocksize: 32,
            doubleQuant: true,
          });
          const w = torch.dequantize4bit(state, { dtype });
          const x = torch.eye(100).to(dtype).requiresGrad_(true);
          const y = torch.linear4bit(x, state, null, { tileBytes });
          y.backward(torch.eye(100, 40).to(dtype));
          // A GEMM sums -0 with +0 products to +0: compare with -0 folded into +0.
          const values = (t: Tensor): number[] => Array.from(t.to('float32').data() as Float32Array, (v) => v + 0);
          expect(values(y)).toEqual(values(w.t()));
          expect(values(x.grad!.narrow(0, 0, 40))).toEqual(values(w));
        });
      });
    }
  }

  it('dequantises to the same bits with the default, avx2 and avx512 kernels (child processes)', () => {
    // The ISA is fixed once per process from VLALIGN_CPU_CAPABILITY, so each variant runs in its own
    // node process: dequantize4bit (whole blocks per thread) and the tiles of linear4bit (any start).
    const script = `
      const n = require(${JSON.stringify(nativeBinaryPath)});
      const hex = (h) => Buffer.from(n.bytes(h)).toString('hex');
      const out = [];
      for (const [rows, cols, blocksize, type] of [[33, 100, 32, 'nf4'], [1, 1001, 64, 'fp4'], [64, 256, 128, 'nf4']]) {
        const values = Float32Array.from({ length: rows * cols }, (_, k) => Math.sin(k * 12.9898) * (k % 61 === 0 ? 9 : 1));
        const q = n.quantize4bit(n.fromBytes(values, 6, [rows, cols]), type, blocksize, false);
        for (const dtype of [6, 15]) {
          out.push(hex(n.dequantize4bit(q[0], q[1], 0, 0, 0, q[5], blocksize, [rows, cols], dtype)));
          const x = n.to(n.eye(cols, cols, 6, 'cpu'), dtype, null, false);
          out.push(hex(n.linear4bit(x, 0, q[0], q[1], 0, 0, 0, q[5], blocksize, rows, cols, 3 * cols + 6)));
        }
      }
      process.stdout.write(JSON.stringify({ isa: n.rowKernelIsa(), out }));
    `;
    const run = (isa: string): { isa: string; out: string[] } => {
      const child = spawnSync(process.execPath, ['-e', script], {
        env: { ...process.env, VLALIGN_CPU_CAPABILITY: isa, OMP_NUM_THREADS: '2' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      if (child.status !== 0) throw new Error(`child (${isa}) failed: ${child.stderr}`);
      return JSON.parse(child.stdout);
    };
    const [base, ...others] = ['default', 'avx2', 'avx512'].map(run);
    expect(base!.isa).toBe('default');
    for (const other of others) expect(other.out).toEqual(base!.out);
    // And the in-process (widest) kernels agree with the forced default one.
    torch.tidy(() => {
      const values = Float32Array.from({ length: 33 * 100 }, (_, k) => Math.sin(k * 12.9898) * (k % 61 === 0 ? 9 : 1));
      const q = torch.quantize4bit(torch.tensor(values, { shape: [33, 100] }), { blocksize: 32 });
      expect(Buffer.from(native.bytes(torch.dequantize4bit(q).handle)).toString('hex')).toEqual(base!.out[0]);
    });
  });

  it('leaves nothing behind but y (the scratch tile is freed; peak is not observable here)', () => {
    torch.tidy(() => {
      const state = torch.quantize4bit(torch.randn(512, 256));
      const x = torch.randn(4, 256);
      const before = torch.memory().numBytes;
      const y = torch.linear4bit(x, state, null, { tileBytes: 32 * 256 * 4 });
      // Only y and no scratch survives; the scratch (32 rows) is far below the 512 KiB weight.
      expect(torch.memory().numBytes - before).toBe(4 * 512 * 4);
      expect(y.requiresGrad).toBe(false);
    });
  });

  it('checks shapes and dtypes with clear messages', () => {
    torch.tidy(() => {
      const state = torch.quantize4bit(torch.randn(8, 64));
      expect(() => torch.linear4bit(torch.randn(2, 63), state)).toThrow(/x must end in 64 features/);
      expect(() => torch.linear4bit(torch.randn(2, 64), state, torch.randn(7))).toThrow(/bias must be \[8\]/);
      expect(() => torch.linear4bit(torch.randn(2, 64).to('float16'), state)).toThrow(/float32, float64 or bfloat16/);
    });
  });
});
