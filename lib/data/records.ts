// The records every format reader produces, and what readers share: errors that name the file and
// line, the skip-bad-rows policy (counted, never hidden), and image paths confined to a root.
import { realpathSync } from 'node:fs';
import { isAbsolute, resolve, sep } from 'node:path';
import type { ChatMessage } from '../processing/messages.js';
import type { ImageInput } from '../processing/sample.js';

/** Where a record came from: the file and its 1-based line (jsonl/json) or 0-based row (parquet). */
export interface RecordSource {
  file: string;
  line?: number;
  row?: number;
}

interface RecordBase {
  id: string;
  /** Encoded bytes, or file paths already resolved inside the dataset root. */
  images: ImageInput[];
  /** InternVL's tile budget per image (`max(1, max_dynamic_patch // n)`); absent: the processor's. */
  maxTiles?: number;
  /** InternVL `data_augment`: re-encode as JPEG at a random quality before tiling. */
  augment?: boolean;
  source: RecordSource;
}

/** A prompt with a preferred and a dispreferred answer (DPO, MPO). */
export interface PreferenceRecord extends RecordBase {
  kind: 'preference';
  /** Messages, or (TRL's standard format) raw text the processor uses as it is. */
  prompt: ChatMessage[] | string;
  chosen: ChatMessage[] | string;
  rejected: ChatMessage[] | string;
}

/** One completion with a desirable / undesirable label (KTO). */
export interface UnpairedRecord extends RecordBase {
  kind: 'unpaired';
  prompt: ChatMessage[] | string;
  completion: ChatMessage[] | string;
  label: boolean;
}

/** A whole conversation, loss on every assistant turn (SFT). */
export interface SftRecord extends RecordBase {
  kind: 'sft';
  messages: ChatMessage[];
}

/**
 * A prompt alone, for online RL (GRPO / GSPO): completions are sampled, and the row's other columns
 * (`solution`, verl's `data_source` / `ground_truth` / `extra_info`, ...) go to the reward functions.
 */
export interface PromptRecord extends RecordBase {
  kind: 'prompt';
  /** Messages, or (TRL's standard format) raw text the processor uses as it is. */
  prompt: ChatMessage[] | string;
  /** The row's columns other than the prompt and its images, as the rewards receive them. */
  columns: Record<string, unknown>;
}

export type DataRecord = PreferenceRecord | UnpairedRecord | SftRecord | PromptRecord;

/** Random access to a dataset's records; `get` reads lazily (one line or one row group at a time). */
export interface RecordDataset<T extends DataRecord = DataRecord> {
  readonly length: number;
  /** Record `i`, or undefined when the row is bad and the dataset skips bad rows (see `badRows`). */
  get(i: number): Promise<T | undefined>;
  /** Rows skipped so far, with the first messages (only with `skipBadRows`). */
  readonly badRows: BadRowReport;
  /** Whether bad rows are skipped and counted (true) or thrown (false). */
  readonly skipBadRows: boolean;
}

/** A row that cannot become a record: the message starts with `file:line` or `file row N`. */
export class DataError extends Error {
  override readonly name = 'DataError';

  constructor(
    readonly source: RecordSource,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`${describeSource(source)}: ${detail}`, options);
  }
}

export function describeSource(source: RecordSource): string {
  if (source.line !== undefined) return `${source.file}:${source.line}`;
  return source.row === undefined ? source.file : `${source.file} row ${source.row}`;
}

export interface BadRowReport {
  /** Distinct bad rows: one read again in a later epoch counts once. */
  count: number;
  /** The first few messages, so a log can show what was wrong without keeping every one. */
  examples: string[];
}

const KEPT_EXAMPLES = 10;

// The rows already counted, per report (each row's message names its file and line or row).
const counted = new WeakMap<BadRowReport, Set<string>>();

export function countBadRow(report: BadRowReport, error: DataError): void {
  const seen = counted.get(report) ?? new Set<string>();
  counted.set(report, seen);
  if (seen.has(error.message)) return;
  seen.add(error.message);
  report.count += 1;
  if (report.examples.length < KEPT_EXAMPLES) report.examples.push(error.message);
}

/** Throws bad rows, or (skipBadRows) counts them and answers undefined. */
export class BadRowPolicy {
  readonly report: BadRowReport = { count: 0, examples: [] };

  constructor(readonly skipBadRows: boolean) {}

  async guard<T>(read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read();
    } catch (error) {
      if (!this.skipBadRows || !(error instanceof DataError)) throw error;
      countBadRow(this.report, error);
      return undefined;
    }
  }
}

/**
 * `path` resolved against `root`, refused unless its real path (symlinks followed) stays inside the
 * real path of `root`: no `..`, no absolute path, no symlink out. A missing file is a DataError too.
 */
export function resolveInsideRoot(root: string, path: string, source: RecordSource): string {
  if (isAbsolute(path))
    throw new DataError(source, `image path ${JSON.stringify(path)} is absolute; give it relative to ${root}`);
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch (error) {
    throw new DataError(source, `image root ${root} does not exist`, { cause: error });
  }
  let real: string;
  try {
    real = realpathSync(resolve(realRoot, path));
  } catch (error) {
    const inside = isInside(realRoot, resolve(realRoot, path));
    const why = inside ? 'not found' : 'escapes the image root';
    throw new DataError(source, `image ${JSON.stringify(path)} ${why} (root ${root})`, { cause: error });
  }
  if (!isInside(realRoot, real))
    throw new DataError(source, `image ${JSON.stringify(path)} escapes the image root ${root}`);
  return real;
}

function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

export function userMessage(text: string): ChatMessage {
  return { role: 'user', content: text };
}

export function assistantMessage(text: string): ChatMessage {
  return { role: 'assistant', content: text };
}
