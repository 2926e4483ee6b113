// Tokenizer files for tiny random checkpoints: a real byte-level BPE tokenizer.json with a vocab of
// exactly 512 (the golden fixtures' size), Qwen's special-token block at 481..511 (tiny id = real
// Qwen2 id − 151162), and the family's tokenizer_config.json, chat template and image config.
// Ordinary tokens: the 256 byte-level symbols (GPT-2 order) and 225 merges learnt here, at load of
// this module, from a fixed English corpus, so the files are the same on every run.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeJsonFile } from '../util/json_file.js';

export type TinyFamily = 'qwen2_vl' | 'qwen2_5_vl' | 'internvl';

export const TINY_VOCAB_SIZE = 512;
/** Tiny id = real Qwen2-tokenizer id − this, for the special block. */
export const TINY_ID_OFFSET = 151162;
const ORDINARY = 481;

/** Qwen2.5's added tokens 151643..151664, then InternVL's 151665..151673, in id order. */
export const TINY_SPECIAL_TOKENS: ReadonlyArray<{ content: string; special: boolean }> = [
  ...[
    '<|endoftext|>',
    '<|im_start|>',
    '<|im_end|>',
    '<|object_ref_start|>',
    '<|object_ref_end|>',
    '<|box_start|>',
    '<|box_end|>',
  ]
    .concat([
      '<|quad_start|>',
      '<|quad_end|>',
      '<|vision_start|>',
      '<|vision_end|>',
      '<|vision_pad|>',
      '<|image_pad|>',
      '<|video_pad|>',
    ])
    .map((content) => ({ content, special: true })),
  ...[
    '<tool_call>',
    '</tool_call>',
    '<|fim_prefix|>',
    '<|fim_middle|>',
    '<|fim_suffix|>',
    '<|fim_pad|>',
    '<|repo_name|>',
    '<|file_sep|>',
  ].map((content) => ({ content, special: false })),
  ...['<img>', '</img>', '<IMG_CONTEXT>', '<quad>', '</quad>', '<ref>', '</ref>', '<box>', '</box>'].map((content) => ({
    content,
    special: true,
  })),
];

// Qwen2's pre-tokenizer split (tokenizer.json of the Qwen2 / Qwen2.5 / Qwen2-VL releases).
const QWEN_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// The same split in JS syntax (no inline flag groups); used only to learn the merges.
const JS_SPLIT =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

const CORPUS = `You are a helpful assistant. The user shows an image and asks a question about it; the assistant
answers in a short sentence. What is in the picture? There is a cat sitting on the table next to a red
cup. Describe the image in detail. The photo shows a small house with a green door, two windows and a
tree in the garden. How many people are there in this image? I can see three people standing near the
river. Which answer is correct, A or B? The correct answer is B, because the second option matches the
chart. Please think step by step and then give the final answer. The number of apples is 12 and the
number of pears is 7, so there are 19 fruits in total. Thank you! You're welcome, and I'm glad that it
helps. It's a sunny day in the city; the streets are busy and the shops are open. The dog runs after the
ball while the children play in the park. This document contains a table with the results of the
experiment: the first row lists the names, the second row lists the values. Read the text in the image
and translate it into English. The sign says "Welcome to the museum" and the date is 2024. The system
message, the user message and the assistant message make up the conversation of the user and the system.`;

/** GPT-2's byte-to-symbol map: printable Latin-1 bytes stand for themselves, the others for 256+n. */
function byteSymbols(): string[] {
  const symbols = new Array<string>(256);
  const direct = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) symbols[b] = String.fromCodePoint(direct(b) ? b : next++);
  return symbols;
}

const BYTES = byteSymbols();
// Vocabulary order of the byte symbols: the printable ones first, in byte order, then the rest.
const BYTE_ORDER = [...Array(256).keys()]
  .sort((a, b) => BYTES[a]!.codePointAt(0)! - BYTES[b]!.codePointAt(0)!)
  .map((b) => BYTES[b]!);

const toSymbols = (word: string): string[] => [...new TextEncoder().encode(word)].map((b) => BYTES[b]!);

