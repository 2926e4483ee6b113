// Log-probs of whole sequences without a graph: reference models, the policy with adapters
// disabled, KTO's KL completions, GRPO's old policy.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { tokenStatsNoGrad, type LmHead } from './fused_linear.js';
import { disposeLayout, layoutTokens, sumBySlot } from './token_layout.js';

/** Summed completion log-probs of every row of hidden [R, T, H] given labels [R, T]: [R]. */
export function sequenceLogps(hidden: Tensor, head: LmHead, labels: Tensor, options: { chunkSize?: number; temperature?: number; ignoreIndex?: number } = {}): Tensor {
  return torch.tidy(() => {
    const rows = labels.shape[0]!;
    const layout = layoutTokens(labels, Array.from({ length: rows }, (_, r) => [r]), Infinity, options.ignoreIndex);
    try {
      const x = hidden.detach().reshape(-1, hidden.shape[2]!).indexSelect(0, layout.index);
      const { logp } = tokenStatsNoGrad(x, head, layout.labels, options);
      return sumBySlot(logp, layout.whole);
    } finally {
      disposeLayout(layout);
    }
  });
}


/** Per-token log-probs [R, T] (0 outside the completions), e.g. GRPO's old or reference policy. */
export function tokenLogps(hidden: Tensor, head: LmHead, labels: Tensor, options: { chunkSize?: number; temperature?: number; ignoreIndex?: number } = {}): Tensor {
  return torch.tidy(() => {
    const rows = labels.shape[0]!;
    const layout = layoutTokens(labels, Array.from({ length: rows }, (_, r) => [r]), Infinity, options.ignoreIndex);
    try {
      const x = hidden.detach().reshape(-1, hidden.shape[2]!).indexSelect(0, layout.index);
      const { logp } = tokenStatsNoGrad(x, head, layout.labels, options);
      return torch.zeros([labels.numel()], { dtype: logp.dtype }).indexPut_([layout.index], logp).view(labels.shape);
    } finally {
      disposeLayout(layout);
    }
  });
}
