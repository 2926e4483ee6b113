// Batched autoregressive decoding with a KV cache, for evaluation and RL rollouts. Prompts come
// left-padded (so every row's next token sits at the last position); rows leave the batch when they
// emit a stop token, and the cache drops them too. prefill and decode are the two halves, apart so
// that rollouts can widen the cache between them (one prefill for a prompt's G completions).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { KVCache } from '../nn/index.js';
import { lockstepOf, type CausalLM, type ModelInputs } from '../models/index.js';
import { chooseNext, type SamplingOptions } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Tokens that end a sequence (included in its output); default: the model config's eos ids. */
  stopTokenIds?: readonly number[];
  /** Seeds torch's generator before sampling, for reproducible rollouts. */
  seed?: number;
}

export type FinishReason = 'stop' | 'length';

export interface GenerateResult {
  /** Per prompt, the generated ids (ending with the stop token when finishReason is 'stop'). */
  tokens: number[][];
  /** Per prompt and token, the log-probability under softmax(logits / temperature). */
  logprobs: number[][];
  finishReasons: FinishReason[];
}

export function generate(model: CausalLM, inputs: ModelInputs, options: GenerateOptions): GenerateResult {
  checkMaxNewTokens(options.maxNewTokens);
  const [batch, promptLength] = inputs.inputIds.shape as [number, number];
  checkLeftPadded(inputs.attentionMask ?? null);
  if (options.seed !== undefined) torch.manualSeed(options.seed);
  const cache = new KVCache();
  const mask = (inputs.attentionMask?.clone() ?? torch.ones([batch, promptLength], { dtype: 'int64' })).keep();
  try {
    const logits = prefill(model, { ...inputs, attentionMask: mask }, cache);
    return decode(model, { cache, mask, logits }, options);
  } finally {
    cache.dispose();
    mask.dispose();
  }
}

/** Where decoding starts: a filled cache, its attention mask [B, K] and the next logits [B, V]. */
export interface DecodeState {
  cache: KVCache;
  mask: Tensor;
  logits: Tensor;
}

/** Runs the prompts through the model into an empty `cache`; the last position's logits [B, V]. */
export function prefill(model: CausalLM, inputs: ModelInputs, cache: KVCache): Tensor {
  return torch.noGrad(() => lastLogits(model, inputs, cache));
}

/**
 * Samples up to maxNewTokens per row from `state` (the seed, if any, is the caller's to set).
 * Disposes state.logits; the cache and state.mask stay the caller's to dispose. A model in lockstep
 * (ZeRO-3 ranks, models/lockstep.ts) decodes as transformers' synced_gpus: each step the ranks
 * agree whether any row anywhere is unfinished, and a rank whose rows are all done keeps running
 * the forward on one idle row (its output dropped, no sampling) until every rank is done.
 */
export function decode(model: CausalLM, state: DecodeState, options: GenerateOptions): GenerateResult {
  const { cache } = state;
  const batch = state.mask.shape[0]!;
  const stops = new Set(options.stopTokenIds ?? model.textConfig.eosTokenIds);
  const result: GenerateResult = {
    tokens: [...Array(batch)].map(() => []),
    logprobs: [...Array(batch)].map(() => []),
    finishReasons: Array(batch).fill('length'),
  };
  const lockstep = lockstepOf(model);
  let mask = state.mask.clone().keep(); // our own: rows leave it and columns join it
  let live = [...Array(batch).keys()]; // original row of each batch row still decoding
  let next = state.logits;
  let idle = false; // lockstep only: this rank's rows are done, another rank's are not
  try {
    for (let step = 0; step < options.maxNewTokens && live.length > 0; step++) {
      const keep: number[] = [];
      const tokens: number[] = [];
      if (!idle) {
        const choice = chooseNext(next, options);
        tokens.push(...(choice.tokens.toArray() as number[]));
        const logprobs = choice.logprobs.toArray() as number[];
        choice.tokens.dispose();
        choice.logprobs.dispose();
        tokens.forEach((token, i) => {
          const row = live[i]!;
          result.tokens[row]!.push(token);
          result.logprobs[row]!.push(logprobs[i]!);
          if (stops.has(token)) result.finishReasons[row] = 'stop';
          else keep.push(i);
        });
      }
      next.dispose();
      if (step + 1 === options.maxNewTokens) break;
      const unfinished = keep.length > 0;
      if (!(lockstep === null ? unfinished : lockstep.any(unfinished))) break;
      if (!unfinished && !idle) {
        // Done here, not everywhere: one row stays in the cache and steps on a stop token.
        ({ mask, live } = dropFinished(cache, mask, live, [0]));
        idle = true;
      }
      if (unfinished) ({ mask, live } = dropFinished(cache, mask, live, keep));
      const ids = torch.tensor(idle ? [[[...stops][0] ?? 0]] : keep.map((i) => [tokens[i]!]), {
        dtype: 'int64',
        device: mask.device,
      });
      mask = extend(mask);
      next = torch.noGrad(() => lastLogits(model, { inputIds: ids, attentionMask: mask }, cache));
      ids.dispose();
    }
  } finally {
    next.dispose(); // a no-op once chosen from
    mask.dispose();
  }
  return result;
}

export function checkMaxNewTokens(maxNewTokens: number): void {
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new RangeError(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  }
}

// Runs the model on new tokens and returns the last position's logits [B, V] (lm_head on one row).
export function lastLogits(model: CausalLM, inputs: ModelInputs, cache: KVCache): Tensor {
  return torch
    .tidy(() => {
      const { hidden } = model.forward(inputs, { cache, logits: false });
      const head = model.lmHead();
      return torch.nn.functional.linear(hidden.select(1, -1), head.weight, head.bias);
    })
    .keep();
}

function dropFinished(cache: KVCache, mask: Tensor, live: number[], keep: number[]): { mask: Tensor; live: number[] } {
  if (keep.length === live.length) return { mask, live };
  const index = torch.tensor(keep, { dtype: 'int64', device: mask.device });
  cache.selectRows(index);
  const kept = mask.indexSelect(0, index).keep();
  index.dispose();
  mask.dispose();
  return { mask: kept, live: keep.map((i) => live[i]!) };
}

function extend(mask: Tensor): Tensor {
  const grown = torch
    .tidy(() => torch.cat([mask, torch.ones([mask.shape[0]!, 1], { dtype: mask.dtype, device: mask.device })], 1))
    .keep();
  mask.dispose();
  return grown;
}

export function checkLeftPadded(mask: Tensor | null): void {
  if (mask === null) return;
  const rows = mask.toArray() as number[][];
  rows.forEach((row, b) => {
    if (row[row.length - 1] !== 1)
      throw new Error(`generate: attention_mask row ${b} ends with padding; pad prompts on the left`);
  });
}
