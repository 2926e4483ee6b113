// Hugging Face `save_to_disk` folders, as ViRFT loads them with `load_from_disk`: a DatasetDict
// (`dataset_dict.json` listing the splits, one folder each) or a single Dataset folder, holding
// `state.json` (its `_data_files` name the Arrow stream shards, in order), `dataset_info.json` and
// `data-0000k-of-0000n.arrow`. Rows with a `prompt` column read as TRL prompt-only rows; ViRFT's rows
// `{image, problem, solution}` become its conversation: with an image column, a user turn of an image
// part and the problem's text; without one, the R1 system prompt and the problem. The other columns
// (`problem`, `solution`, ...) go to the rewards; images travel in the record.
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { readJsonFile } from '../util/json_file.js';
import { ArrowStreamRows } from './arrow.js';
import { imagesOf, promptRecord, requireColumns, rewardColumns } from './prompts.js';
import { BadRowPolicy, DataError, type PromptRecord, type RecordDataset } from './records.js';
import { ConvertedDataset, sliceRows, type RawRow, type RowSource } from './rows.js';
import { parseSplit, splitRange } from './split.js';
import { trlPromptRecord } from './trl_prompt.js';

/** open-r1's R1 system prompt, which ViRFT puts before text-only problems (its image prompts have none). */
export const R1_SYSTEM_PROMPT =
  'A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant ' +
  'first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning ' +
  'process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., ' +
  '<think> reasoning process here </think><answer> answer here </answer>';

export interface HfDiskOptions {
  /** A DatasetDict's split, with an optional slice (`train`, `train[:5%]`; default `train`). */
  split?: string;
  /** Where image structs holding only a path resolve (default: the split's folder). */
  imageRoot?: string;
  skipBadRows?: boolean;
}

/** Opens a `save_to_disk` folder (DatasetDict or Dataset). */
export async function openHfDisk(path: string, options: HfDiskOptions = {}): Promise<RecordDataset<PromptRecord>> {
  const split = parseSplit(options.split ?? 'train');
  const folder = datasetFolder(path, split.name, options.split !== undefined);
  const all = await arrowRows(dataFiles(folder));
  const columns = await all.columns();
  const rows = sliceRows(all, ...splitRange(split, all.length));
  const imageRoot = options.imageRoot ?? folder;
  const convert = columns.includes('prompt')
    ? (row: RawRow) => trlPromptRecord(row, imageRoot)
    : virftConverter(columns, imageRoot, folder);
  return new ConvertedDataset(rows, convert, new BadRowPolicy(options.skipBadRows ?? false));
}

/** The Dataset folder of `split`: inside a DatasetDict, or `path` itself. */
function datasetFolder(path: string, split: string, explicit: boolean): string {
  const dictFile = join(path, 'dataset_dict.json');
  if (existsSync(dictFile)) {
    const { splits } = readJsonFile(dictFile) as { splits?: unknown };
    if (!Array.isArray(splits)) throw new Error(`${dictFile}: expected {"splits": [...]}`);
    if (!splits.includes(split)) throw new Error(`${dictFile}: no split "${split}" (splits: ${splits.join(', ')})`);
    return join(path, split);
  }
  const stateFile = join(path, 'state.json');
  if (!existsSync(stateFile))
    throw new Error(`${path}: not a save_to_disk folder (no dataset_dict.json or state.json)`);
  const { _split: own } = readJsonFile(stateFile) as { _split?: unknown };
  if (explicit && typeof own === 'string' && own !== split)
    throw new Error(`${stateFile}: this folder holds split "${own}", not "${split}"`);
  return path;
}

/** The Arrow shards `state.json` lists, in its order. */
function dataFiles(folder: string): string[] {
  const stateFile = join(folder, 'state.json');
  if (!existsSync(stateFile)) throw new Error(`${folder}: no state.json`);
  const { _data_files: entries } = readJsonFile(stateFile) as { _data_files?: unknown };
  if (!Array.isArray(entries) || entries.length === 0)
    throw new Error(`${stateFile}: expected a non-empty "_data_files" list`);
  return entries.map((entry: unknown, k) => {
    const name = (entry as { filename?: unknown } | null)?.filename;
    if (typeof name !== 'string' || name === '' || basename(name) !== name)
      throw new Error(`${stateFile}: _data_files[${k}].filename must be a file name in ${folder}`);
    return join(folder, name);
  });
}

async function arrowRows(files: readonly string[]): Promise<RowSource> {
  const table = await ArrowStreamRows.open(files);
  return {
    length: table.length,
    columns: async () => table.columns(),
    row: async (i) => {
      const { value, file, row } = await table.row(i);
      return { value, source: { file, row } };
    },
  };
}

/** ViRFT's make_conversation / make_conversation_image, chosen by whether the data has an image column. */
function virftConverter(columns: string[], imageRoot: string, folder: string): (row: RawRow) => PromptRecord {
  requireColumns(columns, ['problem'], folder);
  const withImage = columns.includes('image');
  return ({ value, source }) => {
    const problem = value.problem;
    if (typeof problem !== 'string') throw new DataError(source, 'missing or non-string "problem"');
    const columnsOut = rewardColumns(value, ['image']);
    if (!withImage) {
      const prompt = [
        { role: 'system', content: R1_SYSTEM_PROMPT },
        { role: 'user', content: problem },
      ];
      return promptRecord(prompt, [], columnsOut, source);
    }
    if (value.image === null || value.image === undefined) throw new DataError(source, 'missing "image"');
    const images = imagesOf(value.image, 'image', imageRoot, source);
    const prompt = [
      {
        role: 'user',
        content: [{ type: 'image' as const }, { type: 'text' as const, text: problem }],
      },
    ];
    return promptRecord(prompt, images, columnsOut, source);
  };
}
