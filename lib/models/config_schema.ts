// Shared pieces for reading Hugging Face config.json files; parsing goes through lib/util's
// parseConfig (a ConfigError naming the file and every offending key).
import { join } from 'node:path';
import { z } from 'zod';
import { readJsonObject, type JsonObject } from '../util/json_file.js';

export type Json = JsonObject;

export const readConfig = (dir: string): Json => readJsonObject(join(dir, 'config.json'));

export const positiveInt = z.number().int().positive();

/**
 * Upper bounds on the sizes a config may declare, checked before anything is allocated, so a
 * corrupt or hostile file (num_hidden_layers: 2147483648) fails at once instead of hanging. Each is
 * far above released models, with margin: Llama-3.1-405B has 126 layers, hidden 16384, 128 heads;
 * Qwen2.5-72B intermediate 29568; the largest vocabularies ~262k (Gemma 3); context windows up to
 * 10M (Llama 4 Scout); InternViT-6B 48 layers, width 3200; images are at most a few thousand pixels.
 */
export const SIZE_BOUNDS = {
  layers: 1024,
  hidden: 65536,
  intermediate: 1 << 20,
  heads: 1024,
  vocab: 1 << 24,
  positions: 1 << 27,
  imageSide: 1 << 16,
  patch: 1024,
  channels: 64,
} as const;

/** A positive integer at most `max`; the error names the value and the bound. */
export const boundedInt = (max: number) =>
  z
    .number()
    .int()
    .positive()
    .max(max, { error: (issue) => `${String(issue.input)} exceeds the sane bound ${max}` });

/** A token id: a non-negative integer below the vocabulary bound. */
export const tokenId = z
  .number()
  .int()
  .min(0)
  .max(SIZE_BOUNDS.vocab - 1, {
    error: (issue) => `token id ${String(issue.input)} exceeds the sane bound ${SIZE_BOUNDS.vocab - 1}`,
  });
