// Log-probs without a graph: reference models, the policy with adapters disabled, KTO's KL
// completions, GRPO's old policy.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { tokenStatsNoGrad, type LmHead } from './fused_linear.js';
import { sumBySlot, type TokenLayout } from './token_layout.js';
import { checkTokenBatch, selectTokens, withTokenLayout } from './token_loss.js';

/** A reference model's last hidden states and its own LM head. */
export interface ReferenceHidden {
  hidden: Tensor; // [R, T, H] for the batch's rows
  head: LmHead;
}

export interface ReferenceOptions {
  chunkSize?: number;
  temperature?: number;
  ignoreIndex?: number;
}

// The completion tokens' log-probs of hidden [R, T, H] given targets [R, T], handed with their
// layout (one row per group) to `reduce`.
function withTokenLogps(
  hidden: Tensor,
  head: LmHead,
  targets: Tensor,
  options: ReferenceOptions,
  reduce: (logp: Tensor, layout: TokenLayout) => Tensor,
): Tensor {
  const [rows] = checkTokenBatch(hidden, targets);
  const groups = Array.from({ length: rows }, (_, r) => [r]);
  return withTokenLayout(targets, groups, Infinity, options.ignoreIndex ?? -100, (layout) =>
    reduce(tokenStatsNoGrad(selectTokens(hidden.detach(), layout), head, layout.targets, options).logp, layout),
  );
}

/** Summed completion log-probs of every row: [R]. */
export const sequenceLogps = (hidden: Tensor, head: LmHead, targets: Tensor, options: ReferenceOptions = {}): Tensor =>
  withTokenLogps(hidden, head, targets, options, (logp, layout) => sumBySlot(logp, layout.whole));

/** Per-token log-probs [R, T], 0 outside the completions (GRPO's old or reference policy). */
export const tokenLogps = (hidden: Tensor, head: LmHead, targets: Tensor, options: ReferenceOptions = {}): Tensor =>
  withTokenLogps(hidden, head, targets, options, (logp, layout) =>
    torch.zeros([targets.numel()], { dtype: logp.dtype }).indexPut_([layout.index], logp).view(targets.shape),
  );
