// Prompt-only records held in memory for the GRPO tests: a RecordDataset over them, PNG bytes of a
// seeded random image, and a sampler that hands back fixed completions by record id.
import sharp from 'sharp';
import type { PromptRecord, RecordDataset } from '../../../lib/data/records.js';
import type { SampledCompletion } from '../../../lib/train/grpo/generation.js';
import { randomImage, userTurn } from '../../processing/chats.js';

export function promptDataset(records: PromptRecord[]): RecordDataset<PromptRecord> {
  return {
    length: records.length,
    get: async (i: number) => records[i],
    badRows: { count: 0, examples: [] },
    skipBadRows: false,
  } as RecordDataset<PromptRecord>;
}

/** A prompt record asking `question`, with the PNG `image` or none. */
export function promptRecord(
  id: string,
  question: string,
  image: Uint8Array | null = null,
  columns: Record<string, unknown> = {},
): PromptRecord {
  const images = image === null ? [] : [image];
  return { kind: 'prompt', id, prompt: userTurn(question, images.length), images, columns, source: { file: id } };
}

export async function pngOf(seed: number, size = 56): Promise<Uint8Array> {
  const image = randomImage(size, size, seed);
  const raw = { raw: { width: size, height: size, channels: 3 as const } };
  return new Uint8Array(await sharp(Buffer.from(image.data), raw).png().toBuffer());
}

/** A sampler returning `completions[record id]` (token lists) for each prompt, in order. */
export function fixedSampler(completions: Record<string, number[][]>) {
  return (_: unknown, prompts: ReadonlyArray<{ record: PromptRecord }>): SampledCompletion[] =>
    prompts.flatMap((p, prompt) =>
      completions[p.record.id]!.map((tokens) => ({ prompt, tokens, logprobs: tokens.map(() => 0), truncated: false })),
    );
}
