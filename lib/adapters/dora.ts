// DoRA (Liu et al. 2024) as a LoRA variant, as PEFT's DoraLinearVariant: a trainable magnitude m [out]
// rescales each output row of W0 + s·BA to m / ‖W0 + s·BA‖_row. Over a 4-bit base the norm uses the
// dequantised weight (the base weight's dense form).
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import type { BaseWeight } from './base_weight.js';
import { cast, isHalf } from './dtype.js';
import { PLAIN_LORA, type LoraStep, type LoraVariant } from './variant.js';

const F = torch.nn.functional;

/** DoRA's init: m = ‖W0 + s·BA‖_row in the adapter dtype (‖W0‖_row when B starts at zero). */
export function doraMagnitude(base: BaseWeight, deltaWeight: () => Tensor, dtype: DType): Tensor {
  return torch.noGrad(() => torch.tidy(() => cast(rowNorms(base.dense(), deltaWeight()), dtype)));
}

export class DoraVariant implements LoraVariant {
  // The row norms a merge divided by; unmerge needs them, the merged weight no longer has them.
  #mergeNorm: Tensor | null = null;

  /** `magnitude`: the layer's registered lora_magnitude_vector. */
  constructor(readonly magnitude: Tensor) {}

  /**
   * (g − 1)·W0x + g·s·BAx with g = m / ‖W0 + s·BA‖_row, the norm detached (DoRA §4.3), so base(x)
   * plus this is g·(W0x + s·BAx) + bias. With active dropout W0x is recomputed on dropout(x), whose
   * LoRA branch it then matches (PEFT's DoraLinearVariant).
   */
  forward({ result, input, lora, dropped, scaling, base, deltaWeight }: LoraStep): Tensor {
    const weight = base.dense(input.dtype);
    const norm = torch.noGrad(() => rowNorms(weight, cast(deltaWeight(), input.dtype)));
    const g = this.magnitude.div(norm);
    const w0x = dropped ? F.linear(input, weight) : base.bias === null ? result : result.sub(base.bias);
    return g.sub(1).mul(w0x).add(g.mul(lora).mul(scaling));
  }

  /** W ← m / ‖W0 + ΔW‖_row · (W0 + ΔW). */
  merge(weight: Tensor, delta: Tensor): Tensor {
    const norm = rowNorms(weight, delta).keep();
    const merged = PLAIN_LORA.merge(weight, delta).mul(this.#rowScale(norm));
    this.#mergeNorm = norm;
    return merged;
  }

  unmerge(merged: Tensor, delta: Tensor): Tensor {
    return PLAIN_LORA.unmerge(merged.div(this.#rowScale(this.#mergeNorm!)), delta);
  }

  forgetMerge(): void {
    this.#mergeNorm?.dispose();
    this.#mergeNorm = null;
  }

  // m / norm as a column [out, 1], scaling each row of a weight [out, in].
  #rowScale(norm: Tensor): Tensor {
    return this.magnitude.div(norm).unsqueeze(1);
  }
}

/** ‖W + delta‖ per output row [out], accumulated in float32 for half-precision weights. */
function rowNorms(weight: Tensor, delta: Tensor): Tensor {
  return torch.tidy(() => {
    const w = isHalf(weight.dtype) ? weight.float().add(delta.float()) : weight.add(delta);
    return cast(w.norm(2, 1), weight.dtype);
  });
}
