// VL-RLHF's formats and InternVL's SFT jsonl. `plain_dpo`: `{image?, prompt, chosen, rejected}`
// with images under `image_root`; `vlquery_json`: `{image, conversations: [{from: user|assistant,
// value}]}` for SFT; InternVL SFT: `{image?, conversations: [{from: human|gpt|system, value}]}` with
// `<image>` in the text (prepended to the first human turn when absent, as InternVL's dataset does).
// A file ending in .jsonl is indexed line by line; any other is a JSON list, parsed whole.
import { basename } from 'node:path';
import type { ChatMessage, ContentPart } from '../processing/messages.js';
import { IMAGE_PLACEHOLDER } from '../processing/internvl_template.js';
import {
  BadRowPolicy,
  DataError,
  assistantMessage,
  resolveInsideRoot,
  type PreferenceRecord,
  type RecordDataset,
  type RecordSource,
  type SftRecord,
} from './records.js';
import { ConvertedDataset, jsonListRows, jsonlRows, type RawRow } from './rows.js';

export interface VlRlhfOptions {
  /** Folder every `image` path resolves inside (VL-RLHF's `--image_root`). */
  imageRoot: string;
  skipBadRows?: boolean;
}

export interface InternVlSftOptions extends VlRlhfOptions {
  /** InternVL's max_dynamic_patch (default 12); several images share it as max(1, max // n). */
  maxDynamicPatch?: number;
}

type Convert<T> = (row: RawRow) => T;

async function open<T extends PreferenceRecord | SftRecord>(
  file: string,
  skip: boolean | undefined,
  convert: Convert<T>,
) {
  const rows = file.endsWith('.jsonl') ? await jsonlRows(file) : jsonListRows(file);
  return new ConvertedDataset(rows, convert, new BadRowPolicy(skip ?? false));
}

/** VL-RLHF `plain_dpo`: the image (if any) leads the user turn. */
export function openPlainDpo(file: string, options: VlRlhfOptions): Promise<RecordDataset<PreferenceRecord>> {
  return open(file, options.skipBadRows, ({ value, source }): PreferenceRecord => {
    const images = imagePaths(value.image, options.imageRoot, source);
    const prompt = text(value, 'prompt', source);
    const content: ContentPart[] = [
      ...images.map((): ContentPart => ({ type: 'image' })),
      { type: 'text', text: prompt },
    ];
    return {
      kind: 'preference',
      id: rowId(source),
      prompt: [{ role: 'user', content }],
      chosen: [assistantMessage(text(value, 'chosen', source))],
      rejected: [assistantMessage(text(value, 'rejected', source))],
      images,
      source,
    };
  });
}

/** VL-RLHF `vlquery_json`: the image leads the first user turn. */
export function openVlQuery(file: string, options: VlRlhfOptions): Promise<RecordDataset<SftRecord>> {
  return open(file, options.skipBadRows, ({ value, source }): SftRecord => {
    const images = imagePaths(value.image, options.imageRoot, source);
    const turns = conversations(value, { user: 'user', assistant: 'assistant' }, source);
    const first = turns.findIndex((m) => m.role === 'user');
    if (images.length > 0 && first === -1) throw new DataError(source, 'an image needs a user turn');
    const messages = turns.map(
      (m, k): ChatMessage =>
        k !== first
          ? m
          : {
              role: 'user',
              content: [
                ...images.map((): ContentPart => ({ type: 'image' })),
                { type: 'text', text: m.content as string },
              ],
            },
    );
    return { kind: 'sft', id: rowId(source), messages, images, source };
  });
}

/** InternVL's SFT jsonl (human / gpt turns, `<image>` in the text). */
export function openInternVlSft(file: string, options: InternVlSftOptions): Promise<RecordDataset<SftRecord>> {
  const maxPatch = options.maxDynamicPatch ?? 12;
  return open(file, options.skipBadRows, ({ value, source }): SftRecord => {
    const images = imagePaths(value.image, options.imageRoot, source);
    const messages = conversations(value, { human: 'user', gpt: 'assistant', system: 'system' }, source);
    const placed =
      messages
        .map((m) => m.content as string)
        .join('')
        .split(IMAGE_PLACEHOLDER).length - 1;
    const first = messages.findIndex((m) => m.role === 'user');
    if (images.length === 1 && placed === 0 && first !== -1) {
      messages[first] = { role: 'user', content: `${IMAGE_PLACEHOLDER}\n${messages[first]?.content as string}` };
    } else if (placed !== images.length) {
      throw new DataError(source, `conversations have ${placed} ${IMAGE_PLACEHOLDER} for ${images.length} image(s)`);
    }
    const maxTiles = images.length === 0 ? 1 : Math.max(1, Math.floor(maxPatch / images.length));
    return { kind: 'sft', id: rowId(source), messages, images, maxTiles, source };
  });
}

function rowId(source: RecordSource): string {
  return `${basename(source.file)}:${source.line ?? source.row}`;
}

function text(value: Record<string, unknown>, key: string, source: RecordSource): string {
  const field = value[key];
  if (typeof field !== 'string') throw new DataError(source, `missing or non-string "${key}"`);
  return field;
}

function imagePaths(value: unknown, root: string, source: RecordSource): string[] {
  if (value === undefined || value === null || value === '') return [];
  const paths = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string' && p !== '')) {
    throw new DataError(source, '"image" must be a path or a list of paths');
  }
  return paths.map((path: string) => resolveInsideRoot(root, path, source));
}

/** `conversations: [{from, value}]` with `from` mapped to chat roles; other speakers are refused. */
function conversations(
  value: Record<string, unknown>,
  roles: Record<string, string>,
  source: RecordSource,
): ChatMessage[] {
  const turns = value.conversations;
  if (!Array.isArray(turns) || turns.length === 0) throw new DataError(source, 'missing or empty "conversations"');
  return turns.map((turn: unknown, k) => {
    const { from, value: said } = (turn ?? {}) as { from?: unknown; value?: unknown };
    const role = typeof from === 'string' ? roles[from] : undefined;
    if (role === undefined)
      throw new DataError(source, `conversations[${k}].from must be one of ${Object.keys(roles).join(', ')}`);
    if (typeof said !== 'string') throw new DataError(source, `conversations[${k}].value must be a string`);
    return { role, content: said };
  });
}
