// Continuous batching: up to maxRows completions decode together, and a completion that ends (stop
// token or maxNewTokens) leaves the batch at once while the next prompts take its place, as serving
// engines (lmdeploy, vLLM) schedule; generate() instead decodes a fixed batch until its longest row
// ends. Prompts stream in one at a time and each prompt's result is yielded when its last
// completion ends, in the order they end.
//
// The batch is one KV cache, left-padded: every row's real tokens are the last `length` columns.
// Admitting prompts = prefilling them together (left-padded among themselves) into a cache of their
// own, then composing a new cache from the running rows and the new ones: both right-aligned to the
// longest real length (shorter rows get zero keys / values on the left, masked out), so columns
// that are padding in every row are dropped, as they are when rows leave. Positions stay each row's
// own: Qwen2 / InternVL number tokens from the attention mask (real tokens before it), and Qwen2-VL
// decodes at cache length + the row's rope delta, which the compose shifts by the change in cache
// length, so rows with images keep their M-RoPE offsets.
//
// Sampling draws each completion's tokens from its own stream (streamUniform(seed, stream, k,
// step), inverse CDF after sampling.ts's suppression, temperature, top-k and top-p), so a
// completion is the same whether it decodes alone or among any other rows, up to float rounding
// in batched kernels (a token whose uniform falls within rounding of a CDF boundary).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { KVCache } from '../nn/index.js';
import type { CausalLM, ModelInputs } from '../models/index.js';
import { checkMaxNewTokens, lastLogits, prefill, type FinishReason, type GenerateOptions } from './generate.js';
import { streamUniform } from './row_random.js';
import { chooseNext } from './sampling.js';

export interface ContinuousPrompt<K> {
  /** Handed back with the prompt's result. */
  key: K;
  /**
   * ONE prompt without padding: inputIds [1, L] (attentionMask, when given, all ones) and its
   * images. generateContinuous owns these tensors: it disposes them once the prompt is prefilled.
   */
  inputs: ModelInputs;
  /** The prompt's random stream: completion k draws streamUniform(seed, stream, k, step). */
  stream: number;
}

export interface ContinuousOptions extends Omit<GenerateOptions, 'seed'> {
  /** Completions decoding at once, at most (batch rows in flight); at least numSequences. */
  maxRows: number;
  /** Completions per prompt, decoded from one prefill (default 1). */
  numSequences?: number;
  /** Seeds every stream (default 0). */
  seed?: number;
}

export interface ContinuousResult<K> {
  key: K;
  /** Per completion, the generated ids (ending with the stop token when finishReasons says 'stop'). */
  tokens: number[][];
  /** Per completion and token, the log-probability under softmax(logits / temperature). */
  logprobs: number[][];
  finishReasons: FinishReason[];
}

/**
 * Decodes `prompts` with continuous batching and yields each prompt's result when its last
 * completion ends (not in prompt order: key says which). Prompts are read lazily, as slots free up.
 */
export async function* generateContinuous<K>(
  model: CausalLM,
  prompts: Iterable<ContinuousPrompt<K>> | AsyncIterable<ContinuousPrompt<K>>,
  options: ContinuousOptions,
): AsyncGenerator<ContinuousResult<K>> {
  checkMaxNewTokens(options.maxNewTokens);
  const n = options.numSequences ?? 1;
  positiveInt(n, 'numSequences');
  positiveInt(options.maxRows, 'maxRows');
  if (options.maxRows < n) {
    throw new RangeError(`maxRows (${options.maxRows}) must hold one prompt's ${n} completions (numSequences)`);
  }
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`Expected a non-negative integer for seed but received ${seed}`);
  }
  const stops = new Set(options.stopTokenIds ?? model.textConfig.eosTokenIds);
  const source = iteratorOf(prompts);
  const batch = new RunningBatch<K>(model);
  let exhausted = false;
  let ordinal = 0;
  try {
    for (;;) {
      const group: Array<ContinuousPrompt<K>> = [];
      while (!exhausted && batch.rows + (group.length + 1) * n <= options.maxRows) {
        const next = await source.next();
        if (next.done) exhausted = true;
        else group.push(checkPrompt(next.value, ordinal++));
      }
      if (group.length > 0) batch.admit(group, n);
      if (batch.rows === 0) return;
      for (const done of batch.step(options, stops, seed)) yield done;
    }
  } finally {
    batch.dispose();
    await source.return?.();
  }
}

