// TRL's prompt-only datasets for GRPO: rows `{prompt, images? | image?, ...}` where `prompt` is text
// (standard format) or chat messages (conversational), from parquet (a file, or a folder of
// `<split>-0000k-of-0000n.parquet` shards) or jsonl, with split slices like `train[:5%]`. Every other
// column (`solution`, `answer`, ...) goes to the reward functions, as GRPOTrainer passes the extra
// columns as keyword arguments; the images travel in the record, not among the columns.
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { checkImageSlots, imagesOf, promptOf, promptRecord, requireColumns, rewardColumns } from './prompts.js';
import { BadRowPolicy, type PromptRecord, type RecordDataset } from './records.js';
import { ConvertedDataset, jsonlRows, parquetRows, sliceRows, type RawRow } from './rows.js';
import { parseSplit, splitRange } from './split.js';
import { dataFiles } from './trl.js';

export interface TrlPromptOptions {
  /** `train`, `test[:10%]`, ...; default `train`. Picks the shards of a folder and slices rows. */
  split?: string;
  /** Where image paths resolve; default the data folder (a folder given) or the file's folder. */
  imageRoot?: string;
  skipBadRows?: boolean;
}

/** Opens a TRL prompt-only dataset file or folder. */
export async function openTrlPrompt(
  path: string,
  options: TrlPromptOptions = {},
): Promise<RecordDataset<PromptRecord>> {
  const split = parseSplit(options.split ?? 'train');
  const files = dataFiles(path, split.name);
  const jsonl = files[0]?.endsWith('.jsonl') === true;
  const all = jsonl ? await jsonlRows(files[0] as string) : await parquetRows(files);
  // A parquet schema names its columns; a jsonl's first line is only one row (a bad one is named by line).
  if (!jsonl) requireColumns(await all.columns(), ['prompt'], files[0] as string);
  const rows = sliceRows(all, ...splitRange(split, all.length));
  const imageRoot = options.imageRoot ?? (statSync(path).isDirectory() ? path : dirname(path));
  const convert = (row: RawRow) => trlPromptRecord(row, imageRoot);
  return new ConvertedDataset(rows, convert, new BadRowPolicy(options.skipBadRows ?? false));
}

/** One prompt-only row: `images` (a list) or `image` (one), every other column to the rewards. */
export function trlPromptRecord({ value, source }: RawRow, imageRoot: string): PromptRecord {
  const prompt = promptOf(value.prompt, 'prompt', source);
  const key = value.images !== undefined && value.images !== null ? 'images' : 'image';
  const images = imagesOf(value[key], key, imageRoot, source);
  checkImageSlots(prompt, images.length, source);
  return promptRecord(prompt, images, rewardColumns(value, ['prompt', 'images', 'image']), source);
}
