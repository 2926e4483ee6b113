// A prompt set named by a recipe block (a trainer's eval_generation_dataset): the question files
// `vlalign eval` reads (vqa, refcoco) or the prompt formats of openDataset (trl_prompt, verl,
// hf_disk). Checked when the recipe loads, so a typo fails before any model does; opened when the
// trainer is built, a missing file named by the block's path key.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { openDataset, parseDatasetSpec } from '../data/open.js';
import type { PromptRecord, RecordDataset } from '../data/records.js';
import { toCamelKeys } from '../util/case.js';
import { ConfigError, parseConfig } from '../util/config_error.js';
import { openQuestions, QUESTION_FORMATS, type QuestionFormat } from './question_data.js';

export const PROMPT_SET_FORMATS = [...QUESTION_FORMATS, 'trl_prompt', 'verl', 'hf_disk'] as const;

const QuestionSpecSchema = z.strictObject({
  format: z.enum(QUESTION_FORMATS),
  /** A jsonl file. */
  path: z.string().min(1),
  /** Where image paths resolve (default: the file's folder). */
  imageRoot: z.string().min(1).optional(),
  /** InternVL: the most tiles per image (InternVL's eval --max-num); absent: the processor's tiling. */
  maxTiles: z.number().int().positive().optional(),
  skipBadRows: z.boolean().default(false),
});

export interface PromptSetOptions {
  /** The file the block comes from (errors name it). */
  source: string;
  /** The block's key (errors name `<root>.<key>`). */
  root: string;
  /** Relative paths resolve against it (default the working directory). */
  baseDir?: string;
}

const isQuestionFormat = (format: unknown): format is QuestionFormat =>
  (QUESTION_FORMATS as readonly unknown[]).includes(format);

/** Checks the block's keys and format without reading any file. */
export function parsePromptSetSpec(block: Record<string, unknown>, options: PromptSetOptions): void {
  const { format } = block;
  if (!(PROMPT_SET_FORMATS as readonly unknown[]).includes(format)) {
    const message = `expected one of ${PROMPT_SET_FORMATS.join(', ')} (a set of prompts) but received ${JSON.stringify(format)}`;
    throw new ConfigError(options.source, [{ path: `${options.root}.format`, message }]);
  }
  if (isQuestionFormat(format)) questionSpec(block, options);
  else parseDatasetSpec(block, { source: options.source, root: options.root });
}

/** The block's prompt records (lazily read); a missing path is an error naming `<root>.path`. */
export async function openPromptSet(
  block: Record<string, unknown>,
  options: PromptSetOptions,
): Promise<RecordDataset<PromptRecord>> {
  parsePromptSetSpec(block, options);
  const base = options.baseDir ?? process.cwd();
  if (!isQuestionFormat(block.format)) {
    return (await openDataset(block, { ...options, baseDir: base })) as RecordDataset<PromptRecord>;
  }
  const spec = questionSpec(block, options);
  const file = resolve(base, spec.path);
  if (!existsSync(file)) {
    const message = `${file} does not exist (relative paths resolve against ${base})`;
    throw new ConfigError(options.source, [{ path: `${options.root}.path`, message }]);
  }
  return openQuestions(file, spec.format, {
    imageRoot: spec.imageRoot === undefined ? undefined : resolve(base, spec.imageRoot),
    skipBadRows: spec.skipBadRows,
    maxTiles: spec.maxTiles,
  });
}

function questionSpec(block: Record<string, unknown>, options: PromptSetOptions) {
  const snake = Object.keys(block).some((k) => k.includes('_'));
  return parseConfig(QuestionSpecSchema, toCamelKeys(block), options.source, {
    root: options.root,
    ...(snake ? { keyCase: 'snake' as const } : {}),
  });
}
