// The layers' math against independent formulas written with plain loops or other ops.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import {
  KVCache,
  PatchConv,
  RMSNorm,
  activation,
  applyRotary,
  attend,
  causalMask,
  cosSin,
  inverseFrequencies,
  mropeAngles,
  segmentMask,
} from '../../lib/nn/index.js';

const MIN = -3.4028234663852886e38;

describe('RMSNorm', () => {
  it('normalises in float32 and casts back before the weight (bfloat16 input)', () => {
    torch.tidy(() => {
      const norm = new RMSNorm(4, 1e-6, { dtype: 'bfloat16' });
      torch.noGrad(() => norm.weight.copy_(torch.tensor([0.5, 1.5, -2, 3])));
      const x = torch.randn([3, 4]).bfloat16();
      const x32 = x.float();
      const expected = norm.weight.mul(x32.div(x32.square().mean(-1, true).add(1e-6).sqrt()).bfloat16());
      expect(norm.forward(x).float().sub(expected.float()).abs().max().item()).toBeLessThanOrEqual(1e-2);
      expect(norm.forward(x).dtype).toBe('bfloat16');
      norm.dispose();
    });
  });
});

describe('rotary', () => {
  it('inverse frequencies are 1 / theta^(2j/d) in float32', () => {
    torch.tidy(() => {
      const f = inverseFrequencies(8, 1e6).toArray() as number[];
      f.forEach((v, j) => expect(v).toBeCloseTo(1 / 1e6 ** ((2 * j) / 8), 6));
    });
  });

  it('applyRotary equals x·cos + rotate_half(x)·sin element by element', () => {
    torch.tidy(() => {
      const x = torch.randn([2, 6], { dtype: 'float64' });
      const angles = torch.randn([2, 3], { dtype: 'float64' });
      const out = applyRotary(x, cosSin(angles, 'float64')).toArray() as number[][];
      const xs = x.toArray() as number[][];
      const as = angles.toArray() as number[][];
      for (let r = 0; r < 2; r++) {
        for (let m = 0; m < 6; m++) {
          const a = as[r]![m % 3]!;
          const rotated = m < 3 ? -xs[r]![m + 3]! : xs[r]![m - 3]!;
          expect(out[r]![m]).toBeCloseTo(xs[r]![m]! * Math.cos(a) + rotated * Math.sin(a), 12);
        }
      }
    });
  });

  it('M-RoPE takes frequency block i from axis i % 3 (spec: f < 16 temporal, < 40 height, else width)', () => {
    torch.tidy(() => {
      // Axis a holds the value a everywhere, so the mixed table shows which axis each frequency came from.
      const angles = torch.stack([0, 1, 2].map((a) => torch.full([1, 1, 64], a)));
      const mixed = mropeAngles(angles, [16, 24, 24]).flatten().toArray() as number[];
      mixed.forEach((axis, f) => expect(axis).toBe(f < 16 ? 0 : f < 40 ? 1 : 2));
    });
  });
});

describe('attention', () => {
  it('grouped-query attention equals a per-head softmax loop', () => {
    torch.tidy(() => {
      const [h, kv, q, k, d] = [4, 2, 3, 5, 2];
      const Q = torch.randn([1, h, q, d], { dtype: 'float64' });
      const K = torch.randn([1, kv, k, d], { dtype: 'float64' });
      const V = torch.randn([1, kv, k, d], { dtype: 'float64' });
      const mask = causalMask(q, k, null, 'float64');
      const out = attend(Q, K, V, { mask }).toArray() as number[][][][];
      const [qa, ka, va] = [Q, K, V].map((t) => t.toArray() as number[][][][]);
      for (let head = 0; head < h; head++) {
        const g = Math.floor(head / (h / kv));
        for (let i = 0; i < q; i++) {
          const visible = k - q + i + 1;
          const scores = [...Array(visible).keys()].map(
            (j) => qa![0]![head]![i]!.reduce((s, x, c) => s + x * ka![0]![g]![j]![c]!, 0) / Math.sqrt(d),
          );
          const max = Math.max(...scores);
          const w = scores.map((s) => Math.exp(s - max));
          const z = w.reduce((a, b) => a + b, 0);
          for (let c = 0; c < d; c++) {
            const expected = w.reduce((s, wj, j) => s + (wj / z) * va![0]![g]![j]![c]!, 0);
            expect(out[0]![head]![i]![c]).toBeCloseTo(expected, 10);
          }
        }
      }
    });
  });

  it('causal masks block the future and padding; segment masks block other segments', () => {
    torch.tidy(() => {
      const m = causalMask(2, 4, torch.tensor([[0, 1, 1, 1]]), 'float32').toArray() as number[][][][];
      expect(m[0]![0]).toEqual([
        [MIN, 0, 0, MIN],
        [MIN, 0, 0, 0],
      ]);
      const s = segmentMask([0, 1, 3], 'float32').toArray() as number[][][][];
      expect(s[0]![0]).toEqual([
        [0, MIN, MIN],
        [MIN, 0, 0],
        [MIN, 0, 0],
      ]);
    });
  });

  it('the KV cache grows past its first buffer and returns everything cached', () => {
    const cache = new KVCache();
    torch.tidy(() => {
      const all: number[] = [];
      for (let step = 0; step < 5; step++) {
        const n = step === 0 ? 60 : 3;
        const k = torch
          .arange(all.length, all.length + n)
          .float()
          .view([1, 1, n, 1]);
        for (let i = 0; i < n; i++) all.push(all.length);
        const [keys] = cache.update(0, k, k);
        cache.advance(n);
        expect(keys.flatten().toArray() as number[]).toEqual(all);
      }
      cache.selectRows(torch.tensor([0, 0]));
      const [keys] = cache.update(0, torch.zeros([2, 1, 1, 1]), torch.zeros([2, 1, 1, 1]));
      expect(keys.shape).toEqual([2, 1, 73, 1]);
    });
    cache.dispose();
  });
});

describe('layers', () => {
  it('PatchConv on flattened patches equals the convolution', () => {
    torch.tidy(() => {
      const conv = new PatchConv(3, 4, [2, 3, 3], { bias: false, dtype: 'float64' });
      torch.noGrad(() => conv.weight.normal_());
      const video = torch.randn([1, 3, 2, 6, 3], { dtype: 'float64' });
      const viaConv = conv.forward(video).flatten(2).transpose(1, 2).squeeze(0); // [2 patches, 4]
      const patches = video.view([3, 2, 2, 3, 1, 3]).permute([2, 4, 0, 1, 3, 5]).reshape([2, 54]);
      expect(conv.forwardPatches(patches).sub(viaConv).abs().max().item()).toBeLessThan(1e-12);
      conv.dispose();
    });
  });

  it('activations follow their definitions and unknown names are an error', () => {
    torch.tidy(() => {
      const x = torch.tensor([-2, -0.5, 0, 1, 3], { dtype: 'float64' });
      const quick = activation('quick_gelu')(x).toArray() as number[];
      (x.toArray() as number[]).forEach((v, i) => expect(quick[i]).toBeCloseTo(v / (1 + Math.exp(-1.702 * v)), 12));
      expect(() => activation('swiglu2')).toThrow(/unknown activation 'swiglu2'/);
    });
  });
});
