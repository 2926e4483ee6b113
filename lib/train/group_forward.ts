// One forward per packed group (data/pack_groups.ts): a prompt and several of its completions in
// one row, through the model once (the vision tower and the prompt computed once per group), then
// the hidden states gathered into one virtual row per completion, the layout the token losses take.
// The model sees a generic additive mask and position ids; what makes them a group's is decided here:
//   - query q never sees key k > q (causal) nor a padding key, and a completion's query never sees
//     another completion's key: each completion reads the prompt as if it were alone;
//   - every completion's positions restart at the prompt's end. For M-RoPE (Qwen2-VL / Qwen2.5-VL)
//     completions are text, whose position is the same on the three axes, so the rope index of the
//     packed ids (all numbered in a row) minus the earlier completions' lengths is exactly that.
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import { dtypeMin } from '../nn/index.js';
import { InternVLChatModel, Qwen2ForCausalLM, QwenVLForConditionalGeneration, type CausalLM } from '../models/index.js';
import { GROUP_SEGMENT, type GroupLayout } from '../data/pack_groups.js';

/** A packed layout with the groups' vision inputs (each group's images once, in its prompt). */
export interface PackedGroups
  extends Pick<GroupLayout, 'inputIds' | 'attentionMask' | 'segments' | 'positionIds' | 'positionShift'> {
  gatherIndex: Tensor;
  targets: Tensor;
  pixelValues: Tensor | null;
  imageGridThw: Tensor | null;
  imageFlags: Tensor | null;
}

export interface GroupHidden {
  /** [V, W, D] hidden states of the virtual rows, with a graph into the forward. */
  hidden: Tensor;
  /** [V, W] int64: packed.targets itself, not a copy. */
  targets: Tensor;
}

/**
 * Runs `model` once on the packed groups and returns the virtual rows' hidden states and targets.
 * With grad for the policy; under torch.noGrad for a reference or an old policy.
 */
export function groupForward(model: CausalLM, packed: PackedGroups, dtype?: DType): GroupHidden {
  const maskDtype = dtype ?? embeddingDtype(model);
  const hidden = torch.tidy(() => {
    const device = packed.inputIds.device;
    const out = model.forward(
      {
        inputIds: packed.inputIds,
        attentionMask: packed.attentionMask,
        additiveMask: groupMask(packed.segments, maskDtype).to({ device }),
        positionIds: groupPositions(model, packed).to({ device }),
        pixelValues: packed.pixelValues,
        imageGridThw: packed.imageGridThw,
        imageFlags: packed.imageFlags,
      },
      { logits: false },
    );
    const [r, l, d] = out.hidden.shape as [number, number, number];
    const [rows, width] = packed.targets.shape as [number, number];
    // One gather on the flat hidden states: its backward adds each column's gradient into the one
    // forward (the last prompt token's row gets every completion's first-token gradient).
    return out.hidden
      .reshape([r * l, d])
      .indexSelect(0, packed.gatherIndex.to({ device }))
      .view([rows, width, d]);
  });
  return { hidden, targets: packed.targets };
}

/**
 * [R, 1, L, L] additive mask (0 = attend, dtypeMin = blocked) from the segments [R, L]: causal,
 * padding keys blocked, each completion's queries blind to the other completions' keys.
 */
export function groupMask(segments: Tensor, dtype: DType): Tensor {
  return torch.tidy(() => {
    const l = segments.shape[1]!;
    const index = torch.arange(0, l, { dtype: 'int64', device: segments.device });
    const future = index.unsqueeze(0).gt(index.unsqueeze(1)).unsqueeze(0); // [1, q, k]: k > q
    const padKey = segments.eq(GROUP_SEGMENT.padding).unsqueeze(1); // [R, 1, k]
    const completion = segments.ge(GROUP_SEGMENT.firstCompletion);
    const otherCompletion = completion
      .unsqueeze(2)
      .logicalAnd(completion.unsqueeze(1))
      .logicalAnd(segments.unsqueeze(2).ne(segments.unsqueeze(1))); // [R, q, k]
    const blocked = future.logicalOr(padKey).logicalOr(otherCompletion).unsqueeze(1);
    return torch.zeros(blocked.shape, { dtype, device: segments.device }).maskedFill(blocked, dtypeMin(dtype));
  });
}

/** The positions the model reads: M-RoPE [3, R, L] for Qwen2-VL / Qwen2.5-VL, else 1-D [R, L]. */
export function groupPositions(model: CausalLM, packed: PackedGroups): Tensor {
  if (!(model instanceof QwenVLForConditionalGeneration)) return packed.positionIds;
  return torch.tidy(() => {
    const { positionIds } = model.ropeIndex(packed.inputIds, packed.attentionMask, packed.imageGridThw);
    return positionIds.sub(packed.positionShift.to({ device: positionIds.device }).unsqueeze(0));
  });
}

/** The dtype of the input embeddings, which the decoder's activations (and so its mask) take. */
export function embeddingDtype(model: CausalLM): DType {
  if (model instanceof QwenVLForConditionalGeneration) return model.model.embed_tokens.weight.dtype;
  if (model instanceof Qwen2ForCausalLM) return model.model.embed_tokens.weight.dtype;
  if (model instanceof InternVLChatModel) return model.language_model.model.embed_tokens.weight.dtype;
  return model.lmHead().weight.dtype;
}
