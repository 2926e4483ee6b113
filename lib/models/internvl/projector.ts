// From ViT patches to LLM tokens: pixel shuffle folds each r×r block of patches into one token
// (r = 1 / downsample_ratio), then `mlp1` (LayerNorm, Linear, GELU, Linear) projects it to the
// LLM width.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { Module, Linear, LayerNorm, activation, type Activation, type ParamOptions } from '../../nn/index.js';

/**
 * x [T, S, S, C] (patch rows, columns) to [T, (S/r)², r²C], as InternVLChatModel.pixel_shuffle then
 * the flatten. v2: token i2·(S/r) + j2 holds, at channel di·rC + dj·C + c, patch (r·i2 + di, r·j2 + dj)
 * (the Qwen merger's order). v1 skips the last permute, which leaves the token grid transposed.
 */
export function pixelShuffle(x: Tensor, downsampleRatio: number, version: 'v1' | 'v2'): Tensor {
  return torch.tidy(() => {
    const [t, rows, cols, c] = x.shape as [number, number, number, number];
    const r = Math.round(1 / downsampleRatio);
    if (rows % r !== 0 || cols % r !== 0)
      throw new Error(`pixelShuffle: the ${rows}×${cols} patch grid is not divisible by ${r}`);
    // The reference's steps with its names (n, w, h, c): fold column pairs into channels, swap,
    // fold row pairs, swap back (v2).
    const folded = x
      .reshape([t, rows, cols / r, c * r])
      .permute([0, 2, 1, 3])
      .reshape([t, cols / r, rows / r, c * r * r]);
    const grid = version === 'v2' ? folded.permute([0, 2, 1, 3]) : folded;
    return grid.reshape([t, -1, c * r * r]);
  });
}

/** `mlp1`: the nn.Sequential indices 0 (LayerNorm), 1 (Linear), 3 (Linear); 2 is the parameterless GELU. */
export class VisionProjector extends Module {
  readonly norm: LayerNorm;
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly act: Activation;

  constructor(inFeatures: number, outFeatures: number, act: string, options: ParamOptions) {
    super();
    // nn.LayerNorm's default eps (1e-5), not the ViT's 1e-6.
    this.norm = this.registerModule('0', new LayerNorm(inFeatures, 1e-5, options));
    this.linear1 = this.registerModule('1', new Linear(inFeatures, outFeatures, options));
    this.linear2 = this.registerModule('3', new Linear(outFeatures, outFeatures, options));
    this.act = activation(act, 'projector_hidden_act');
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => this.linear2.forward(this.act(this.linear1.forward(this.norm.forward(x)))));
  }
}
