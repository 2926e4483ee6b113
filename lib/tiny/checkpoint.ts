// Tiny random checkpoints in the real Hugging Face directory format (config.json, model.safetensors,
// tokenizer and processor files), for tests, benchmarks and demos: the same loading, processing and
// training code paths as a 7B checkpoint, in a few hundred kilobytes.
import * as torch from '../torch/index.js';
import { initWeights } from '../nn/index.js';
import { savePretrained } from '../models/index.js';
import { familyOf } from '../models/registry.js';
import { tinyConfig } from './configs.js';
import { writeTinyTokenizer, type TinyFamily } from './tokenizer.js';

export const TINY_FAMILIES: readonly TinyFamily[] = ['qwen2_vl', 'qwen2_5_vl', 'internvl'];

export interface TinyOptions {
  /** Seeds the weights (default 0): the same seed writes the same files. */
  seed?: number;
  /**
   * Standard deviation of the random weights. The default, 0.25, gives logits with a spread of a
   * few units, so greedy decoding has clear winners instead of near-ties.
   */
  std?: number;
}

export async function writeTinyCheckpoint(dir: string, family: TinyFamily, options: TinyOptions = {}): Promise<void> {
  const config = tinyConfig(family);
  torch.manualSeed(options.seed ?? 0);
  const model = familyOf(config.model_type, `tiny ${family}`).create(config, { dtype: 'float32' });
  try {
    initWeights(model, options.std ?? 0.25);
    await savePretrained(model, dir);
  } finally {
    model.dispose();
  }
  await writeTinyTokenizer(dir, family);
}
