// TextTokenizer: a checkpoint's tokenizer.json (the Hugging Face tokenizers format, run by
// @huggingface/tokenizers) plus the facts tokenizer_config.json adds: special tokens, BOS policy,
// padding side, chat template.
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';
import { SIZE_BOUNDS } from '../models/config_schema.js';
import { parseConfig } from '../util/config_error.js';

import { readJson, readOptionalJson } from './files.js';

/** A special token in tokenizer_config.json: a string, or an AddedToken object with `content`. */
const SpecialToken = z
  .union([z.string(), z.object({ content: z.string() }).loose(), z.null()])
  .optional()
  .transform((t) => (t === undefined || t === null ? null : typeof t === 'string' ? t : t.content));

const TokenizerConfigSchema = z
  .object({
    bos_token: SpecialToken,
    eos_token: SpecialToken,
    pad_token: SpecialToken,
    unk_token: SpecialToken,
    add_bos_token: z.boolean().nullish(),
    padding_side: z.enum(['left', 'right']).nullish(),
    clean_up_tokenization_spaces: z.boolean().nullish(),
    chat_template: z.unknown().optional(),
  })
  .loose();

export type TokenizerConfig = z.output<typeof TokenizerConfigSchema>;

export interface EncodeOptions {
  /** Add what the tokenizer's post-processor adds (a BOS for Llama-style tokenizers; nothing for Qwen). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop tokens flagged `special` in tokenizer.json's added_tokens. Default false. */
  skipSpecialTokens?: boolean;
}

export class TextTokenizer {
  /** The parsed tokenizer_config.json (unknown keys kept). */
  readonly config: TokenizerConfig;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly bosToken: string | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly bosTokenId: number | null;
  /** Whether a BOS starts every sequence (tokenizer_config `add_bos_token`; false for Qwen). */
  readonly addBosToken: boolean;
  /** tokenizer_config `padding_side`, 'right' when absent (transformers' default). */
  readonly paddingSide: 'left' | 'right';
  /** Vocabulary size including added tokens (transformers' `len(tokenizer)`). */
  readonly vocabSize: number;
  /** Ids of the added tokens flagged `special`. */
  readonly specialIds: ReadonlySet<number>;
  private readonly inner: Tokenizer;
  private readonly vocab: Map<string, number>;

  /**
   * @param tokenizerJson the parsed tokenizer.json
   * @param config the parsed tokenizer_config.json (or {})
   * @param source where they came from, for error messages (a directory)
   */
  constructor(
    tokenizerJson: unknown,
    config: unknown,
    readonly source: string = '(in-memory tokenizer)',
  ) {
    if (typeof tokenizerJson !== 'object' || tokenizerJson === null || !('model' in tokenizerJson)) {
      throw new TypeError(`${join(source, 'tokenizer.json')} has no "model" entry: not a tokenizers file`);
    }
    checkTokenIds(tokenizerJson, join(source, 'tokenizer.json'));
    this.config = parseConfig(TokenizerConfigSchema, config ?? {}, join(source, 'tokenizer_config.json'));
    this.inner = buildTokenizer(tokenizerJson, this.config, join(source, 'tokenizer.json'));
    this.vocab = this.inner.get_vocab(true);
    this.vocabSize = this.vocab.size;
    this.specialIds = new Set(
      [...this.inner.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id),
    );
    this.eosToken = this.config.eos_token;
    this.padToken = this.config.pad_token;
    this.bosToken = this.config.bos_token;
    this.eosTokenId = this.optionalId(this.eosToken, 'eos_token');
    this.padTokenId = this.optionalId(this.padToken, 'pad_token');
    this.bosTokenId = this.optionalId(this.bosToken, 'bos_token');
    this.addBosToken = this.config.add_bos_token ?? false;
    this.paddingSide = this.config.padding_side ?? 'right';
  }