/** One prompt's completions while they decode. */
interface PromptState<K> {
  result: ContinuousResult<K>;
  /** Completions still decoding. */
  open: number;
}

/** A batch row: completion k of a prompt. */
interface Slot<K> {
  prompt: PromptState<K>;
  k: number;
  stream: number;
  /** Real (unpadded) tokens of this row in the cache. */
  length: number;
}

// The rows in flight: their cache, attention mask [B, W] and next-token logits [B, V].
class RunningBatch<K> {
  #cache: KVCache | null = null;
  #mask: Tensor | null = null;
  #logits: Tensor | null = null;
  #slots: Array<Slot<K>> = [];

  constructor(readonly model: CausalLM) {}

  get rows(): number {
    return this.#slots.length;
  }

  /** Prefills `group` (left-padded together) and joins its rows, each prompt's n completions adjacent. */
  admit(group: ReadonlyArray<ContinuousPrompt<K>>, n: number): void {
    const lengths = group.map((p) => p.inputs.inputIds.shape[1]!);
    const cache = new KVCache();
    let logits: Tensor;
    try {
      const inputs = stackPrompts(group, lengths);
      try {
        logits = prefill(this.model, inputs, cache);
      } finally {
        disposeInputs(inputs);
      }
    } catch (error) {
      cache.dispose();
      throw error;
    } finally {
      for (const p of group) disposeInputs(p.inputs);
    }
    const repeat = group.flatMap((_, i) => Array<number>(n).fill(i));
    const added: Array<Slot<K>> = group.flatMap((p) => {
      const state: PromptState<K> = {
        result: { key: p.key, tokens: [], logprobs: [], finishReasons: [] },
        open: n,
      };
      for (let k = 0; k < n; k++) {
        state.result.tokens.push([]);
        state.result.logprobs.push([]);
        state.result.finishReasons.push('length');
      }
      return Array.from({ length: n }, (_, k) => ({ prompt: state, k, stream: p.stream, length: 0 }));
    });
    added.forEach((slot, i) => (slot.length = lengths[repeat[i]!]!));
    try {
      const parts: CachePart[] = [{ cache, rows: repeat, lengths: added.map((s) => s.length) }];
      if (this.#cache !== null)
        parts.unshift({ cache: this.#cache, rows: null, lengths: this.#slots.map((s) => s.length) });
      this.#replace(compose(this.model, parts, logits.device));
      const index = torch.tensor(repeat, { dtype: 'int64', device: logits.device });
      const widened = torch.tidy(() => {
        const rows = logits.indexSelect(0, index);
        return this.#logits === null ? rows : torch.cat([this.#logits, rows], 0);
      });
      index.dispose();
      this.#logits?.dispose();
      this.#logits = widened.keep();
      this.#slots.push(...added);
    } finally {
      cache.dispose();
      logits.dispose();
    }
  }

  /**
   * Chooses every row's next token, records it, lets finished rows go and runs the rest one step;
   * returns the prompts whose last completion just ended.
   */
  step(options: ContinuousOptions, stops: ReadonlySet<number>, seed: number): Array<ContinuousResult<K>> {
    const logits = this.#logits!;
    this.#logits = null;
    let uniforms: Tensor | undefined;
    if (options.doSample) {
      const draws = this.#slots.map((s) => streamUniform(seed, s.stream, s.k, s.prompt.result.tokens[s.k]!.length));
      uniforms = torch.tensor(Float32Array.from(draws), { device: logits.device });
    }
    const choice = chooseNext(logits, options, uniforms);
    logits.dispose();
    uniforms?.dispose();
    const tokens = choice.tokens.toArray() as number[];
    const logprobs = choice.logprobs.toArray() as number[];
    choice.tokens.dispose();
    choice.logprobs.dispose();
    const keep: number[] = [];
    const done: Array<ContinuousResult<K>> = [];
    this.#slots.forEach((slot, i) => {
      const { result } = slot.prompt;
      const own = result.tokens[slot.k]!;
      own.push(tokens[i]!);
      result.logprobs[slot.k]!.push(logprobs[i]!);
      if (stops.has(tokens[i]!)) result.finishReasons[slot.k] = 'stop';
      else if (own.length < options.maxNewTokens) {
        keep.push(i);
        return;
      }
      slot.prompt.open -= 1;
      if (slot.prompt.open === 0) done.push(result);
    });
    if (keep.length === 0) {
      this.#clear();
      return done;
    }
    if (keep.length < this.#slots.length) {
      const slots = keep.map((i) => this.#slots[i]!);
      const part = { cache: this.#cache!, rows: keep, lengths: slots.map((s) => s.length) };
      this.#replace(compose(this.model, [part], this.#mask!.device));
      this.#slots = slots;
    }
    const ids = torch.tensor(
      keep.map((i) => [tokens[i]!]),
      { dtype: 'int64', device: this.#mask!.device },
    );
    const grown = torch
      .tidy(() => {
        const mask = this.#mask!;
        return torch.cat([mask, torch.ones([mask.shape[0]!, 1], { dtype: mask.dtype, device: mask.device })], 1);
      })
      .keep();
    this.#mask!.dispose();
    this.#mask = grown;
    try {
      this.#logits = torch.noGrad(() => lastLogits(this.model, { inputIds: ids, attentionMask: grown }, this.#cache!));
    } finally {
      ids.dispose();
    }
    for (const slot of this.#slots) slot.length += 1;
    return done;
  }

  #replace(next: { cache: KVCache; mask: Tensor }): void {
    this.#cache?.dispose();
    this.#mask?.dispose();
    this.#cache = next.cache;
    this.#mask = next.mask;
  }

  #clear(): void {
    this.#cache?.dispose();
    this.#mask?.dispose();
    this.#logits?.dispose();
    this.#cache = null;
    this.#mask = null;
    this.#logits = null;
    this.#slots = [];
  }

  dispose(): void {
    this.#clear();
  }
}

/** Rows of one cache that go into a composed cache: `rows` (null: all, in order) and their real lengths. */
interface CachePart {
  cache: KVCache;
  rows: number[] | null;
  lengths: number[];
}

/**
 * A new cache holding the parts' rows in order, right-aligned to W = the longest real length: a
 * part wider than W loses leading columns (padding in each of its rows), a narrower one gets zero
 * columns in front. Rope deltas (Qwen2-VL) shift by the part's width − W so each row's next
 * position (width + delta) is unchanged. The mask [rows, W] marks each row's last `length` columns.
 */
function compose(
  model: CausalLM,
  parts: readonly CachePart[],
  device: Tensor['device'],
): { cache: KVCache; mask: Tensor } {
  const lengths = parts.flatMap((p) => p.lengths);
  const width = Math.max(...lengths);
  const out = new KVCache();
  try {
    torch.noGrad(() =>
      torch.tidy(() => {
        const index = parts.map((p) => (p.rows === null ? null : torch.tensor(p.rows, { dtype: 'int64', device })));
        const empty = torch.empty([1, 1, 0, 1], { device });
        for (let layer = 0; layer < model.textConfig.numLayers; layer++) {
          const keys: Tensor[] = [];
          const values: Tensor[] = [];
          parts.forEach((part, i) => {
            // update() with no new steps returns views of what the layer holds: [B, Hkv, width, hd].
            const [k, v] = part.cache.update(layer, empty, empty);
            const rows = index[i];
            keys.push(rightAligned(rows ? k.indexSelect(0, rows) : k, width));
            values.push(rightAligned(rows ? v.indexSelect(0, rows) : v, width));
          });
          out.update(
            layer,
            keys.length === 1 ? keys[0]! : torch.cat(keys, 0),
            values.length === 1 ? values[0]! : torch.cat(values, 0),
          );
        }
        out.advance(width);
        if (parts.every((p) => p.cache.ropeDeltas !== null)) {
          const deltas = parts.map((part, i) => {
            const d = part.cache.ropeDeltas!;
            const rows = index[i];
            return (rows ? d.indexSelect(0, rows) : d).add(part.cache.length - width);
          });
          out.ropeDeltas = torch.cat(deltas, 0).keep();
        } else if (parts.some((p) => p.cache.ropeDeltas !== null)) {
          throw new Error(
            'generateContinuous: some caches have rope deltas and some do not (one model makes them all)',
          );
        }
      }),
    );
  } catch (error) {
    out.dispose();
    throw error;
  }
  const mask = torch.tensor(
    lengths.map((len) => Array.from({ length: width }, (_, c) => (c >= width - len ? 1 : 0))),
    { dtype: 'int64', device },
  );
  return { cache: out, mask };
}

// [B, H, S, hd] to [B, H, width, hd]: the last `width` columns, or zeros in front.
function rightAligned(x: Tensor, width: number): Tensor {
  const [b, h, s, d] = x.shape as [number, number, number, number];
  if (s >= width) return x.narrow(2, s - width, width);
  return torch.cat([torch.zeros([b, h, width - s, d], { dtype: x.dtype, device: x.device }), x], 2);
}

/** The group's prompts as one left-padded batch (pad id 0, masked) with their images in prompt order. */
function stackPrompts<K>(group: ReadonlyArray<ContinuousPrompt<K>>, lengths: readonly number[]): ModelInputs {
  const width = Math.max(...lengths);
  return torch.tidy(() => {
    const device = group[0]!.inputs.inputIds.device;
    const inputIds =
      group.length === 1
        ? group[0]!.inputs.inputIds.clone()
        : torch.cat(
            group.map((p, i) => {
              const ids = p.inputs.inputIds.long();
              const pad = width - lengths[i]!;
              return pad === 0 ? ids : torch.cat([torch.zeros([1, pad], { dtype: 'int64', device }), ids], 1);
            }),
            0,
          );
    const attentionMask = torch.tensor(
      lengths.map((len) => Array.from({ length: width }, (_, c) => (c >= width - len ? 1 : 0))),
      { dtype: 'int64', device },
    );
    const joined = (pick: (i: ModelInputs) => Tensor | null | undefined): Tensor | null => {
      const present = group.map((p) => pick(p.inputs)).filter((t): t is Tensor => t !== null && t !== undefined);
      return present.length === 0 ? null : present.length === 1 ? present[0]!.clone() : torch.cat(present, 0);
    };
    return {
      inputIds,
      attentionMask,
      pixelValues: joined((i) => i.pixelValues),
      imageGridThw: joined((i) => i.imageGridThw),
      imageFlags: joined((i) => i.imageFlags),
    };
  });
}

function disposeInputs(inputs: ModelInputs): void {
  for (const t of [inputs.inputIds, inputs.attentionMask, inputs.pixelValues, inputs.imageGridThw, inputs.imageFlags]) {
    t?.dispose();
  }
}

function checkPrompt<K>(prompt: ContinuousPrompt<K>, ordinal: number): ContinuousPrompt<K> {
  const where = `generateContinuous: prompt ${ordinal} (key ${String(prompt.key)})`;
  const shape = prompt.inputs.inputIds.shape;
  if (shape.length !== 2 || shape[0] !== 1 || shape[1]! < 1) {
    throw new RangeError(`${where}: expected inputIds of shape [1, L] with L >= 1 but received [${shape}]`);
  }
  const mask = prompt.inputs.attentionMask;
  if (mask) {
    if (mask.shape.length !== 2 || mask.shape[0] !== 1 || mask.shape[1] !== shape[1]) {
      throw new RangeError(`${where}: attentionMask of shape [${mask.shape}] does not match inputIds [${shape}]`);
    }
    if (!(mask.eq(1).all().item() as boolean)) {
      throw new RangeError(`${where}: the prompt is padded; give it without padding (each prompt is one row)`);
    }
  }
  if (!Number.isSafeInteger(prompt.stream) || prompt.stream < 0) {
    throw new RangeError(`${where}: expected a non-negative integer stream but received ${prompt.stream}`);
  }
  return prompt;
}

function positiveInt(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Expected a positive integer for ${name} but received ${value}`);
  }
}

function iteratorOf<T>(items: Iterable<T> | AsyncIterable<T>): AsyncIterator<T> | Iterator<T> {
  return Symbol.asyncIterator in items
    ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
    : (items as Iterable<T>)[Symbol.iterator]();
}
