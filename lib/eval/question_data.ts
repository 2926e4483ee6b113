// The two question files `vlalign eval` reads besides the training formats (openDataset): plain VQA
// jsonl rows `{image?, question, answer | answers, ...}` (MMPR's correctness input, InternVL's
// eval jsonl), and InternVL's refcoco jsonl `{image, sent, bbox, width, height}` asked with
// InternVL's refcoco prompt. Both become prompt records: a user turn with the images first (or
// where the question's `<image>` tokens put them), every other column kept for the metrics.
import { dirname } from 'node:path';
import type { ChatMessage, ContentPart } from '../processing/messages.js';
import { BadRowPolicy, DataError, type PromptRecord, type RecordDataset } from '../data/records.js';
import { ConvertedDataset, jsonlRows, type RawRow } from '../data/rows.js';
import { checkImageSlots, imagesOf, promptRecord, rewardColumns, splitImageTokens } from '../data/prompts.js';
import { refcocoPrompt } from './grounding.js';

export const QUESTION_FORMATS = ['vqa', 'refcoco'] as const;
export type QuestionFormat = (typeof QUESTION_FORMATS)[number];

export interface QuestionOptions {
  /** Where image paths resolve (default: the file's folder); paths may not leave it. */
  imageRoot?: string;
  skipBadRows?: boolean;
  /**
   * InternVL: the most tiles per image (InternVL's eval `--max-num`, 6 with `--dynamic`; 1 is its
   * non-dynamic single 448 image). Absent: the processor's tiling. Qwen2-VL ignores it.
   */
  maxTiles?: number;
}

/** Opens a VQA or refcoco jsonl file as prompt records (lazily, bad rows named by file and line). */
export async function openQuestions(
  path: string,
  format: QuestionFormat,
  options: QuestionOptions = {},
): Promise<RecordDataset<PromptRecord>> {
  const root = options.imageRoot ?? dirname(path);
  const read = format === 'vqa' ? vqaRecord : refcocoRecord;
  const { maxTiles } = options;
  const convert = (row: RawRow) => {
    const record = read(row, root);
    return maxTiles === undefined ? record : { ...record, maxTiles };
  };
  return new ConvertedDataset(await jsonlRows(path), convert, new BadRowPolicy(options.skipBadRows ?? false));
}

function vqaRecord({ value, source }: RawRow, root: string): PromptRecord {
  const question = value.question;
  if (typeof question !== 'string' || question === '') throw new DataError(source, 'missing "question" (text)');
  const images = imagesOf(value.image, 'image', root, source);
  const prompt = question.includes('<image>')
    ? splitImageTokens([{ role: 'user', content: question }])
    : userTurn(images.length, question);
  checkImageSlots(prompt, images.length, source);
  return promptRecord(prompt, images, rewardColumns(value, ['image']), source);
}

function refcocoRecord({ value, source }: RawRow, root: string): PromptRecord {
  const sentence = value.sent;
  if (typeof sentence !== 'string' || sentence === '')
    throw new DataError(source, 'missing "sent" (the referring expression)');
  for (const key of ['bbox', 'width', 'height']) {
    if (value[key] === undefined) throw new DataError(source, `missing "${key}"`);
  }
  const images = imagesOf(value.image, 'image', root, source);
  if (images.length !== 1) throw new DataError(source, `"image" must name one image, found ${images.length}`);
  return promptRecord(userTurn(1, refcocoPrompt(sentence)), images, rewardColumns(value, ['image']), source);
}

// The images first, then the text, as InternVL's chat puts `<image>\n` before the question.
function userTurn(images: number, text: string): ChatMessage[] {
  const parts: ContentPart[] = [...Array(images)].map(() => ({ type: 'image' as const }));
  return [{ role: 'user', content: [...parts, { type: 'text', text }] }];
}
