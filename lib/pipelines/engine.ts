// Where a pipeline's completions come from. The default engine samples from a loaded model with
// generation's batched rollout (each prompt prefilled once, its n completions decoded together,
// vision tokens never sampled); tests and dry runs plug in a scripted engine. Every batch is
// seeded from the run's seed and the batch's index in the input, so a resumed run samples the
// batches it redoes exactly as an uninterrupted one would.
import type { Tensor } from '../torch/index.js';
import type { CausalLM, ModelInputs } from '../models/index.js';
import { generate, nonSampledTokenIds, rollout, type GenerateOptions } from '../generation/index.js';
import { Qwen2VlProcessor, type Processor, type Sample } from '../processing/index.js';
import type { ChatMessage } from '../processing/messages.js';
import { splitImageTokens } from '../data/prompts.js';
import { leftPadded } from '../eval/greedy.js';

/** One prompt: a user turn (with `<image>` placeholders for `images`) and an optional assistant prefix. */
export interface GenerationRequest {
  question: string;
  /** Image files, in placeholder order. */
  images: readonly string[];
  /** Text the assistant turn starts with; the completion continues it (DropoutNTP). */
  prefix?: string;
  /** InternVL's tile budget per image (MMPR's --max-num). */
  maxTiles?: number;
}

export interface GenerationEngine {
  /** `n` completions of each request (the text after the prompt and prefix); batchIndex seeds it. */
  complete(requests: readonly GenerationRequest[], n: number, batchIndex: number): Promise<string[][]>;
}

export interface SamplingSettings {
  temperature: number;
  topK: number;
  topP: number;
  maxNewTokens: number;
  /** Batch b samples after torch.manualSeed(seed + b). */
  seed: number;
}

/** Samples from `model` (eval mode) with `processor`'s chat template, tokenizer and image processing. */
export function modelEngine(model: CausalLM, processor: Processor, settings: SamplingSettings): GenerationEngine {
  if (!(settings.temperature > 0)) throw new RangeError(`temperature must be > 0, got ${settings.temperature}`);
  return {
    async complete(requests, n, batchIndex) {
      const batch = await processor.process(requests.map((r) => requestSample(r, processor)));
      const extras = batch as { imageGridThw?: Tensor | null; imageFlags?: Tensor | null };
      const padded = leftPadded(batch.inputIds, batch.attentionMask, 0); // padding is masked: any id does
      const inputs: ModelInputs = {
        ...padded,
        pixelValues: batch.pixelValues,
        imageGridThw: extras.imageGridThw ?? null,
        imageFlags: extras.imageFlags ?? null,
      };
      const stops = model.textConfig.eosTokenIds;
      const training = model.training;
      model.eval();
      try {
        const options: GenerateOptions = {
          doSample: true,
          temperature: settings.temperature,
          topK: settings.topK,
          topP: settings.topP,
          maxNewTokens: settings.maxNewTokens,
          seed: settings.seed + batchIndex,
          stopTokenIds: stops,
          suppressTokenIds: nonSampledTokenIds(model, processor.tokenizer).filter((id) => !stops.includes(id)),
        };
        // One completion per prompt (DropoutNTP's default) needs no widened cache.
        const out =
          n === 1 ? generate(model, inputs, options) : rollout(model, inputs, { ...options, numGenerations: n });
        return requests.map((_, i) =>
          out.tokens.slice(i * n, (i + 1) * n).map((tokens, k) => {
            const kept = out.finishReasons[i * n + k] === 'stop' ? tokens.slice(0, -1) : tokens;
            return processor.tokenizer.decode(kept, { skipSpecialTokens: true });
          }),
        );
      } finally {
        model.train(training);
        for (const t of [batch.inputIds, batch.attentionMask, batch.labels, batch.pixelValues, padded.inputIds])
          t?.dispose();
        padded.attentionMask.dispose();
        extras.imageGridThw?.dispose();
        extras.imageFlags?.dispose();
      }
    },
  };
}

/** A request as a processor sample: Qwen's template wants image parts, InternVL's reads `<image>` text. */
function requestSample(request: GenerationRequest, processor: Processor): Sample {
  const user: ChatMessage[] = [{ role: 'user', content: request.question }];
  const prompt = request.images.length > 0 && processor instanceof Qwen2VlProcessor ? splitImageTokens(user) : user;
  const sample: Sample = { prompt, images: [...request.images] };
  if (request.prefix !== undefined && request.prefix !== '') sample.completion = request.prefix;
  if (request.maxTiles !== undefined) sample.maxTiles = request.maxTiles;
  return sample;
}

/**
 * An engine that answers from a function: `script(request, k, batchIndex)` is completion k of the
 * request. For tests and for runs that replay responses produced elsewhere.
 */
export function scriptedEngine(
  script: (request: GenerationRequest, k: number, batchIndex: number) => string,
): GenerationEngine {
  return {
    async complete(requests, n, batchIndex) {
      return requests.map((request) => Array.from({ length: n }, (_, k) => script(request, k, batchIndex)));
    },
  };
}
