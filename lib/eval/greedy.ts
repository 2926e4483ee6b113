// Batched greedy answering: prompts processed together, left-padded (each row's next token at the
// last position), decoded greedily by generation's batched decoder with a KV cache. Rows leave the
// batch at their stop token, so a batch costs what its longest answer costs. Image placeholders and
// vision markers are never chosen (as in rollouts): they cannot be an answer.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { CausalLM, ModelInputs } from '../models/index.js';
import { generate, nonSampledTokenIds, type FinishReason } from '../generation/index.js';
import type { Processor, Sample } from '../processing/index.js';
import { decodeRecordImages } from '../data/images.js';
import type { PromptRecord } from '../data/records.js';
import type { ProcessorBatch } from '../data/collators.js';
import { inBatches, namingRecords, requireKind, streamRecords, type RecordSource } from './record_source.js';

export interface GreedyOptions {
  /** Prompts decoded together (default 8). */
  batchSize?: number;
  /** The longest answer in tokens (default 128). */
  maxNewTokens?: number;
  /** Tokens that end an answer; default the model config's eos ids. */
  stopTokenIds?: readonly number[];
  /** Keep special tokens in the answer text (InternVL's `<box>`); default false, as model.chat decodes. */
  keepSpecialTokens?: boolean;
}

export interface GreedyAnswer {
  record: PromptRecord;
  /** The decoded answer, stop token left out. */
  text: string;
  /** The generated ids (with the stop token when finishReason is 'stop'). */
  tokens: number[];
  finishReason: FinishReason;
}

/** Greedy answers to `records`, in order, `batchSize` prompts at a time. */
export async function* greedyAnswers(
  model: CausalLM,
  processor: Processor,
  records: RecordSource<PromptRecord>,
  options: GreedyOptions = {},
): AsyncGenerator<GreedyAnswer> {
  for await (const batch of inBatches(streamRecords(records), options.batchSize ?? 8)) {
    yield* await answerBatch(model, processor, batch, options);
  }
}

/** One batch of prompts answered together. */
export async function answerBatch(
  model: CausalLM,
  processor: Processor,
  records: readonly PromptRecord[],
  options: GreedyOptions = {},
): Promise<GreedyAnswer[]> {
  for (const record of records) requireKind(record, 'prompt', 'greedy answering');
  const samples = await Promise.all(records.map(promptSample));
  const batch = await namingRecords<ProcessorBatch>(records, () => processor.process(samples));
  const extras = batch as { imageGridThw?: Tensor | null; imageFlags?: Tensor | null };
  const stops = options.stopTokenIds ?? model.textConfig.eosTokenIds;
  const padded = leftPadded(batch.inputIds, batch.attentionMask, padIdOf(batch));
  // On the model's device (a copy only where it differs); the copies go with the batch below.
  const device = model.lmHead().weight.device;
  const moved: Tensor[] = [];
  const onDevice = (t: Tensor | null | undefined): Tensor | null => {
    if (t === null || t === undefined || t.device === device) return t ?? null;
    const copy = t.to({ device });
    moved.push(copy);
    return copy;
  };
  const inputs: ModelInputs = {
    inputIds: onDevice(padded.inputIds)!,
    attentionMask: onDevice(padded.attentionMask),
    pixelValues: onDevice(batch.pixelValues),
    imageGridThw: onDevice(extras.imageGridThw),
    imageFlags: onDevice(extras.imageFlags),
  };
  const training = model.training;
  model.eval();
  try {
    const out = generate(model, inputs, {
      maxNewTokens: options.maxNewTokens ?? 128,
      doSample: false,
      stopTokenIds: stops,
      suppressTokenIds: nonSampledTokenIds(model).filter((id) => !stops.includes(id)),
    });
    const skipSpecialTokens = options.keepSpecialTokens !== true;
    return records.map((record, i) => {
      const tokens = out.tokens[i]!;
      const reason = out.finishReasons[i]!;
      const answer = reason === 'stop' ? tokens.slice(0, -1) : tokens;
      return { record, text: processor.tokenizer.decode(answer, { skipSpecialTokens }), tokens, finishReason: reason };
    });
  } finally {
    model.train(training);
    for (const t of [
      batch.inputIds,
      batch.attentionMask,
      batch.labels,
      batch.pixelValues,
      padded.inputIds,
      padded.attentionMask,
    ]) {
      t?.dispose();
    }
    extras.imageGridThw?.dispose();
    extras.imageFlags?.dispose();
    for (const t of moved) t.dispose();
  }
}

async function promptSample(record: PromptRecord): Promise<Sample> {
  const sample: Sample = { prompt: record.prompt, images: await decodeRecordImages(record) };
  return record.maxTiles === undefined ? sample : { ...sample, maxTiles: record.maxTiles };
}

// The pad id the processor wrote: any padded position holds it (none padded: it does not matter).
function padIdOf(batch: { inputIds: Tensor; attentionMask: Tensor }): number {
  const ids = batch.inputIds.toArray() as number[][];
  const mask = batch.attentionMask.toArray() as number[][];
  for (let r = 0; r < ids.length; r++) {
    const k = mask[r]!.indexOf(0);
    if (k !== -1) return ids[r]![k]!;
  }
  return 0;
}

/**
 * The batch with each row's tokens moved to the right end (left padding), whatever side the
 * processor padded on: generation reads every row's next token at the last position.
 */
export function leftPadded(
  inputIds: Tensor,
  attentionMask: Tensor,
  padTokenId: number,
): { inputIds: Tensor; attentionMask: Tensor } {
  const ids = inputIds.toArray() as number[][];
  const mask = attentionMask.toArray() as number[][];
  const width = ids[0]?.length ?? 0;
  const rows = ids.map((row, r) => row.filter((_, k) => mask[r]![k] === 1));
  const paddedIds = rows.map((row) => [...Array<number>(width - row.length).fill(padTokenId), ...row]);
  const paddedMask = rows.map((row) => [...Array<number>(width - row.length).fill(0), ...row.map(() => 1)]);
  return {
    inputIds: torch.tensor(paddedIds, { dtype: 'int64' }),
    attentionMask: torch.tensor(paddedMask, { dtype: 'int64' }),
  };
}
