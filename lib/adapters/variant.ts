// The hooks through which a LoRA variant changes what the layer computes (PEFT's LoraVariant in
// lora/layer.py, which DoRA fills in lora/variants.py). Plain LoRA is the variant that adds s·BAx and
// s·BA; LoraLinear runs whichever it holds, so its forward, merge and unmerge are written once.
import type { Tensor } from '../torch/index.js';
import type { BaseWeight } from './base_weight.js';

/** What one forward gives a variant. */
export interface LoraStep {
  /** base(x): the wrapped layer's output, bias included. */
  result: Tensor;
  /** x in the adapter dtype, after dropout when it is active. */
  input: Tensor;
  /** B(A(input)), unscaled. */
  lora: Tensor;
  /** Whether dropout was applied to `input`. */
  dropped: boolean;
  scaling: number;
  base: BaseWeight;
  /** s·BA [out, in] in the base weight's dense dtype. */
  deltaWeight(): Tensor;
}

export interface LoraVariant {
  /** The variant's trainable magnitude (DoRA's m [out]); null when it has none. */
  readonly magnitude: Tensor | null;
  /** What the adapter adds to base(x). */
  forward(step: LoraStep): Tensor;
  /** The merged weight, from the dense base weight and delta = s·BA. */
  merge(weight: Tensor, delta: Tensor): Tensor;
  /** The dense base weight again, from the merged one and the same delta. */
  unmerge(merged: Tensor, delta: Tensor): Tensor;
  /** Frees what merge() kept for unmerge() (after unmerge, a refused merge, release). */
  forgetMerge(): void;
}

/** Plain LoRA: y = base(x) + s·B(A(x)); merged, W = W0 + s·BA. */
export const PLAIN_LORA: LoraVariant = {
  magnitude: null,
  forward: ({ lora, scaling }) => lora.mul(scaling),
  merge: (weight, delta) => weight.add(delta),
  unmerge: (merged, delta) => merged.sub(delta),
  forgetMerge: () => {},
};
