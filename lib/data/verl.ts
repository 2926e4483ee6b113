// verl's RL parquet, as examples/data_preprocess/geo3k.py and the InternVL3.5 fork (MMPR-Tiny)
// write it: `{data_source, prompt: [{role, content}], images?: [{bytes, path}] | [path], ability,
// reward_model: {style, ground_truth}, extra_info: {...}}`. With images, each message's `<image>`
// becomes an image part (verl's RLHFDataset rule); paths resolve inside the image root (default the
// parquet's folder: MMPR-Tiny's `images/...` are relative to it). The rewards get every column but
// prompt and images, plus `ground_truth` lifted out of `reward_model` and `extra_info` ({} when
// absent, as verl's reward manager reads it), so both verl's compute_score(data_source, solution_str,
// ground_truth, extra_info) and TRL-style rewards find what they need.
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  checkImageSlots,
  imagesOf,
  promptOf,
  promptRecord,
  requireColumns,
  rewardColumns,
  splitImageTokens,
} from './prompts.js';
import { BadRowPolicy, DataError, type PromptRecord, type RecordDataset } from './records.js';
import { ConvertedDataset, parquetRows, type RawRow } from './rows.js';

export interface VerlOptions {
  /** Where image paths resolve (default: the folder of the parquet file, or the folder given). */
  imageRoot?: string;
  /**
   * InternVL's max_dynamic_patch: the InternVL3.5 fork's preprocessor gives each of a row's n images
   * max(1, max // n) tiles. Absent: records carry no budget (the processor's own applies).
   */
  maxDynamicPatch?: number;
  skipBadRows?: boolean;
}

/** The columns verl's dataset and reward manager cannot do without. */
export const VERL_REQUIRED_COLUMNS = ['data_source', 'prompt', 'reward_model'] as const;

/** Opens a verl parquet file, or every `*.parquet` of a folder in name order (verl's list of files). */
export async function openVerl(path: string, options: VerlOptions = {}): Promise<RecordDataset<PromptRecord>> {
  const folder = statSync(path).isDirectory();
  const files = folder ? parquetFiles(path) : [path];
  const rows = await parquetRows(files);
  requireColumns(await rows.columns(), VERL_REQUIRED_COLUMNS, files[0] as string);
  const imageRoot = options.imageRoot ?? (folder ? path : dirname(path));
  const convert = (row: RawRow) => verlRecord(row, imageRoot, options.maxDynamicPatch);
  return new ConvertedDataset(rows, convert, new BadRowPolicy(options.skipBadRows ?? false));
}

function parquetFiles(folder: string): string[] {
  const names = readdirSync(folder)
    .filter((n) => n.endsWith('.parquet'))
    .sort();
  if (names.length === 0) throw new Error(`${folder}: no .parquet files`);
  return names.map((n) => join(folder, n));
}

function verlRecord({ value, source }: RawRow, imageRoot: string, maxDynamicPatch: number | undefined): PromptRecord {
  const written = promptOf(value.prompt, 'prompt', source);
  if (typeof written === 'string') throw new DataError(source, '"prompt" must be a list of chat messages');
  const images = imagesOf(value.images, 'images', imageRoot, source);
  const prompt = images.length > 0 ? splitImageTokens(written) : written;
  checkImageSlots(prompt, images.length, source);
  if (typeof value.data_source !== 'string' || value.data_source === '')
    throw new DataError(source, '"data_source" must be a non-empty string');
  const rewardModel = value.reward_model as { ground_truth?: unknown } | null | undefined;
  if (rewardModel?.ground_truth === undefined || rewardModel.ground_truth === null)
    throw new DataError(source, 'missing "reward_model.ground_truth"');
  const columns = rewardColumns(value, ['prompt', 'images']);
  columns.extra_info ??= {};
  if (!('ground_truth' in value))
    columns.ground_truth = (columns.reward_model as { ground_truth: unknown }).ground_truth;
  const record = promptRecord(prompt, images, columns, source);
  if (maxDynamicPatch !== undefined)
    record.maxTiles = Math.max(1, Math.floor(maxDynamicPatch / Math.max(1, images.length)));
  return record;
}
