// One entry point from a recipe's dataset block to a RecordDataset: the block names the format and
// its path (relative paths resolve against the recipe's folder), and the options of that format's
// reader. The block is strict: an unknown key is an error that suggests the nearest valid name, and
// an option another format owns (split on mmpr, ...) is refused rather than ignored.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { camelToSnake, toCamelKeys } from '../util/case.js';
import { ConfigError, configProblems, formatPath, type ConfigProblem, type IssueFormat } from '../util/config_error.js';
import { didYouMean } from '../util/nearest.js';
import { openHfDisk } from './hf_disk.js';
import { openMmpr } from './mmpr.js';
import type { RecordDataset } from './records.js';
import { openTrl } from './trl.js';
import { openTrlPrompt } from './trl_prompt.js';
import { openVerl } from './verl.js';
import { openInternVlSft, openPlainDpo, openVlQuery } from './vlrlhf.js';

export const DATASET_FORMATS = [
  'mmpr',
  'trl',
  'plain_dpo',
  'vlquery_json',
  'internvl_sft',
  'verl',
  'hf_disk',
  'trl_prompt',
] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

// Which formats each optional key belongs to (format, path and skipBadRows belong to all).
const OWNERS: Record<string, readonly DatasetFormat[]> = {
  split: ['trl', 'trl_prompt', 'hf_disk'],
  kind: ['trl'],
  imageRoot: ['trl', 'plain_dpo', 'vlquery_json', 'internvl_sft', 'verl', 'hf_disk', 'trl_prompt'],
  maxDynamicPatch: ['mmpr', 'internvl_sft', 'verl'],
  seed: ['mmpr'],
};

export const DatasetSpecSchema = z
  .strictObject({
    format: z.enum(DATASET_FORMATS),
    /**
     * mmpr: meta.json; trl / trl_prompt: a parquet / jsonl file or a folder of shards; VL-RLHF / InternVL SFT: a
     * json or jsonl file; verl: a parquet file or a folder of them; hf_disk: a `save_to_disk` folder.
     */
    path: z.string().min(1),
    /** trl / trl_prompt / hf_disk: `train`, `test[:10%]`, ... (default train). */
    split: z.string().min(1).optional(),
    /** Where image paths resolve (trl / trl_prompt / verl / hf_disk default: the data folder; the others: the data file's folder). */
    imageRoot: z.string().min(1).optional(),
    /** mmpr / internvl_sft / verl: InternVL's max_dynamic_patch (default 12, verl: none; a meta.json entry's own wins). */
    maxDynamicPatch: z.number().int().positive().optional(),
    /** mmpr: seeds repeat_time's subsets and each dataset's shuffle (default 0). */
    seed: z.number().int().optional(),
    /** trl: preference | unpaired | sft (default: from the columns). */
    kind: z.enum(['preference', 'unpaired', 'sft']).optional(),
    /** Skip and count bad rows instead of failing on the first (default false). */
    skipBadRows: z.boolean().default(false),
  })
  .superRefine((spec, context) => {
    for (const [key, formats] of Object.entries(OWNERS)) {
      if ((spec as Record<string, unknown>)[key] === undefined || formats.includes(spec.format)) continue;
      const message = `applies to format ${formats.join(' / ')}, not ${spec.format}`;
      context.addIssue({ code: 'custom', path: [key], message });
    }
  });

export type DatasetSpec = z.output<typeof DatasetSpecSchema>;
export type DatasetSpecInput = z.input<typeof DatasetSpecSchema>;

export interface DatasetSpecOptions {
  /** Names the block in errors, e.g. the recipe file (default 'dataset'). */
  source?: string;
  /** The block's key path, prefixed to every problem's path (default 'dataset'). */
  root?: string;
}

/**
 * The block checked: camelCase or snake_case keys (a recipe's `image_root`), errors naming keys as
 * they were written, an unknown key with the nearest valid name.
 */
export function parseDatasetSpec(value: unknown, options: DatasetSpecOptions = {}): DatasetSpec {
  const snake =
    typeof value === 'object' && value !== null && Object.keys(value).some((k) => k.includes('_') && k !== '_');
  const format: IssueFormat = { root: options.root ?? 'dataset', ...(snake ? { keyCase: 'snake' } : {}) };
  const result = DatasetSpecSchema.safeParse(toCamelKeys(value));
  if (result.success) return result.data;
  const known = Object.keys(DatasetSpecSchema.shape).map((k) => (snake ? camelToSnake(k) : k));
  const problems = result.error.issues.flatMap((issue): ConfigProblem[] => {
    if (issue.code !== 'unrecognized_keys') return configProblems([issue], format);
    return issue.keys.map((key) => {
      const written = snake ? camelToSnake(key) : key;
      return { path: formatPath([...issue.path, key], format), message: `unknown key${didYouMean(written, known)}` };
    });
  });
  throw new ConfigError(options.source ?? 'dataset', problems);
}

export interface OpenDatasetOptions extends DatasetSpecOptions {
  /** Relative paths resolve against it: the recipe file's folder (default the working directory). */
  baseDir?: string;
}

/** Opens the dataset a recipe's dataset block describes. */
export async function openDataset(
  spec: DatasetSpecInput | Record<string, unknown>,
  options: OpenDatasetOptions = {},
): Promise<RecordDataset> {
  const checked = parseDatasetSpec(spec, options);
  const base = options.baseDir ?? process.cwd();
  const path = resolve(base, checked.path);
  const root = options.root ?? 'dataset';
  if (!existsSync(path)) {
    const problem = {
      path: `${root}.path`,
      message: `${path} does not exist (relative paths resolve against ${base})`,
    };
    throw new ConfigError(options.source ?? 'dataset', [problem]);
  }
  const imageRoot = checked.imageRoot === undefined ? undefined : resolve(base, checked.imageRoot);
  const skipBadRows = checked.skipBadRows;
  switch (checked.format) {
    case 'mmpr':
      return openMmpr(path, { maxDynamicPatch: checked.maxDynamicPatch, seed: checked.seed, skipBadRows });
    case 'trl':
      return openTrl(path, { split: checked.split, kind: checked.kind, imageRoot, skipBadRows });
    case 'plain_dpo':
      return openPlainDpo(path, { imageRoot: imageRoot ?? dirname(path), skipBadRows });
    case 'vlquery_json':
      return openVlQuery(path, { imageRoot: imageRoot ?? dirname(path), skipBadRows });
    case 'internvl_sft':
      return openInternVlSft(path, {
        imageRoot: imageRoot ?? dirname(path),
        maxDynamicPatch: checked.maxDynamicPatch,
        skipBadRows,
      });
    case 'verl':
      return openVerl(path, { imageRoot, maxDynamicPatch: checked.maxDynamicPatch, skipBadRows });
    case 'hf_disk':
      return openHfDisk(path, { split: checked.split, imageRoot, skipBadRows });
    case 'trl_prompt':
      return openTrlPrompt(path, { split: checked.split, imageRoot, skipBadRows });
  }
}
