// What the prompt-only readers (verl, HF save_to_disk, TRL prompt-only) share: a row's prompt as
// messages or text, its images (HF `{bytes, path}` structs or paths confined to the image root), and
// the columns handed to the reward functions, with 64-bit integers as plain numbers where exact.
import { basename } from 'node:path';
import { type ChatMessage, type ContentPart, parseMessages } from '../processing/messages.js';
import type { ImageInput } from '../processing/sample.js';
import { DataError, resolveInsideRoot, type PromptRecord, type RecordSource } from './records.js';

export const IMAGE_TOKEN = '<image>';

/** A prompt column: text (TRL's standard format) or a list of chat messages. */
export function promptOf(value: unknown, key: string, source: RecordSource): ChatMessage[] | string {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) throw new DataError(source, `missing "${key}"`);
  try {
    return parseMessages(value, key);
  } catch (error) {
    throw new DataError(source, (error as Error).message, { cause: error });
  }
}

/**
 * verl's RLHFDataset rule for rows with images: each message's text is split at `<image>` into
 * text parts and image parts (empty pieces dropped), so the template places each image.
 */
export function splitImageTokens(messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((message) => {
    if (typeof message.content !== 'string') return message;
    const parts = message.content
      .split(/(<image>)/)
      .filter((piece) => piece !== '')
      .map((piece): ContentPart => (piece === IMAGE_TOKEN ? { type: 'image' } : { type: 'text', text: piece }));
    return { role: message.role, content: parts };
  });
}

/** Image parts in the messages (typed parts, and `<image>` in text content). */
export function countImageSlots(prompt: readonly ChatMessage[] | string): number {
  const inText = (text: string) => text.split(IMAGE_TOKEN).length - 1;
  if (typeof prompt === 'string') return inText(prompt);
  let count = 0;
  for (const message of prompt) {
    if (typeof message.content === 'string') count += inText(message.content);
    else count += message.content.filter((part) => part.type === 'image').length;
  }
  return count;
}

/**
 * An image column (one image or a list) as ImageInputs: HF `{bytes, path}` structs (bytes win;
 * a path alone resolves inside `root`), verl's `{image: path}`, or plain path strings.
 */
export function imagesOf(value: unknown, key: string, root: string, source: RecordSource): ImageInput[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((image: unknown, k) => {
    const where = Array.isArray(value) ? `${key}[${k}]` : key;
    if (typeof image === 'string') return resolveInsideRoot(root, image, source);
    if (typeof image !== 'object' || image === null)
      throw new DataError(source, `${where} must be an image struct or a path`);
    const { bytes, path, image: named } = image as { bytes?: unknown; path?: unknown; image?: unknown };
    if (bytes instanceof Uint8Array && bytes.length > 0) return bytes;
    const file = typeof path === 'string' && path !== '' ? path : named;
    if (typeof file === 'string' && file !== '') return resolveInsideRoot(root, file, source);
    throw new DataError(source, `${where} has neither bytes nor a path`);
  });
}

/**
 * A row's columns as the rewards get them: every column except `omit`, with int64 values that fit a
 * double as numbers (parquet and Arrow readers hand them over as bigint) and everything else as read.
 */
export function rewardColumns(row: Record<string, unknown>, omit: readonly string[]): Record<string, unknown> {
  const columns: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) if (!omit.includes(key)) columns[key] = plainValue(value);
  return columns;
}

function plainValue(value: unknown): unknown {
  if (typeof value === 'bigint')
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
  if (Array.isArray(value)) return value.map(plainValue);
  if (value instanceof Uint8Array || typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainValue(v)]));
}

/** Refuses a prompt whose image slots do not match its images (the processor would fail later, unnamed). */
export function checkImageSlots(prompt: ChatMessage[] | string, images: number, source: RecordSource): void {
  const slots = countImageSlots(prompt);
  if (slots !== images && slots !== 0)
    throw new DataError(source, `prompt has ${slots} image placeholder(s) for ${images} image(s)`);
}

export function promptRecord(
  prompt: ChatMessage[] | string,
  images: ImageInput[],
  columns: Record<string, unknown>,
  source: RecordSource,
): PromptRecord {
  return {
    kind: 'prompt',
    id: `${basename(source.file)}:${source.line ?? source.row}`,
    prompt,
    images,
    columns,
    source,
  };
}

/** Names the required columns a file lacks, before any row is read. */
export function requireColumns(columns: readonly string[], required: readonly string[], file: string): void {
  const missing = required.filter((key) => !columns.includes(key));
  if (missing.length > 0)
    throw new Error(
      `${file}: missing column${missing.length > 1 ? 's' : ''} ${missing.map((k) => `"${k}"`).join(', ')} ` +
        `(columns: ${columns.join(', ') || 'none'})`,
    );
}