  /** Loads `dir/tokenizer.json` (required) and `dir/tokenizer_config.json` (optional). */
  static async fromPretrained(dir: string): Promise<TextTokenizer> {
    const json = await readJson(
      dir,
      'tokenizer.json',
      'the fast-tokenizer file is required (slow-only tokenizers such as tokenizer.model are not supported)',
    );
    const config = (await readOptionalJson(dir, 'tokenizer_config.json')) ?? {};
    return new TextTokenizer(json, config, dir);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`Expected a string for text but received ${typeof text}`);
    return this.#library(() => this.inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids);
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`token id ${id} is outside the vocabulary of ${this.source} (size ${this.vocabSize})`);
      }
    }
    if (ids.length === 0) return '';
    return this.#library(() =>
      this.inner.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false }),
    );
  }

  // Some parts of tokenizer.json (a Split pre-tokenizer's behavior, a decoder's pattern) are read
  // only when text goes through them: what the library throws then names the file too.
  #library<T>(call: () => T): T {
    try {
      return call();
    } catch (error) {
      const file = join(this.source, 'tokenizer.json');
      throw new TypeError(`${file}: the tokenizers library failed on it: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /** The id of a token (an added token or a vocabulary entry); throws when absent. */
  tokenToId(token: string): number {
    const id = this.vocab.get(token);
    if (id === undefined)
      throw new Error(`token '${token}' is not in the vocabulary of ${join(this.source, 'tokenizer.json')}`);
    return id;
  }

  /** The id of a token, or null when the vocabulary lacks it. */
  findTokenId(token: string): number | null {
    return this.vocab.get(token) ?? null;
  }

  /** The token string of an id; throws when out of range. */
  idToToken(id: number): string {
    const token = this.inner.id_to_token(id);
    if (token === undefined) throw new RangeError(`token id ${id} is outside the vocabulary of ${this.source}`);
    return token;
  }

  private optionalId(token: string | null, key: string): number | null {
    if (token === null) return null;
    const id = this.vocab.get(token);
    if (id === undefined) {
      throw new Error(
        `${key} '${token}' of ${join(this.source, 'tokenizer_config.json')} is not in tokenizer.json's vocabulary`,
      );
    }
    return id;
  }
}

/**
 * The tokenizers library on a file checkTokenIds passed. It reads the pipeline's parts (decoder,
 * pre_tokenizer, added_tokens) without checking their types, so whatever it throws names the file.
 */
function buildTokenizer(tokenizerJson: object, config: TokenizerConfig, file: string): Tokenizer {
  try {
    return new Tokenizer(tokenizerJson, config);
  } catch (error) {
    throw new TypeError(`${file}: the tokenizers library cannot read it: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Every id in tokenizer.json (model.vocab values, added_tokens[].id) is an integer below
 * SIZE_BOUNDS.vocab, and the vocabulary no longer than it. Checked before @huggingface/tokenizers
 * sees the file: it sizes tables by the largest id, so one id of 2147483648 stalls it for minutes.
 */
export function checkTokenIds(tokenizerJson: object, file: string): void {
  const { model, added_tokens: added } = tokenizerJson as { model?: { vocab?: unknown }; added_tokens?: unknown };
  const vocab = model?.vocab;
  const max = SIZE_BOUNDS.vocab;
  if (Array.isArray(vocab) && vocab.length > max) {
    throw new RangeError(`${file}: model.vocab has ${vocab.length} entries, above the sane bound ${max}`);
  }
  if (vocab !== null && typeof vocab === 'object' && !Array.isArray(vocab)) {
    for (const [token, id] of Object.entries(vocab)) checkId(id, `model.vocab[${JSON.stringify(token)}]`, file);
  }
  checkMerges((model as { merges?: unknown } | undefined)?.merges, file);
  if (added === undefined || added === null) return;
  if (!Array.isArray(added)) throw new TypeError(`${file}: added_tokens must be a list, not ${typeof added}`);
  added.forEach((entry: { id?: unknown; content?: unknown } | null, k) => {
    checkId(entry?.id, `added_tokens[${k}].id`, file);
    if (typeof entry?.content !== 'string') {
      throw new TypeError(`${file}: added_tokens[${k}].content is ${describeJson(entry?.content)}, not a string`);
    }
  });
}

// BPE merges are "left right" strings or [left, right] pairs; anything else used to reach the
// tokenizer library and fail there without the file's name ("x.split is not a function").
function checkMerges(merges: unknown, file: string): void {
  if (merges === undefined) return;
  if (!Array.isArray(merges)) throw new TypeError(`${file}: model.merges must be a list, not ${describeJson(merges)}`);
  merges.forEach((merge: unknown, k) => {
    const pair = Array.isArray(merge) && merge.length === 2 && merge.every((part) => typeof part === 'string');
    if (typeof merge !== 'string' && !pair) {
      throw new TypeError(`${file}: model.merges[${k}] is ${describeJson(merge)}, not "left right" or [left, right]`);
    }
  });
}

const describeJson = (value: unknown): string => (JSON.stringify(value) ?? 'undefined').slice(0, 80);

function checkId(id: unknown, key: string, file: string): void {
  if (typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < SIZE_BOUNDS.vocab) return;
  const shown = typeof id === 'number' ? String(id) : (JSON.stringify(id) ?? 'undefined');
  throw new RangeError(`${file}: ${key} is ${shown}, not a token id in [0, ${SIZE_BOUNDS.vocab - 1}]`);
}
