// GRPO rollouts without repeated work: G completions of each of B prompts from ONE prefill.
// TRL repeats every prompt G times (RepeatSampler), image included, so the vision tower and the
// prompt's forward run G times on identical input. Here the B prompts run once (each image through
// the vision tower once), then the KV cache, Qwen's rope deltas, the mask and the last logits are
// widened to B·G rows in TRL's order (prompt b's completions at rows b·G .. b·G + G − 1, as
// repeat_interleave), and the B·G rows decode together.
//
// logprobs[r][k] is log softmax(logits / temperature)[token] of the policy's unmodified logits: no
// token suppression, no top-k / top-p. That is TRL's old_per_token_logps (a forward over prompt +
// completion, logits / temperature, selective_log_softmax; with num_iterations 1 it is the
// detached current policy), so it can be GrpoLoss's oldLogps without a second forward: the first
// iteration's ratio is then 1 up to float rounding. It is not the probability the token was
// drawn with when top-k / top-p / suppression changed the sampling distribution.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { KVCache } from '../nn/index.js';
import { InternVLChatModel, QwenVLForConditionalGeneration, type CausalLM, type ModelInputs } from '../models/index.js';
import {
  checkLeftPadded,
  checkMaxNewTokens,
  decode,
  prefill,
  type DecodeState,
  type FinishReason,
  type GenerateOptions,
} from './generate.js';
import { repeatedIndex } from './repeat_prompts.js';

export interface RolloutOptions extends GenerateOptions {
  /** G: completions per prompt (TRL's num_generations). */
  numGenerations: number;
  /** Greedy when false; default true here (GRPO samples), unlike generate. */
  doSample?: boolean;
  /**
   * Tokens never sampled. Default: the model's vision special tokens (nonSampledTokenIds). Stop
   * tokens are never suppressed (Qwen's pad, <|endoftext|>, is also one of its eos ids).
   */
  suppressTokenIds?: readonly number[];
}

export interface RolloutResult {
  /** B·G rows, prompt b's G completions at rows b·G .. b·G + G − 1; each ends with its stop token if it has one. */
  tokens: number[][];
  /** Per row and token: log softmax(logits / temperature) of the unmodified logits (the old-policy log-probs). */
  logprobs: number[][];
  finishReasons: FinishReason[];
  /** Per row: cut at maxNewTokens without a stop token (TRL's mask_truncated_completions reads this). */
  truncated: boolean[];
  /** Per row: the prompt row b it continues. */
  promptIndex: number[];
}

export function rollout(model: CausalLM, prompts: ModelInputs, options: RolloutOptions): RolloutResult {
  const g = options.numGenerations;
  if (!Number.isInteger(g) || g < 1) {
    throw new RangeError(`Expected a positive integer for numGenerations but received ${g}`);
  }
  checkMaxNewTokens(options.maxNewTokens);
  checkLeftPadded(prompts.attentionMask ?? null);
  const [rows, promptLength] = prompts.inputIds.shape as [number, number];
  const stops = options.stopTokenIds ?? model.textConfig.eosTokenIds;
  const suppress = (options.suppressTokenIds ?? nonSampledTokenIds(model)).filter((id) => !stops.includes(id));
  const sampling: GenerateOptions = { doSample: true, ...options, stopTokenIds: stops, suppressTokenIds: suppress };
  if (options.seed !== undefined) torch.manualSeed(options.seed);
  const device = prompts.inputIds.device;
  const cache = new KVCache();
  const promptMask = (
    prompts.attentionMask?.clone() ?? torch.ones([rows, promptLength], { dtype: 'int64', device })
  ).keep();
  let widened: DecodeState | null = null;
  try {
    widened = widen(
      { cache, mask: promptMask, logits: prefill(model, { ...prompts, attentionMask: promptMask }, cache) },
      g,
    );
    const out = decode(model, widened, sampling);
    return {
      ...out,
      truncated: out.finishReasons.map((reason) => reason === 'length'),
      promptIndex: Array.from({ length: rows * g }, (_, r) => Math.floor(r / g)),
    };
  } finally {
    cache.dispose();
    promptMask.dispose();
    widened?.mask.dispose();
  }
}

// A prefilled state of B rows as B·G: cache keys, values and rope deltas, the mask and the next
// logits each row b repeated G times (rows b·G .. b·G + G − 1). Disposes state.logits.
function widen(state: DecodeState, g: number): DecodeState {
  const rows = state.mask.shape[0]!;
  const index = repeatedIndex(rows, g, state.mask.device);
  try {
    state.cache.selectRows(index);
    return {
      cache: state.cache,
      mask: state.mask.indexSelect(0, index).keep(),
      logits: state.logits.indexSelect(0, index).keep(),
    };
  } finally {
    index.dispose();
    state.logits.dispose();
  }
}

/**
 * Ids a completion must never contain: the image / video placeholders and vision markers of the
 * model's config (Qwen: image_pad, video_pad, vision_start, vision_end, vision_pad; InternVL:
 * <IMG_CONTEXT>), plus, given its tokenizer, the pad token and every vision marker the
 * vocabulary has (InternVL's <img> and </img> are only there).
 */
export function nonSampledTokenIds(
  model: CausalLM,
  tokenizer?: { padTokenId: number | null; findTokenId(token: string): number | null },
): number[] {
  const ids = new Set<number>();
  const raw = model.rawConfig as Record<string, unknown>;
  if (model instanceof QwenVLForConditionalGeneration) {
    for (const key of QWEN_CONFIG_KEYS) if (typeof raw[key] === 'number') ids.add(raw[key] as number);
    ids.add(model.tokens.imageTokenId).add(model.tokens.videoTokenId).add(model.tokens.visionStartTokenId);
  }
  if (model instanceof InternVLChatModel && model.imgContextTokenId !== null) ids.add(model.imgContextTokenId);
  if (tokenizer) {
    if (tokenizer.padTokenId !== null) ids.add(tokenizer.padTokenId);
    for (const token of VISION_TOKENS) {
      const id = tokenizer.findTokenId(token);
      if (id !== null) ids.add(id);
    }
  }
  return [...ids].filter((id) => id < model.textConfig.vocabSize).sort((a, b) => a - b);
}

const QWEN_CONFIG_KEYS = [
  'image_token_id',
  'video_token_id',
  'vision_start_token_id',
  'vision_end_token_id',
  'vision_token_id',
];

const VISION_TOKENS = [
  '<|vision_start|>',
  '<|vision_end|>',
  '<|vision_pad|>',
  '<|image_pad|>',
  '<|video_pad|>',
  '<img>',
  '</img>',
  '<IMG_CONTEXT>',
];

/**
 * The rollout's log-probs laid out like collateRollouts' targets for the same rows: [S, P + C]
 * float32, token k of row s at column P + k − 1 (the position that predicts it), 0 elsewhere; C is
 * the longest completion. GrpoLoss takes it as oldLogps.
 */
export function logprobsTensor(logprobs: readonly (readonly number[])[], promptLength: number): Tensor {
  if (!Number.isInteger(promptLength) || promptLength < 1) {
    throw new RangeError(`Expected a positive integer for promptLength but received ${promptLength}`);
  }
  const width = promptLength + Math.max(0, ...logprobs.map((row) => row.length));
  const data = new Float32Array(logprobs.length * width);
  logprobs.forEach((row, s) => row.forEach((lp, k) => (data[s * width + promptLength + k - 1] = lp)));
  return torch.tensor(data, { shape: [logprobs.length, width] });
}
