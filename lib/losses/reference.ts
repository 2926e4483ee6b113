// Log-probs without a graph: reference models, the policy with adapters disabled, KTO's KL
// completions, GRPO's old policy.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { tokenStatsNoGrad, type LmHead } from './fused_linear.js';
import { disposeLayout, layoutTokens, sumBySlot, type TokenLayout } from './token_layout.js';

export interface ReferenceOptions {
  chunkSize?: number;
  temperature?: number;
  ignoreIndex?: number;
}

// The completion tokens' log-probs of hidden [R, T, H] given labels [R, T], handed with their
// layout (one row per group) to `reduce`.
function withTokenLogps(hidden: Tensor, head: LmHead, labels: Tensor, options: ReferenceOptions, reduce: (logp: Tensor, layout: TokenLayout) => Tensor): Tensor {
  return torch.tidy(() => {
    const rows = labels.shape[0]!;
    const layout = layoutTokens(labels, Array.from({ length: rows }, (_, r) => [r]), Infinity, options.ignoreIndex);
    try {
      const x = hidden.detach().reshape(-1, hidden.shape[2]!).indexSelect(0, layout.index);
      return reduce(tokenStatsNoGrad(x, head, layout.labels, options).logp, layout);
    } finally {
      disposeLayout(layout);
    }
  });
}

/** Summed completion log-probs of every row: [R]. */
export const sequenceLogps = (hidden: Tensor, head: LmHead, labels: Tensor, options: ReferenceOptions = {}): Tensor =>
  withTokenLogps(hidden, head, labels, options, (logp, layout) => sumBySlot(logp, layout.whole));

/** Per-token log-probs [R, T], 0 outside the completions (GRPO's old or reference policy). */
export const tokenLogps = (hidden: Tensor, head: LmHead, labels: Tensor, options: ReferenceOptions = {}): Tensor =>
  withTokenLogps(hidden, head, labels, options, (logp, layout) =>
    torch.zeros([labels.numel()], { dtype: logp.dtype }).indexPut_([layout.index], logp).view(labels.shape),
  );
