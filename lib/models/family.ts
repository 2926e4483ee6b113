// A model family as the loader sees it: which config model_types it serves, how to build the
// module tree from config.json, and how checkpoint tensor names map onto module names.
import type { ParamOptions } from '../nn/index.js';
import type { Tensor } from '../torch/index.js';
import type { CausalLM } from './causal_lm.js';
import type { Json } from './config_schema.js';

export interface ModelFamily {
  readonly modelTypes: readonly string[];
  /** `dir` is the checkpoint directory when loading one (families may read its tokenizer files). */
  create(config: Json, options: ParamOptions, dir?: string): CausalLM;
  /** The module name for a checkpoint tensor name, or null for tensors the model does not use. */
  moduleName(checkpointName: string, model: CausalLM): string | null;
  /**
   * Rewrites one shard's tensors before naming, for layouts that are more than a rename (q/k/v
   * stored apart where the model has one qkv). Parts whose partners are not in `tensors` yet go to
   * `pending`; the loader hands them back with the next shard.
   */
  convertCheckpoint?(tensors: Record<string, Tensor>, model: CausalLM): CheckpointConversion;
}

export interface CheckpointConversion {
  tensors: Record<string, Tensor>;
  pending: Record<string, Tensor>;
}

/** Buffers that transformers may have saved but that the model recomputes. */
export const isRecomputedBuffer = (name: string): boolean => name.endsWith('.inv_freq');
