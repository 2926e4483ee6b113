// MMPR's correctness sampling (InternVL `mmpr_data_pipeline_correctness.py`, rl_data.md section
// 2): N sampled reasoning answers to each question with a known answer, the question wrapped in
// one of MMPR's prompt versions. Each output line is the input row with `question` replaced by the
// wrapped prompt, the original kept as `question_orig`, and `response` and `prompt_version` added,
// as MMPR writes them; `vlalign data pairs` turns the file into preference pairs.
import path from 'node:path';
import { DataError, resolveInsideRoot, type RecordSource } from '../data/records.js';
import { PROMPT_VERSIONS, type PromptVersion } from '../rewards/mmpr.js';
import type { GenerationRequest } from './engine.js';
import { imageField, pythonStr, textField } from './input.js';
import { IMAGE_PLACEHOLDER, versionForFile, wrapQuestion } from './prompts.js';
import { runResumable, type GeneratingOptions, type RunSummary } from './runner.js';

/** MMPR's defaults (its argparse; prompt_version has none there and is required). */
export const SAMPLE_DEFAULTS = {
  numReturnSequences: 32,
  temperature: 0.7,
  topK: 50,
  topP: 1.0,
  maxNewTokens: 4096,
  maxNum: 6,
} as const;

export interface SampleOptions extends GeneratingOptions {
  /** MMPR's prompt version (required there too); a `_zh_` input file takes its zh twin. */
  promptVersion: PromptVersion;
}

interface SampleItem {
  row: Record<string, unknown>;
  wrapped: string;
  request: GenerationRequest;
  key: string;
}

/** MMPR's resume key: (str(image), question_orig) for rows with images, else the question. */
function sampleKey(image: unknown, question: unknown): string {
  const hasImage =
    image !== undefined && image !== null && image !== '' && !(Array.isArray(image) && image.length === 0);
  return JSON.stringify(hasImage ? [pythonStr(image), question] : [question]);
}

export async function runCorrectnessSampling(options: SampleOptions): Promise<RunSummary> {
  if (!PROMPT_VERSIONS.includes(options.promptVersion)) {
    throw new RangeError(
      `Expected one of ${PROMPT_VERSIONS.join(', ')} for promptVersion but received ${options.promptVersion}`,
    );
  }
  const version = versionForFile(options.promptVersion, path.basename(options.input));
  const n = options.numReturnSequences ?? SAMPLE_DEFAULTS.numReturnSequences;
  const root = options.imageRoot ?? path.dirname(options.input);
  const parse = (row: Record<string, unknown>, source: RecordSource): SampleItem => {
    const question = textField(row, 'question', source);
    answerText(row, source);
    const images = imageField(row, source);
    const wrapped = wrapQuestion(question, version, images.length > 0);
    const placed = wrapped.split(IMAGE_PLACEHOLDER).length - 1;
    if (images.length > 0 && placed !== images.length) {
      throw new DataError(source, `question has ${placed} ${IMAGE_PLACEHOLDER} for ${images.length} images`);
    }
    const request: GenerationRequest = {
      question: wrapped,
      images: images.map((p) => resolveInsideRoot(root, p, source)),
      maxTiles: options.maxNum ?? SAMPLE_DEFAULTS.maxNum,
    };
    return { row, wrapped, request, key: sampleKey(row.image, question) };
  };
  return runResumable<SampleItem>({
    name: 'sample',
    input: options.input,
    output: options.output,
    batchSize: options.batchSize ?? 8,
    linesPerRow: n,
    parse,
    inputKey: (item) => item.key,
    outputKey: (line) => sampleKey(line.image, line.question_orig),
    log: options.log,
    process: async (batch, batchIndex) => {
      const texts = await options.engine.complete(
        batch.map((item) => item.request),
        n,
        batchIndex,
      );
      return batch.map((item, i) =>
        texts[i]!.map((response) => {
          const line: Record<string, unknown> = { ...item.row, question_orig: item.row.question };
          line.question = item.wrapped; // in place, as `item['question'] = ...` keeps the key's position
          return { ...line, response, prompt_version: version };
        }),
      );
    },
  });
}

/** `answer` as a string (MMPR compares strings; a number is taken as its text). */
export function answerText(row: Record<string, unknown>, source: RecordSource): string {
  const value = row.answer;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  throw new DataError(
    source,
    `"answer" must be a string or a number, got ${value === undefined ? 'nothing' : typeof value}`,
  );
}
