// Normalisation layers with Hugging Face's cast order.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { Module } from './module.js';
import type { ParamOptions } from './options.js';

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    options: ParamOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', torch.ones([dim], options));
    this.bias = (options.bias ?? true) ? this.registerParameter('bias', torch.zeros([dim], options)) : null;
  }

  forward(x: Tensor): Tensor {
    return torch.nn.functional.layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
}

/**
 * RMSNorm as Qwen2 / Llama compute it: normalise in float32, cast back to the input dtype, then
 * scale by the weight (the cast comes before the multiply, which matters in bf16).
 */
export class RMSNorm extends Module {
  readonly weight: Tensor;

  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
    options: ParamOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', torch.ones([dim], options));
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => {
      const x32 = x.dtype === 'float32' ? x : x.float();
      const normed = x32.mul(x32.square().mean(-1, true).add(this.eps).rsqrt());
      return this.weight.mul(normed.dtype === x.dtype ? normed : normed.to(x.dtype));
    });
  }
}
