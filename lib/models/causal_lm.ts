// What every model family offers trainers and generation: one forward from token ids (plus the
// family's image tensors) to final hidden states and, optionally, logits.
import type { Tensor } from '../torch/index.js';
import { causalMask, type KVCache, type LmHead, type Module } from '../nn/index.js';
import type { TextConfig } from './qwen2/config.js';
import type { Json } from './config_schema.js';

export interface ModelInputs {
  /** [B, L] int64 token ids. */
  inputIds: Tensor;
  /** [B, K] 1 for real tokens, 0 for padding; K counts cached tokens too during decoding. */
  attentionMask?: Tensor | null;
  /** Overrides the positions the model would derive ([B, L], or [3, B, L] for M-RoPE). */
  positionIds?: Tensor;
  /**
   * [B, 1, L, L] additive mask in the activation dtype (0 = attend, nn.dtypeMin = blocked) that
   * replaces the causal + padding mask the model would build from attentionMask: any attention
   * pattern over the L tokens (packed sequences). Only without a KV cache.
   */
  additiveMask?: Tensor;
  /** Qwen: [N, C·T·P·P] patches; InternVL: [tiles, 3, S, S]. null / absent: no images. */
  pixelValues?: Tensor | null;
  /** Qwen: [images, 3] (t, h, w) patch grids. */
  imageGridThw?: Tensor | null;
  /** InternVL: [tiles] or [tiles, 1], 0 drops a tile. */
  imageFlags?: Tensor | null;
}

export interface ForwardOptions {
  cache?: KVCache;
  outputHiddenStates?: boolean;
  /** Compute lm_head logits (default true); trainers with fused losses only need `hidden`. */
  logits?: boolean;
}

export interface CausalLMOutput {
  /** [B, L, V] */
  logits?: Tensor;
  /** Final-norm hidden states [B, L, D]. */
  hidden: Tensor;
  hiddenStates?: Tensor[];
}

export interface CausalLM extends Module {
  readonly modelType: string;
  readonly textConfig: TextConfig;
  /** The config.json content, written back by savePretrained. */
  readonly rawConfig: Json;
  forward(inputs: ModelInputs, options?: ForwardOptions): CausalLMOutput;
  /** The output projection as the losses take it: lm_head (the input embedding when tied). */
  lmHead(): LmHead;
  /** lmHead().weight [V, D]: how adapters and quantisation find the output layer. */
  outputWeight(): Tensor;
  /** Positions of the next `steps` tokens during cached decoding, shaped as this model expects. */
  decodePositions(cache: KVCache | null, attentionMask: Tensor, steps: number): Tensor;
}

/**
 * The decoder's additive mask [B, 1, Q, past + Q]: `inputs.additiveMask` when given (checked against
 * the batch and the activation dtype), else the causal + padding mask from `attentionMask`.
 */
export function decoderMask(
  inputs: Pick<ModelInputs, 'attentionMask' | 'additiveMask'>,
  embeds: Tensor,
  cache: KVCache | undefined,
  where: string,
): Tensor {
  const [b, q] = embeds.shape as [number, number];
  const past = cache?.length ?? 0;
  const given = inputs.additiveMask;
  if (given === undefined) return causalMask(q, past + q, inputs.attentionMask ?? null, embeds.dtype, embeds.device);
  // A cached step would need the mask's rows for the new tokens over every cached key: the caller
  // owns the whole pattern, so it passes whole sequences.
  if (cache !== undefined) {
    throw new Error(`${where}: additiveMask replaces the mask of a whole sequence; it cannot be used with a KV cache`);
  }
  const shape = [b, 1, q, q];
  if (given.shape.length !== 4 || given.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(`${where}: expected additiveMask of shape [${shape}] but received [${given.shape}]`);
  }
  if (given.dtype !== embeds.dtype) {
    throw new TypeError(
      `${where}: expected additiveMask in the activation dtype ${embeds.dtype} but received ${given.dtype}`,
    );
  }
  return given;
}
