// Weight initialisation as Hugging Face's `_init_weights` does it for these families: normal(0, std)
// for Linear and Embedding weights (and conv kernels), zero biases, unit norm weights. Modules with
// parameters of their own (class tokens, layer scales) initialise them in `resetParameters(std)`.
import * as torch from '../torch/index.js';
import { Embedding, Linear, PatchConv } from './layers.js';
import type { Module } from './module.js';
import { LayerNorm, RMSNorm } from './norm.js';

export function initWeights(model: Module, std = 0.02): void {
  torch.noGrad(() => {
    for (const [, m] of model.namedModules()) {
      if (m instanceof Linear || m instanceof PatchConv) {
        m.weight.normal_(0, std);
        m.bias?.zero_();
      } else if (m instanceof Embedding) m.weight.normal_(0, std);
      else if (m instanceof LayerNorm) {
        m.weight.fill_(1);
        m.bias?.zero_();
      } else if (m instanceof RMSNorm) m.weight.fill_(1);
      else if (hasReset(m)) m.resetParameters(std);
    }
  });
}

const hasReset = (m: Module): m is Module & { resetParameters(std: number): void } =>
  typeof (m as { resetParameters?: unknown }).resetParameters === 'function';
