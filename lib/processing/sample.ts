// One training or inference example as the processors take it, and how it becomes segments.
import { z } from 'zod';
import { parseConfig } from '../util/config_error.js';

import { loadImage, type RgbImage } from './image/index.js';
import { parseMessages, type ChatMessage } from './messages.js';
import type { Segment } from './segments.js';

/** An image: decoded RGB, a file path, or encoded bytes (PNG, JPEG, ...). */
export type ImageInput = RgbImage | string | Uint8Array;

/**
 * Either a whole conversation (`messages`: loss on every assistant turn), or a `prompt` with an
 * optional `completion` (loss on the completion only). A prompt is chat messages, rendered with
 * the generation prompt, or an already rendered string; a completion is assistant messages, or
 * raw text appended to the prompt (every token labelled; include the EOS text if you want it).
 * `images` fill the prompt's image placeholders in order.
 */
export interface Sample {
  messages?: ChatMessage[];
  prompt?: ChatMessage[] | string;
  completion?: ChatMessage[] | string;
  images?: ImageInput[];
  /**
   * InternVL: the most tiles each image of this sample may take (dynamic_preprocess's max_num), as
   * a dataset shares out its max_dynamic_patch (`max(1, max_dynamic_patch // n)`, a record's
   * maxTiles). Absent: the processor's own tiling rule. Qwen2-VL sizes images by pixels, not
   * tiles, and ignores it, so one dataset serves both families.
   */
  maxTiles?: number;
}

/** What turns messages into segments: a chat template, or InternVL's built-in template. */
export interface ConversationRenderer {
  /** Assistant turns from `labelFrom` on become labelled turns. */
  segments(messages: readonly ChatMessage[], options: { labelFrom: number; addGenerationPrompt: boolean }): Segment[];
}

const isRgbImage = (v: unknown): v is RgbImage =>
  typeof v === 'object' &&
  v !== null &&
  'data' in v &&
  (v as RgbImage).data instanceof Uint8Array &&
  'width' in v &&
  'height' in v;

const ImageSchema = z.custom<ImageInput>((v) => typeof v === 'string' || v instanceof Uint8Array || isRgbImage(v), {
  message: 'expected an RgbImage {width, height, data}, a file path or encoded bytes',
});

const SampleSchema = z
  .object({
    messages: z.array(z.unknown()).optional(),
    prompt: z.union([z.string(), z.array(z.unknown())]).optional(),
    completion: z.union([z.string(), z.array(z.unknown())]).optional(),
    images: z.array(ImageSchema).optional(),
    maxTiles: z.number().int().positive().optional(),
  })
  .loose();

/** Validates sample `index` of a batch and normalises its messages. */
export function parseSample(value: unknown, index: number): Sample {
  const where = `samples[${index}]`;
  const s = parseConfig(SampleSchema, value, 'sample', { root: where });
  if ((s.messages === undefined) === (s.prompt === undefined)) {
    throw new TypeError(`${where}: give either messages (a conversation) or prompt (with an optional completion)`);
  }
  if (s.messages !== undefined && s.completion !== undefined)
    throw new TypeError(`${where}: completion goes with prompt, not with messages`);
  const messages = (v: unknown[] | string | undefined, key: string) =>
    v === undefined || typeof v === 'string' ? v : parseMessages(v, `${where}.${key}`);
  return {
    messages: messages(s.messages, 'messages') as ChatMessage[] | undefined,
    prompt: messages(s.prompt, 'prompt'),
    completion: messages(s.completion, 'completion'),
    images: s.images ?? [],
    ...(s.maxTiles === undefined ? {} : { maxTiles: s.maxTiles }),
  };
}

/** The sample's segments; `renderer` is null when the checkpoint has no chat template. */
/** The chat template's origin when `sample`'s text is its rendering (messages, not a prompt string). */
export function templateOrigin(sample: Sample, template: { origin: string } | null): string | undefined {
  const rendered = sample.messages !== undefined || typeof sample.prompt !== 'string';
  return rendered ? template?.origin : undefined;
}

export function sampleSegments(sample: Sample, renderer: ConversationRenderer | null, where: string): Segment[] {
  const need = (): ConversationRenderer => {
    if (renderer === null)
      throw new Error(`${where}: the checkpoint has no chat template; pass the prompt as a rendered string`);
    return renderer;
  };
  if (sample.messages !== undefined)
    return need().segments(sample.messages, { labelFrom: 0, addGenerationPrompt: false });
  const { prompt, completion } = sample;
  if (typeof prompt === 'string') {
    if (completion !== undefined && typeof completion !== 'string')
      throw new TypeError(`${where}: a string prompt takes a string completion`);
    return completion === undefined
      ? [{ kind: 'context', text: prompt }]
      : [
          { kind: 'context', text: prompt },
          { kind: 'completion', text: completion },
        ];
  }
  const promptMessages = prompt ?? [];
  if (typeof completion === 'string') {
    const context = need().segments(promptMessages, { labelFrom: promptMessages.length, addGenerationPrompt: true });
    return [...context, { kind: 'completion', text: completion }];
  }
  if (completion === undefined)
    return need().segments(promptMessages, { labelFrom: promptMessages.length, addGenerationPrompt: true });
  return need().segments([...promptMessages, ...completion], {
    labelFrom: promptMessages.length,
    addGenerationPrompt: false,
  });
}

/** Decodes the inputs that are not decoded yet. */
export async function resolveImages(images: readonly ImageInput[]): Promise<RgbImage[]> {
  return Promise.all(images.map((image) => (isRgbImage(image) ? image : loadImage(image))));
}
