// Records and tiny checkpoints the evaluation tests share.
import sharp from 'sharp';
import type { PreferenceRecord, PromptRecord } from '../../lib/data/records.js';
import { randomImage, userTurn } from '../processing/chats.js';

export async function pngOf(seed: number, size = 56): Promise<Uint8Array> {
  const image = randomImage(size, size, seed);
  const raw = { raw: { width: size, height: size, channels: 3 as const } };
  return new Uint8Array(await sharp(Buffer.from(image.data), raw).png().toBuffer());
}

/** A prompt record asking `question` (with the PNG `image` or none), its other columns given. */
export function promptRecord(
  id: string,
  question: string,
  image: Uint8Array | null,
  columns: Record<string, unknown> = {},
): PromptRecord {
  const images = image === null ? [] : [image];
  return {
    kind: 'prompt',
    id,
    prompt: userTurn(question, images.length),
    images,
    columns,
    source: { file: `${id}.jsonl`, line: 1 },
  };
}

/** A preference record: a user question (with an image or none), assistant answers chosen and rejected. */
export function pairRecord(
  id: string,
  question: string,
  chosen: string,
  rejected: string,
  image: Uint8Array | null,
): PreferenceRecord {
  const images = image === null ? [] : [image];
  return {
    kind: 'preference',
    id,
    prompt: userTurn(question, images.length),
    chosen: [{ role: 'assistant', content: chosen }],
    rejected: [{ role: 'assistant', content: rejected }],
    images,
    source: { file: `${id}.jsonl`, line: 1 },
  };
}
