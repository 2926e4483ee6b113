// Shared pieces for reading Hugging Face config.json files; parsing goes through lib/util's
// parseConfig (a ConfigError naming the file and every offending key).
import { join } from 'node:path';
import { z } from 'zod';
import { readJsonObject, type JsonObject } from '../util/json_file.js';

export type Json = JsonObject;

export const readConfig = (dir: string): Json => readJsonObject(join(dir, 'config.json'));

export const positiveInt = z.number().int().positive();
