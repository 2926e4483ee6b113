// TextTokenizer over the real Qwen3 tokenizer (same byte-level BPE, pre-tokenizer and special
// block 151643..151656 as Qwen2-VL's): special ids, round trips, and the pre-tokenizer split
// checked against ids derived independently (hand-written splits + our own BPE over the file's
// merges and vocabulary).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { TextTokenizer } from '../../lib/processing/tokenizer.js';
import { QWEN3_DIR, scratch } from './helpers.js';

let tok: TextTokenizer;
beforeAll(async () => {
  tok = await TextTokenizer.fromPretrained(QWEN3_DIR);
});

describe('TextTokenizer on the Qwen tokenizer', () => {
  it('puts the special tokens at their documented ids', () => {
    const expected: Record<string, number> = {
      '<|endoftext|>': 151643,
      '<|im_start|>': 151644,
      '<|im_end|>': 151645,
      '<|vision_start|>': 151652,
      '<|vision_end|>': 151653,
      '<|vision_pad|>': 151654,
      '<|image_pad|>': 151655,
      '<|video_pad|>': 151656,
    };
    for (const [token, id] of Object.entries(expected)) expect(tok.tokenToId(token)).toBe(id);
    expect(tok.eosTokenId).toBe(151645);
    expect(tok.padTokenId).toBe(151643);
    expect(tok.bosTokenId).toBeNull();
    expect(tok.addBosToken).toBe(false);
    expect(tok.vocabSize).toBe(151669);
    expect(tok.specialIds.has(151655)).toBe(true);
    expect(tok.specialIds.has(151657)).toBe(false); // <tool_call> is an added, non-special token
  });

  it('tokenizes a chat-templated vision prompt with the specials in place', () => {
    const prompt =
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n' +
      '<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n<|im_start|>assistant\n';
    const ids = tok.encode(prompt);
    const text = (t: string) => tok.encode(t, { addSpecialTokens: false });
    const [start, end, nl] = [151644, 151645, 198];
    expect(ids).toEqual([
      start,
      ...text('system\nYou are a helpful assistant.'),
      end,
      nl,
      start,
      ...text('user\n'),
      151652,
      151655,
      151653,
      ...text('Describe.'),
      end,
      nl,
      start,
      ...text('assistant\n'),
    ]);
    expect(text('user\n')).toEqual([tok.tokenToId('user'), nl]);
    expect(tok.decode(ids)).toBe(prompt);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(
      'system\nYou are a helpful assistant.\nuser\nDescribe.\nassistant\n',
    );
  });

  it('round-trips Chinese, emoji, mixed scripts and whitespace', () => {
    for (const text of [
      '你是书生·万象，英文名是InternVL。',
      '😀👍🏽 family: 👨‍👩‍👧',
      'naïve café — ½ × 2',
      '  tabs\tand\r\nnewlines\n\n',
      'x'.repeat(1000),
    ]) {
      const ids = tok.encode(text);
      expect(tok.decode(ids)).toBe(text);
    }
    expect(tok.encode('')).toEqual([]);
  });

  it('names the token and the file when a token is missing', () => {
    expect(() => tok.tokenToId('<IMG_CONTEXT>')).toThrow(
      /token '<IMG_CONTEXT>' is not in the vocabulary of .*tokenizer\.json/,
    );
    expect(tok.findTokenId('<IMG_CONTEXT>')).toBeNull();
    expect(() => tok.decode([tok.vocabSize])).toThrow(/outside the vocabulary/);
  });

  it('errors on a directory without tokenizer.json, naming the file', async () => {
    const dir = await scratch();
    await expect(TextTokenizer.fromPretrained(dir)).rejects.toThrow(
      new RegExp(`${join(dir, 'tokenizer.json')} not found`),
    );
  });
});

// --- the pre-tokenizer split, checked independently -------------------------------------------

/** GPT-2 byte-to-symbol map, written from its definition. */
function byteSymbol(b: number): string {
  const printable = (x: number) => (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  if (printable(b)) return String.fromCodePoint(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCodePoint(256 + n);
}

/** Textbook BPE: merge the lowest-ranked adjacent pair until none is in the merge table. */
function bpe(word: string, ranks: Map<string, number>): string[] {
  let symbols = [...new TextEncoder().encode(word)].map(byteSymbol);
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const r = ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) return symbols;
    const [a, b] = [symbols[best]!, symbols[best + 1]!];
    const out: string[] = [];
    for (let i = 0; i < symbols.length; i++) {
      if (symbols[i] === a && symbols[i + 1] === b) {
        out.push(a + b);
        i++;
      } else {
        out.push(symbols[i]!);
      }
    }
    symbols = out;
  }
}

describe("Qwen's pre-tokenizer regex in @huggingface/tokenizers", () => {
  const file = JSON.parse(readFileSync(join(QWEN3_DIR, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number>; merges: Array<[string, string]> | string[] };
  };
  const ranks = new Map(file.model.merges.map((m, i) => [Array.isArray(m) ? m.join(' ') : m, i]));
  const idsOf = (pieces: string[]) => pieces.flatMap((p) => bpe(p, ranks).map((s) => file.model.vocab[s]!));

  // Splits worked out by hand from the regex's alternatives, in order: contractions (any case),
  // optional non-letter + letters, single digits, optional space + punctuation (+ newlines),
  // whitespace ending in newlines, whitespace not followed by non-space, other whitespace.
  const cases: Array<[string, string[]]> = [
    ['world123 4567', ['world', '1', '2', '3', ' ', '4', '5', '6', '7']],
    ["don't stop, I'LL GO", ['don', "'t", ' stop', ',', ' I', "'LL", ' GO']],
    ['a   b', ['a', '  ', ' b']],
    ['x\n\n  y', ['x', '\n\n', ' ', ' y']],
    ['hello,world!!\n', ['hello', ',world', '!!\n']],
    ['  leading and trailing   ', [' ', ' leading', ' and', ' trailing', '   ']],
    ['3.14159', ['3', '.', '1', '4', '1', '5', '9']],
    ['tab\tx', ['tab', '\tx']],
    ['价格是100元', ['价格是', '1', '0', '0', '元']],
  ];
  for (const [text, pieces] of cases) {
    it(`splits ${JSON.stringify(text)}`, () => {
      expect(pieces.join('')).toBe(text);
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(idsOf(pieces));
    });
  }

  it('maps whole-word vocabulary entries to their ids', () => {
    expect(tok.encode(' the')).toEqual([file.model.vocab.Ġthe]);
    expect(tok.encode('\n\n')).toEqual([file.model.vocab.ĊĊ]);
    expect(tok.encode("'s")).toEqual([file.model.vocab["'s"]]);
  });
});
