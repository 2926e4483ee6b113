// The QLoRA linear layer: forward and dx equal a linear layer on the dequantised weight (up to
// summation order), float64 gradcheck, bias gradient, tiling of any size, and no full-weight copy.
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
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