/** Learns `count` merges greedily (most frequent pair; ties: the first in code-unit order). */
function learnMerges(corpus: string): Array<[string, string]> {
  const words = new Map<string, number>();
  for (const w of corpus.match(JS_SPLIT) ?? []) words.set(w, (words.get(w) ?? 0) + 1);
  const pieces = [...words].map(([w, n]) => ({ symbols: toSymbols(w), n }));
  const merges: Array<[string, string]> = [];
  const known = new Set(BYTE_ORDER);
  while (known.size < ORDINARY) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of pieces) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    if (pairs.size === 0) throw new Error(`the tiny corpus yields only ${known.size} tokens, ${ORDINARY} needed`);
    const [best] = [...pairs].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))[0]!;
    const [left, right] = best.split(' ') as [string, string];
    merges.push([left, right]);
    known.add(left + right);
    for (const piece of pieces) piece.symbols = mergePair(piece.symbols, left, right);
  }
  return merges;
}

function mergePair(symbols: string[], left: string, right: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (symbols[i] === left && symbols[i + 1] === right) {
      out.push(left + right);
      i++;
    } else out.push(symbols[i]!);
  }
  return out;
}

const MERGES = learnMerges(CORPUS);

/** The tokenizer.json object (HF tokenizers format, byte-level BPE as Qwen2's). */
export function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (const symbol of BYTE_ORDER) vocab[symbol] = Object.keys(vocab).length;
  for (const [a, b] of MERGES) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: TINY_SPECIAL_TOKENS.map((t, i) => ({
      id: ORDINARY + i,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: t.special,
    })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN_SPLIT }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** Qwen2-VL-Instruct's and Qwen2.5-VL-Instruct's chat template (chat_template.json). */
export const QWEN2_VL_CHAT_TEMPLATE =
  "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** The transformers-native InternVL template: `<|im_start|>{role}\n`, images as `<IMG_CONTEXT>\n`, no default system message. */
export const INTERNVL_HF_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

function tokenizerConfig(family: TinyFamily): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  TINY_SPECIAL_TOKENS.forEach((t, i) => {
    decoder[String(ORDINARY + i)] = {
      content: t.content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: t.special,
    };
  });
  const specials = TINY_SPECIAL_TOKENS.filter((t) => t.special).map((t) => t.content);
  const additional = family === 'internvl' ? specials.slice(1) : specials.slice(1).filter((t) => t.startsWith('<|'));
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    additional_special_tokens: additional,
    bos_token: null,
    chat_template: family === 'internvl' ? INTERNVL_HF_CHAT_TEMPLATE : QWEN2_VL_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: 32768,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  };
}

// Qwen2VLImageProcessor's keys, with the class-default pixel range the golden fixtures use.
function qwenPreprocessorConfig(family: TinyFamily): Record<string, unknown> {
  return {
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: 'Qwen2VLImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711],
    max_pixels: 1003520,
    merge_size: 2,
    min_pixels: 3136,
    patch_size: 14,
    processor_class: family === 'qwen2_vl' ? 'Qwen2VLProcessor' : 'Qwen2_5_VLProcessor',
    resample: 3,
    rescale_factor: 1 / 255,
    temporal_patch_size: 2,
  };
}

/**
 * Writes tokenizer.json, tokenizer_config.json and, for the Qwen families, chat_template.json and
 * preprocessor_config.json into `dir` (created if missing). InternVL remote-code checkpoints have
 * no preprocessor file: their processor reads config.json.
 */
export async function writeTinyTokenizer(dir: string, family: TinyFamily): Promise<void> {
  if (!['qwen2_vl', 'qwen2_5_vl', 'internvl'].includes(family)) {
    throw new TypeError(
      `Expected 'qwen2_vl', 'qwen2_5_vl' or 'internvl' for family but received ${JSON.stringify(family)}`,
    );
  }
  await mkdir(dir, { recursive: true });
  const write = (name: string, value: unknown): void => writeJsonFile(join(dir, name), value);
  write('tokenizer.json', tinyTokenizerJson());
  write('tokenizer_config.json', tokenizerConfig(family));
  if (family === 'internvl') return;
  write('chat_template.json', { chat_template: QWEN2_VL_CHAT_TEMPLATE });
  write('preprocessor_config.json', qwenPreprocessorConfig(family));
}
