// One forward per preference pair: a pair is a packed group of two completions (chosen, rejected;
// lib/data/pack_pairs.ts), so it runs through lib/train/group_forward.ts: the vision tower and the
// prompt once per pair, the rejected tokens blind to the chosen ones, both completions' positions
// restarting at the prompt's end. The hidden states come back as the 2P rows PreferenceLoss takes
// (P chosen rows, then P rejected rows).
import type { DType, Tensor } from '../torch/index.js';
import type { CausalLM } from '../models/index.js';
import type { PackedPairs } from '../data/pack_pairs.js';
import { groupForward, groupMask, groupPositions } from './group_forward.js';

export interface PairForwardOptions {
  /** The activation dtype the mask is built in. Default: the model's input embedding dtype. */
  dtype?: DType;
}

export interface PairHidden {
  /** [2P, W, D] hidden states of the virtual rows (PreferenceBatch.hidden), with a graph into the forward. */
  hidden: Tensor;
  /** [2P, W] int64 (PreferenceBatch.targets): packed.targets itself, not a copy. */
  targets: Tensor;
}

/**
 * Runs `model` once on the packed pairs and returns the hidden states and targets in PreferenceLoss's
 * layout. With grad for the policy; under torch.noGrad for a reference (a frozen model, or the
 * policy with its adapters disabled), on the same packed inputs.
 */
export function pairForward(model: CausalLM, packed: PackedPairs, options: PairForwardOptions = {}): PairHidden {
  return groupForward(model, packed, options.dtype);
}

/**
 * [P, 1, L, L] additive mask (0 = attend, dtypeMin = blocked) from the segments [P, L]: causal,
 * padding keys blocked, rejected queries blind to chosen keys.
 */
export const pairMask = (segments: Tensor, dtype: DType): Tensor => groupMask(segments, dtype);

/** The positions the model reads: M-RoPE [3, P, L] for Qwen2-VL / Qwen2.5-VL, else 1-D [P, L]. */
export const pairPositions = (model: CausalLM, packed: PackedPairs): Tensor => groupPositions(model, packed);
