// A model family as the loader sees it: which config model_types it serves, how to build the
// module tree from config.json, and how checkpoint tensor names map onto module names.
import type { ParamOptions } from '../nn/index.js';
import type { CausalLM } from './causal_lm.js';
import type { Json } from './config_schema.js';

export interface ModelFamily {
  readonly modelTypes: readonly string[];
  create(config: Json, options: ParamOptions): CausalLM;
  /** The module name for a checkpoint tensor name, or null for tensors the model does not use. */
  moduleName(checkpointName: string, model: CausalLM): string | null;
}

/** Buffers that transformers may have saved but that the model recomputes. */
export const isRecomputedBuffer = (name: string): boolean => name.endsWith('.inv_freq');
