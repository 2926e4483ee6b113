// Prompt rows repeated as TRL's RepeatSampler lays a GRPO batch out: row b becomes rows
// b·G .. b·G + G − 1, each with its own copy of the prompt's images. Rollouts do not need this
// (they prefill each prompt once); the policy's forward over prompt + completion does, one row per
// completion, and so does any comparison with TRL's repeated-prompt generation.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { InternVLChatModel, QwenVLForConditionalGeneration, type CausalLM, type ModelInputs } from '../models/index.js';

/** Per prompt row, the rows of each vision tensor its images own: [first, count]. */
interface VisionRows {
  pixels: Array<[number, number]>;
  /** Qwen: image_grid_thw rows; InternVL: image_flags rows (one per tile, like pixels). */
  meta: Array<[number, number]>;
}

export function repeatPrompts(model: CausalLM, inputs: ModelInputs, times: number): ModelInputs {
  if (!Number.isInteger(times) || times < 1) {
    throw new RangeError(`Expected a positive integer for times but received ${times}`);
  }
  const rows = inputs.inputIds.shape[0]!;
  return torch.tidy(() => {
    const index = repeatedIndex(rows, times, inputs.inputIds.device);
    const out: ModelInputs = {
      inputIds: inputs.inputIds.indexSelect(0, index),
      attentionMask: inputs.attentionMask?.indexSelect(0, index) ?? null,
    };
    if (!inputs.pixelValues) return out;
    const spans = visionRows(model, inputs);
    const pick = (t: Tensor, owned: Array<[number, number]>) => t.indexSelect(0, spanIndex(owned, times, t.device));
    out.pixelValues = pick(inputs.pixelValues, spans.pixels);
    if (inputs.imageGridThw) out.imageGridThw = pick(inputs.imageGridThw, spans.meta);
    if (inputs.imageFlags) out.imageFlags = pick(inputs.imageFlags, spans.meta);
    return out;
  });
}

/** int64 [rows · times]: 0, 0, .., 1, 1, .. (repeat_interleave). */
export function repeatedIndex(rows: number, times: number, device: Tensor['device'] = 'cpu'): Tensor {
  return torch.arange(0, rows, { dtype: 'int64', device }).repeatInterleave(times);
}

// Each prompt row's span repeated `times`, rows in order.
function spanIndex(spans: Array<[number, number]>, times: number, device: Tensor['device']): Tensor {
  const index: number[] = [];
  for (const [first, count] of spans)
    for (let k = 0; k < times; k++) for (let i = 0; i < count; i++) index.push(first + i);
  return torch.tensor(Int32Array.from(index), { dtype: 'int64', device });
}

function visionRows(model: CausalLM, inputs: ModelInputs): VisionRows {
  const placeholders = (id: number): number[] => (inputs.inputIds.eq(id).sum(1).toArray() as number[]).map(Number);
  if (model instanceof QwenVLForConditionalGeneration) {
    if (!inputs.imageGridThw) throw new Error(`repeatPrompts: ${model.modelType} pixelValues need imageGridThw`);
    return qwenRows(
      placeholders(model.tokens.imageTokenId),
      inputs.imageGridThw.toArray() as number[][],
      model.tokens.spatialMergeSize,
    );
  }
  if (model instanceof InternVLChatModel) {
    if (model.imgContextTokenId === null) throw new Error('repeatPrompts: the InternVL model has no imgContextTokenId');
    const { imageSize, patchSize } = model.config.vision;
    const perTile = Math.round(((imageSize / patchSize) * model.config.downsampleRatio) ** 2);
    if (inputs.imageFlags && (inputs.imageFlags.eq(1).logicalNot().any().item() as boolean)) {
      throw new Error('repeatPrompts: image_flags drop tiles; prompt batches for generation keep every tile');
    }
    return internVLRows(placeholders(model.imgContextTokenId), perTile, inputs.pixelValues!.shape[0]!);
  }
  throw new Error(`repeatPrompts: ${model.modelType} takes no images, but pixelValues were given`);
}

// Qwen: image i has t·h·w patch rows and t·h·w / merge² placeholder tokens; images follow rows.
function qwenRows(tokens: number[], grids: number[][], merge: number): VisionRows {
  const out: VisionRows = { pixels: [], meta: [] };
  let image = 0;
  let patch = 0;
  tokens.forEach((want, row) => {
    const [firstImage, firstPatch] = [image, patch];
    let got = 0;
    while (got < want && image < grids.length) {
      const [t, h, w] = grids[image++]!;
      patch += t! * h! * w!;
      got += (t! * h! * w!) / merge ** 2;
    }
    if (got !== want) {
      throw new Error(`repeatPrompts: prompt row ${row} has ${want} image tokens but its images give ${got}`);
    }
    out.pixels.push([firstPatch, patch - firstPatch]);
    out.meta.push([firstImage, image - firstImage]);
  });
  if (image !== grids.length) {
    throw new Error(`repeatPrompts: image_grid_thw has ${grids.length} images; the prompts place ${image}`);
  }
  return out;
}

// InternVL: every tile gives `perTile` <IMG_CONTEXT> tokens; tiles follow rows.
function internVLRows(tokens: number[], perTile: number, tiles: number): VisionRows {
  const out: VisionRows = { pixels: [], meta: [] };
  let tile = 0;
  tokens.forEach((count, row) => {
    if (count % perTile !== 0) {
      throw new Error(
        `repeatPrompts: prompt row ${row} has ${count} <IMG_CONTEXT> tokens, not a multiple of ${perTile}`,
      );
    }
    out.pixels.push([tile, count / perTile]);
    tile += count / perTile;
  });
  if (tile !== tiles) throw new Error(`repeatPrompts: pixelValues has ${tiles} tiles; the prompts place ${tile}`);
  out.meta = out.pixels;
  return out;
}
