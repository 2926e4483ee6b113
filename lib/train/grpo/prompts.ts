// A generation's prompts, each processed once: its token ids (chat template with the generation
// prompt, image placeholders expanded) and its own vision tensors. The rollout reads them all as one
// left-padded batch; each training micro-batch joins the vision tensors of just its groups' prompts,
// so no pixel row is ever repeated per completion or sliced back out of a batch.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import type { ModelInputs } from '../../models/index.js';
import type { Processor, Sample } from '../../processing/index.js';
import { resolvePadTokenId } from '../../processing/batch.js';
import type { DecodedRecord } from '../../data/images.js';
import { describeSource, type PromptRecord } from '../../data/records.js';

export interface EncodedPrompt {
  record: PromptRecord;
  /** Unpadded token ids of the rendered prompt. */
  ids: number[];
  /** Qwen: [patches, C·T·P·P]; InternVL: [tiles, 3, S, S]; null without images. */
  pixelValues: Tensor | null;
  /** Qwen: [images, 3]. */
  imageGridThw: Tensor | null;
  /** InternVL: [tiles, 1]. */
  imageFlags: Tensor | null;
}

/** The vision inputs of several prompts in order (what a packed micro-batch or a rollout batch reads). */
export interface PromptVision {
  pixelValues: Tensor | null;
  imageGridThw: Tensor | null;
  imageFlags: Tensor | null;
}

/** The processor's sample of a prompt-only record: the prompt rendered with the generation prompt. */
export function promptSample(decoded: DecodedRecord<PromptRecord>): Sample {
  const { record } = decoded;
  const sample: Sample = { prompt: record.prompt, images: decoded.pixels };
  return record.maxTiles === undefined ? sample : { ...sample, maxTiles: record.maxTiles };
}

/**
 * Each record processed alone; a prompt longer than `maxPromptLength` tokens is an error naming its
 * row (verl's truncation: error: cutting a prompt would cut its image tokens).
 */
export async function encodePrompts(
  processor: Processor,
  records: ReadonlyArray<DecodedRecord<PromptRecord>>,
  maxPromptLength: number | null,
): Promise<EncodedPrompt[]> {
  const encoded: EncodedPrompt[] = [];
  try {
    for (const decoded of records) encoded.push(await encodeOne(processor, decoded, maxPromptLength));
  } catch (error) {
    disposePrompts(encoded);
    throw error;
  }
  return encoded;
}

async function encodeOne(
  processor: Processor,
  decoded: DecodedRecord<PromptRecord>,
  maxPromptLength: number | null,
): Promise<EncodedPrompt> {
  const batch = await processor.process([promptSample(decoded)]);
  const ids = torch.tidy(() => Array.from(batch.inputIds.select(0, 0).contiguous().data() as BigInt64Array, Number));
  const extras = batch as { imageGridThw?: Tensor | null; imageFlags?: Tensor | null };
  const prompt: EncodedPrompt = {
    record: decoded.record,
    ids,
    pixelValues: batch.pixelValues,
    imageGridThw: extras.imageGridThw ?? null,
    imageFlags: extras.imageFlags ?? null,
  };
  for (const t of [batch.inputIds, batch.attentionMask, batch.labels]) t.dispose();
  if (maxPromptLength !== null && ids.length > maxPromptLength) {
    disposePrompts([prompt]);
    throw new RangeError(
      `${describeSource(decoded.record.source)}: the prompt has ${ids.length} tokens (images included), over max_prompt_length ${maxPromptLength}; raise it or filter the row`,
    );
  }
  return prompt;
}

/** The prompts' vision tensors concatenated in order (new tensors). */
export function joinVision(prompts: readonly EncodedPrompt[]): PromptVision {
  const cat = (key: keyof PromptVision): Tensor | null => {
    const parts = prompts.map((p) => p[key]).filter((t): t is Tensor => t !== null);
    return parts.length === 0 ? null : torch.cat(parts);
  };
  return { pixelValues: cat('pixelValues'), imageGridThw: cat('imageGridThw'), imageFlags: cat('imageFlags') };
}

/** The prompts as one left-padded batch, as generation takes it (new tensors). */
export function rolloutInputs(processor: Processor, prompts: readonly EncodedPrompt[]): ModelInputs {
  const padTokenId = padTokenOf(processor);
  const width = Math.max(...prompts.map((p) => p.ids.length));
  const ids = new BigInt64Array(prompts.length * width).fill(BigInt(padTokenId));
  const mask = new BigInt64Array(prompts.length * width);
  prompts.forEach((p, r) => {
    const start = r * width + width - p.ids.length;
    p.ids.forEach((id, k) => {
      ids[start + k] = BigInt(id);
      mask[start + k] = 1n;
    });
  });
  const shape = [prompts.length, width];
  return {
    inputIds: torch.tensor(ids, { shape }),
    attentionMask: torch.tensor(mask, { shape }),
    ...joinVision(prompts),
  };
}

export function padTokenOf(processor: Processor): number {
  return resolvePadTokenId(processor.options.padTokenId, processor.tokenizer.padTokenId, processor.source);
}

export function disposePrompts(prompts: readonly EncodedPrompt[]): void {
  for (const p of prompts) for (const t of [p.pixelValues, p.imageGridThw, p.imageFlags]) t?.dispose();
}
