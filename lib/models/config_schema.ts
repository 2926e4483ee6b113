// Shared helpers for reading Hugging Face config.json files: zod parsing with errors that name the
// file and key, and the JSON reader every family uses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

export type Json = Record<string, unknown>;

export function readJson(file: string): Json {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Json;
  } catch (error) {
    throw new Error(`${file}: invalid JSON: ${(error as Error).message}`);
  }
}

export const readConfig = (dir: string): Json => readJson(join(dir, 'config.json'));

/** Parses `value` with `schema`; the error names the source and each offending key. */
export function parseWith<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new Error(`${where}: invalid config: ${issues.join('; ')}`);
}

export const positiveInt = z.number().int().positive();
