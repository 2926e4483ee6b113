// PyTorch's bicubic resampling (F.interpolate(mode='bicubic', align_corners=False)) written as two
// matrix products, for the ViT position grid: lib/torch has no interpolate. Per axis, output index o
// samples the source at scale·(o + 0.5) − 0.5 (scale = in / out, not clamped for cubic) with Keys'
// kernel at A = −0.75 over the four neighbours, edge indices clamped: one [out, in] weight matrix.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';

const A = -0.75;
// |x| ≤ 1 and 1 < |x| < 2 pieces of the kernel, as upsample_bicubic2d evaluates them.
const near = (x: number): number => ((A + 2) * x - (A + 3)) * x * x + 1;
const far = (x: number): number => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;

/** [out · in] row-major weights; float32 index arithmetic as the CPU kernel does it. */
export function bicubicWeights(inSize: number, outSize: number): Float32Array {
  const weights = new Float32Array(outSize * inSize);
  const scale = Math.fround(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    const real = Math.fround(Math.fround(scale * Math.fround(o + 0.5)) - 0.5);
    const base = Math.floor(real);
    const t = Math.fround(real - base);
    const coefficients = [far(t + 1), near(t), near(1 - t), far(2 - t)];
    coefficients.forEach((w, k) => {
      const source = Math.min(Math.max(base - 1 + k, 0), inSize - 1);
      weights[o * inSize + source] += w;
    });
  }
  return weights;
}

/**
 * grid [h, w, D] to [outH, outW, D], interpolating over the first two axes in float32 (the
 * reference upcasts the position embedding before F.interpolate). Same size returns the input.
 */
export function resizeBicubic(grid: Tensor, outH: number, outW: number): Tensor {
  const [h, w, d] = grid.shape as [number, number, number];
  if (h === outH && w === outW) return grid;
  return torch.tidy(() => {
    const device = grid.device;
    const wy = torch.tensor(bicubicWeights(h, outH), { shape: [outH, h], device });
    const wx = torch.tensor(bicubicWeights(w, outW), { shape: [outW, w], device });
    const rows = wy.matmul(grid.float().reshape([h, w * d])).reshape([outH, w, d]);
    return wx.unsqueeze(0).matmul(rows);
  });
}
