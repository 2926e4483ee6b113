// Where a pipeline's completions come from. The default engine samples from a loaded model two
// ways: `complete`, a batch at a time with generation's batched rollout (each prompt prefilled
// once, its n completions decoded together; every batch seeded from the run's seed and the batch's
// index in the input), and `stream`, continuous batching (generateContinuous: a finished row's
// slot goes to the next prompt at once; row i's completion k samples from its own stream (seed,
// i, k), so a resumed run samples every row it redoes exactly as an uninterrupted one would).
// Vision tokens are never sampled. Tests and dry runs plug in a scripted engine (`complete` only).
import type { Tensor } from '../torch/index.js';
import type { CausalLM, ModelInputs } from '../models/index.js';
import {
  generate,
  generateContinuous,
  nonSampledTokenIds,
  rollout,
  type ContinuousPrompt,
  type GenerateOptions,
} from '../generation/index.js';
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
  /**
   * Continuous batching (optional): `n` completions of each request, yielded as each request's last
   * one ends (any order), with up to `rows` requests decoding at once. A request's `index` (its row
   * in the input) picks its random stream, so its completions do not depend on its neighbours.
   */
  stream?(requests: AsyncIterable<StreamRequest>, n: number, rows: number): AsyncIterable<StreamResult>;
}

export interface StreamRequest {
  index: number;
  request: GenerationRequest;
}

export interface StreamResult {
  index: number;
  /** The request's n completions. */
  texts: string[];
}

export interface SamplingSettings {
  temperature: number;
  topK: number;
  topP: number;
  maxNewTokens: number;
  /** `complete`: batch b samples after torch.manualSeed(seed + b); `stream`: row i's completion k from streamUniform(seed, i, k, step). */
  seed: number;
  /** Tokens that end a completion (default: the model config's eos ids). */
  stopTokenIds?: readonly number[];
}

/** Samples from `model` (eval mode) with `processor`'s chat template, tokenizer and image processing. */
export function modelEngine(model: CausalLM, processor: Processor, settings: SamplingSettings): GenerationEngine {
  if (!(settings.temperature > 0)) throw new RangeError(`temperature must be > 0, got ${settings.temperature}`);
  const stops = [...(settings.stopTokenIds ?? model.textConfig.eosTokenIds)];
  const sampling = () => ({
    doSample: true,
    temperature: settings.temperature,
    topK: settings.topK,
    topP: settings.topP,
    maxNewTokens: settings.maxNewTokens,
    stopTokenIds: stops,
    suppressTokenIds: nonSampledTokenIds(model, processor.tokenizer).filter((id) => !stops.includes(id)),
  });
  const text = (tokens: number[], reason: string) =>
    processor.tokenizer.decode(reason === 'stop' ? tokens.slice(0, -1) : tokens, { skipSpecialTokens: true });
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
      const training = model.training;
      model.eval();
      try {
        const options: GenerateOptions = { ...sampling(), seed: settings.seed + batchIndex };
        // One completion per prompt (DropoutNTP's default) needs no widened cache.
        const out =
          n === 1 ? generate(model, inputs, options) : rollout(model, inputs, { ...options, numGenerations: n });
        return requests.map((_, i) =>
          out.tokens.slice(i * n, (i + 1) * n).map((tokens, k) => text(tokens, out.finishReasons[i * n + k]!)),
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

    async *stream(requests, n, rows) {
      // Each request is processed alone (one unpadded row) as the batch asks for it.
      async function* prompts(): AsyncGenerator<ContinuousPrompt<number>> {
        for await (const { index, request } of requests) {
          const batch = await processor.process([requestSample(request, processor)]);
          const extras = batch as { imageGridThw?: Tensor | null; imageFlags?: Tensor | null };
          batch.labels?.dispose();
          yield {
            key: index,
            stream: index,
            inputs: {
              inputIds: batch.inputIds,
              attentionMask: batch.attentionMask,
              pixelValues: batch.pixelValues,
              imageGridThw: extras.imageGridThw ?? null,
              imageFlags: extras.imageFlags ?? null,
            },
          };
        }
      }
      const training = model.training;
      model.eval();
      try {
        const options = { ...sampling(), seed: settings.seed, maxRows: rows * n, numSequences: n };
        for await (const out of generateContinuous(model, prompts(), options)) {
          yield { index: out.key, texts: out.tokens.map((tokens, k) => text(tokens, out.finishReasons[k]!)) };
        }
      } finally {
        model.train(training);
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
