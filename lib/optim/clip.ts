// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: one norm over every
// gradient, and all gradients scaled by maxNorm / (norm + 1e-6) when that is below 1.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

/** Returns the total norm before clipping (Infinity / NaN included, as PyTorch reports it). */
export function clipGradNorm_(params: Iterable<Tensor>, maxNorm: number, normType = 2): number {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm_: expected a positive maxNorm but received ${maxNorm}`);
  return torch.tidy((): number => {
    const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (grads.length === 0) return 0;
    const norms = grads.map((g) => (normType === Infinity ? g.abs().max() : g.norm(normType)).float());
    const total = normType === Infinity ? torch.stack(norms).max() : torch.stack(norms).norm(normType);
    const coef = total.add(1e-6).reciprocal().mul(maxNorm).clamp(null, 1);
    torch.noGrad(() => grads.forEach((g) => g.mul_(coef.to(g.dtype))));
    return total.item() as number;
  });
}
