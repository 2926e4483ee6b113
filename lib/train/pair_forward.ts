// One forward per preference pair: the packed batch of data/pack_pairs.ts through the model once
// (the vision tower and the prompt computed once per pair), then its hidden states gathered into the
// 2P rows PreferenceLoss takes (P chosen rows, then P rejected rows). The model sees a generic
// additive mask and position ids; what makes them a pair's is decided here:
//   - query q never sees key k > q (causal) nor a padding key, and a rejected query never sees a
//     chosen key: the rejected completion reads the prompt as if the chosen one were not there;
//   - the rejected part's positions restart at the prompt's end: rejected token j has the position
//     chosen token j has. For M-RoPE (Qwen2-VL / Qwen2.5-VL) completions are text, whose position is
//     the same on the three axes, so the rope index of the packed ids (prompt, chosen, rejected all
//     numbered in a row) minus the chosen length on the rejected tokens is exactly that.
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import { dtypeMin } from '../nn/index.js';
import { InternVLChatModel, Qwen2ForCausalLM, QwenVLForConditionalGeneration, type CausalLM } from '../models/index.js';
import { SEGMENT, type PackedPairs } from '../data/pack_pairs.js';

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
  const dtype = options.dtype ?? embeddingDtype(model);
  const hidden = torch.tidy(() => {
    const device = packed.inputIds.device;
    const out = model.forward(
      {
        inputIds: packed.inputIds,
        attentionMask: packed.attentionMask,
        additiveMask: pairMask(packed.segments, dtype).to({ device }),
        positionIds: pairPositions(model, packed).to({ device }),
        pixelValues: packed.pixelValues,
        imageGridThw: packed.imageGridThw,
        imageFlags: packed.imageFlags,
      },
      { logits: false },
    );
    const [p, l, d] = out.hidden.shape as [number, number, number];
    const rows = packed.targets.shape as [number, number];
    // One gather on the flat hidden states: its backward adds each column's gradient into the one
    // forward (the last prompt token's row gets both completions' first-token gradients).
    return out.hidden
      .reshape([p * l, d])
      .indexSelect(0, packed.gatherIndex.to({ device }))
      .view([rows[0], rows[1], d]);
  });
  return { hidden, targets: packed.targets };
}

/**
 * [P, 1, L, L] additive mask (0 = attend, dtypeMin = blocked) from the segments [P, L]: causal,
 * padding keys blocked, rejected queries blind to chosen keys.
 */
export function pairMask(segments: Tensor, dtype: DType): Tensor {
  return torch.tidy(() => {
    const l = segments.shape[1]!;
    const index = torch.arange(0, l, { dtype: 'int64', device: segments.device });
    const future = index.unsqueeze(0).gt(index.unsqueeze(1)).unsqueeze(0); // [1, q, k]: k > q
    const padKey = segments.eq(SEGMENT.padding).unsqueeze(1); // [P, 1, k]
    const crossed = segments.eq(SEGMENT.rejected).unsqueeze(2).logicalAnd(segments.eq(SEGMENT.chosen).unsqueeze(1)); // [P, q, k]
    const blocked = future.logicalOr(padKey).logicalOr(crossed).unsqueeze(1);
    return torch.zeros(blocked.shape, { dtype, device: segments.device }).maskedFill(blocked, dtypeMin(dtype));
  });
}

/** The positions the model reads: M-RoPE [3, P, L] for Qwen2-VL / Qwen2.5-VL, else 1-D [P, L]. */
export function pairPositions(model: CausalLM, packed: PackedPairs): Tensor {
  if (!(model instanceof QwenVLForConditionalGeneration)) return packed.positionIds;
  return torch.tidy(() => {
    const { positionIds } = model.ropeIndex(packed.inputIds, packed.attentionMask, packed.imageGridThw);
    const chosen = torch.tensor(Int32Array.from(packed.chosenLength), { dtype: 'int64', shape: [packed.pairs, 1] });
    const shift = packed.segments
      .eq(SEGMENT.rejected)
      .long()
      .mul(chosen.to({ device: positionIds.device }));
    return positionIds.sub(shift.unsqueeze(0));
  });
}

// The dtype of the input embeddings, which the decoder's activations (and so its mask) take.
function embeddingDtype(model: CausalLM): DType {
  if (model instanceof QwenVLForConditionalGeneration) return model.model.embed_tokens.weight.dtype;
  if (model instanceof Qwen2ForCausalLM) return model.model.embed_tokens.weight.dtype;
  if (model instanceof InternVLChatModel) return model.language_model.model.embed_tokens.weight.dtype;
  return model.lmHead().weight.dtype;
}
