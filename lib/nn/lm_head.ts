// The output projection as the losses and generation read it: logits = hidden Wᵀ + b. Models hand
// it out through `lmHead()` (the embedding weight when tied), a reference model its own.
import type { Tensor } from '../torch/index.js';

export interface LmHead {
  weight: Tensor; // [V, H]
  bias?: Tensor | null; // [V]
}
