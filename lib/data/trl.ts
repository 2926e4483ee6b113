// TRL / Hugging Face datasets: preference rows `{prompt?, chosen, rejected, images?}` (conversational
// messages or standard text; without `prompt`, the shared leading messages of chosen and rejected
// are the prompt, TRL's implicit-prompt rule), unpaired `{prompt, completion, label}` for KTO and
// `{messages}` for SFT, from parquet (a file, or a folder of `<split>-00000-of-000NN.parquet`
// shards, images as HF's `{bytes, path}` structs) or jsonl, with split slices like `train[:5%]`.
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { ChatMessage } from '../processing/messages.js';
import { parseMessages } from '../processing/messages.js';
import type { ImageInput } from '../processing/sample.js';
import {
  BadRowPolicy,
  DataError,
  resolveInsideRoot,
  type DataRecord,
  type RecordDataset,
  type RecordSource,
} from './records.js';
import { ConvertedDataset, jsonlRows, parquetRows, sliceRows, type RawRow } from './rows.js';
import { parseSplit, splitRange } from './split.js';

export type TrlKind = Exclude<DataRecord['kind'], 'prompt'>;

export interface TrlOptions {
  /** `train`, `test[:10%]`, ...; default `train`. Picks the shards of a folder and slices rows. */
  split?: string;
  /** Default: from the columns (messages → sft; chosen+rejected → preference; completion+label → unpaired). */
  kind?: TrlKind;
  /** Where image paths (struct `path` without bytes, or jsonl strings) resolve; default the data folder. */
  imageRoot?: string;
  skipBadRows?: boolean;
}

/** Opens a TRL-format dataset file or folder. */
export async function openTrl(path: string, options: TrlOptions = {}): Promise<RecordDataset> {
  const split = parseSplit(options.split ?? 'train');
  const files = dataFiles(path, split.name);
  const all = files[0]?.endsWith('.jsonl') ? await jsonlRows(files[0]) : await parquetRows(files);
  const rows = sliceRows(all, ...splitRange(split, all.length));
  const kind = options.kind ?? detectKind(await all.columns(), path);
  const imageRoot = options.imageRoot ?? (statSync(path).isDirectory() ? path : dirname(path));
  const convert = (row: RawRow) => trlRecord(row, kind, imageRoot);
  return new ConvertedDataset(rows, convert, new BadRowPolicy(options.skipBadRows ?? false));
}

/** A file as given, or a folder's (or its `data/`'s) files of the split, sorted by shard. */
export function dataFiles(path: string, split: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const folder = statSync(join(path, 'data'), { throwIfNoEntry: false })?.isDirectory() ? join(path, 'data') : path;
  const names = readdirSync(folder)
    .filter((n) => /\.(parquet|jsonl)$/.test(n))
    .sort();
  const ofSplit = names.filter((n) => n.startsWith(`${split}-`) || n.startsWith(`${split}.`));
  if (ofSplit.length === 0)
    throw new Error(`${folder}: no ${split}-*.parquet or ${split}.jsonl (found: ${names.join(', ') || 'none'})`);
  if (ofSplit.some((n) => n.endsWith('.jsonl')) && ofSplit.length > 1) {
    throw new Error(`${folder}: split ${split} mixes files (${ofSplit.join(', ')}); give one file`);
  }
  return ofSplit.map((n) => join(folder, n));
}

function detectKind(columns: string[], path: string): TrlKind {
  const has = (...keys: string[]) => keys.every((k) => columns.includes(k));
  if (has('messages')) return 'sft';
  if (has('chosen', 'rejected')) return 'preference';
  if (has('prompt', 'completion', 'label')) return 'unpaired';
  const formats = 'messages | chosen+rejected | prompt+completion+label';
  throw new Error(`${path}: columns [${columns.join(', ')}] match no TRL format (${formats})`);
}

function trlRecord({ value, source }: RawRow, kind: TrlKind, imageRoot: string): DataRecord {
  const base = { id: recordId(source), images: trlImages(value, imageRoot, source), source };
  const turns = (key: string) => conversation(value[key], key, source);
  if (kind === 'sft') {
    const messages = turns('messages');
    if (typeof messages === 'string') throw new DataError(source, '"messages" must be a list of messages');
    return { kind, messages, ...base };
  }
  if (kind === 'unpaired') {
    const label = value.label;
    if (typeof label !== 'boolean')
      throw new DataError(source, `"label" must be true or false, got ${JSON.stringify(label)}`);
    return { kind, prompt: turns('prompt'), completion: turns('completion'), label, ...base };
  }
  const [chosen, rejected] = [turns('chosen'), turns('rejected')];
  if (value.prompt !== undefined && value.prompt !== null)
    return { kind, prompt: turns('prompt'), chosen, rejected, ...base };
  return { kind, ...implicitPrompt(chosen, rejected, source), ...base };
}

function recordId(source: RecordSource): string {
  return `${basename(source.file)}:${source.line ?? source.row}`;
}

/** A string (standard format) or a list of messages (conversational). */
function conversation(value: unknown, key: string, source: RecordSource): ChatMessage[] | string {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) throw new DataError(source, `missing "${key}"`);
  try {
    return parseMessages(value, key);
  } catch (error) {
    throw new DataError(source, (error as Error).message, { cause: error });
  }
}

/** TRL's implicit prompt: the longest run of leading messages chosen and rejected share. */
function implicitPrompt(chosen: ChatMessage[] | string, rejected: ChatMessage[] | string, source: RecordSource) {
  if (typeof chosen === 'string' || typeof rejected === 'string') throw new DataError(source, 'missing "prompt"');
  let k = 0;
  while (k < chosen.length && k < rejected.length && JSON.stringify(chosen[k]) === JSON.stringify(rejected[k])) k += 1;
  if (k === 0) throw new DataError(source, 'missing "prompt", and chosen and rejected share no leading messages');
  return { prompt: chosen.slice(0, k), chosen: chosen.slice(k), rejected: rejected.slice(k) };
}

/** `images` (a list) or `image` (one): HF `{bytes, path}` structs, or path strings. */
function trlImages(value: Record<string, unknown>, root: string, source: RecordSource): ImageInput[] {
  const column = value.images ?? (value.image === undefined || value.image === null ? [] : [value.image]);
  if (!Array.isArray(column)) throw new DataError(source, '"images" must be a list');
  return column.map((image, k) => {
    if (typeof image === 'string') return resolveInsideRoot(root, image, source);
    const struct = (image ?? {}) as { bytes?: unknown; path?: unknown };
    if (struct.bytes instanceof Uint8Array && struct.bytes.length > 0) return struct.bytes;
    if (typeof struct.path === 'string' && struct.path !== '') return resolveInsideRoot(root, struct.path, source);
    throw new DataError(source, `images[${k}] has neither bytes nor a path`);
  });
}
