// MMPR's DropoutNTP pipeline (InternVL `mmpr_data_pipeline_dropout_ntp.py`, rl_data.md section
// 2): for an open question with a good answer `chosen`, keep the first start_ratio of chosen's
// space-separated words as a prefix, let the model continue that prefix without seeing the image
// (or with it, loadImage), and write `rejected = prefix + continuation` (no separator: the model
// writes its own). Rows without images are answered as text only either way. With an engine that
// streams (the model engine), rows decode with continuous batching: `batchSize` rows in flight, a
// finished row's slot refilled at once, rows written in input order as they complete.
import path from 'node:path';
import { DataError, resolveInsideRoot, type RecordSource } from '../data/records.js';
import type { GenerationRequest } from './engine.js';
import { imageField, pythonStr, textField } from './input.js';
import { writeMetaEntry } from './meta.js';
import { IMAGE_PLACEHOLDER } from './prompts.js';
import { runResumable, runStreaming, type GeneratingOptions, type IndexedItem, type RunSummary } from './runner.js';

/** MMPR's defaults (its argparse), for the options the pipeline takes. */
export const DROPOUT_NTP_DEFAULTS = {
  startRatio: 0.5,
  temperature: 0.7,
  topK: 50,
  topP: 1.0,
  maxNewTokens: 2048,
  numReturnSequences: 1,
  maxNum: 6,
  loadImage: false,
} as const;

/** `_truncate_prefix`: the first int(words · startRatio) words of `chosen` split on ' ', joined, stripped. */
export function dropoutPrefix(chosen: string, startRatio: number): string {
  checkRatio(startRatio);
  const words = chosen.split(' ');
  return words
    .slice(0, Math.trunc(words.length * startRatio))
    .join(' ')
    .trim();
}

function checkRatio(startRatio: number): void {
  if (!(startRatio >= 0 && startRatio <= 1)) throw new RangeError(`startRatio must be in [0, 1], got ${startRatio}`);
}

/** The question as the model sees it: without loadImage every `<image>` removed, else one placed for a lone image. */
export function dropoutQuestion(question: string, images: number, loadImage: boolean): string {
  if (!loadImage || images === 0) return question.split(IMAGE_PLACEHOLDER).join('').trim();
  const present = question.split(IMAGE_PLACEHOLDER).length - 1;
  if (images === 1 && present === 0) return `${IMAGE_PLACEHOLDER}\n${question}`;
  return question;
}

export interface DropoutNtpOptions extends GeneratingOptions {
  startRatio?: number;
  /** Show the model the image (default false: MMPR's _wo_image data); maxNum applies then. */
  loadImage?: boolean;
  /** Where the MMPR meta.json entry goes (default: meta.json beside the output). */
  metaFile?: string;
  /** The entry's name (default: the output file's name without .jsonl). */
  name?: string;
}

interface DropoutItem {
  row: Record<string, unknown>;
  prefix: string;
  request: GenerationRequest;
  key: string;
}

export async function runDropoutNtp(options: DropoutNtpOptions): Promise<RunSummary> {
  const startRatio = options.startRatio ?? DROPOUT_NTP_DEFAULTS.startRatio;
  checkRatio(startRatio);
  const loadImage = options.loadImage ?? DROPOUT_NTP_DEFAULTS.loadImage;
  const n = options.numReturnSequences ?? DROPOUT_NTP_DEFAULTS.numReturnSequences;
  const root = options.imageRoot ?? path.dirname(options.input);
  const keyOf = (row: Record<string, unknown>) =>
    JSON.stringify(loadImage ? [pythonStr(row.image), row.question, row.chosen] : [row.question, row.chosen]);
  const parse = (row: Record<string, unknown>, source: RecordSource): DropoutItem => {
    const [question, chosen] = [textField(row, 'question', source), textField(row, 'chosen', source)];
    const images = imageField(row, source);
    if (loadImage && images.length > 1 && question.split(IMAGE_PLACEHOLDER).length - 1 !== images.length) {
      throw new DataError(source, `question needs one ${IMAGE_PLACEHOLDER} per image (${images.length})`);
    }
    const files = loadImage ? images.map((p) => resolveInsideRoot(root, p, source)) : [];
    const prefix = dropoutPrefix(chosen, startRatio);
    const request: GenerationRequest = {
      question: dropoutQuestion(question, files.length, loadImage),
      images: files,
      prefix,
      maxTiles: options.maxNum ?? DROPOUT_NTP_DEFAULTS.maxNum,
    };
    return { row, prefix, request, key: keyOf(row) };
  };
  const batchSize = options.batchSize ?? 8;
  const lines = (item: DropoutItem, texts: readonly string[]) =>
    texts.map((text) => ({ ...item.row, rejected: item.prefix + text }));
  const common = {
    name: 'dropout-ntp',
    input: options.input,
    output: options.output,
    linesPerRow: n,
    parse,
    inputKey: (item: DropoutItem) => item.key,
    outputKey: keyOf,
    log: options.log,
  };
  const engine = options.engine;
  const summary = engine.stream
    ? await runStreaming<DropoutItem>({
        ...common,
        async *stream(items) {
          const pending = new Map<number, DropoutItem>(); // rows handed to the engine, not back yet
          async function* requests() {
            for await (const { index, item } of items as AsyncIterable<IndexedItem<DropoutItem>>) {
              pending.set(index, item);
              yield { index, request: item.request };
            }
          }
          for await (const { index, texts } of engine.stream!(requests(), n, batchSize)) {
            const item = pending.get(index);
            if (item === undefined)
              throw new Error(`dropout-ntp: the engine returned row ${index}, which it was not given`);
            pending.delete(index);
            yield { index, lines: lines(item, texts) };
          }
        },
      })
    : await runResumable<DropoutItem>({
        ...common,
        batchSize,
        process: async (batch, batchIndex) => {
          const texts = await engine.complete(
            batch.map((item) => item.request),
            n,
            batchIndex,
          );
          return batch.map((item, i) => lines(item, texts[i]!));
        },
      });
  writeMetaEntry(
    options.metaFile ?? path.join(path.dirname(options.output), 'meta.json'),
    options.name ?? entryName(options.output),
    {
      root,
      annotation: options.output,
      length: summary.lines,
    },
  );
  return summary;
}

export function entryName(file: string): string {
  return path.basename(file).replace(/\.jsonl$/, '');
}
