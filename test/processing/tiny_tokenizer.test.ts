// The tiny tokenizer files: a loadable byte-level BPE of exactly 512 tokens with Qwen's special
// block at real id − 151162, the family's config files, and round trips.
import { readFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { qwen2VlImageOptionsFromConfig } from '../../lib/processing/image/index.js';
import { TextTokenizer } from '../../lib/processing/tokenizer.js';
import {
  TINY_ID_OFFSET,
  TINY_SPECIAL_TOKENS,
  TINY_VOCAB_SIZE,
  tinyTokenizerJson,
  writeTinyTokenizer,
} from '../../lib/tiny/tokenizer.js';
import { QWEN3_DIR, scratch } from './helpers.js';

async function tiny(family: 'qwen2_vl' | 'qwen2_5_vl' | 'internvl'): Promise<{ dir: string; tok: TextTokenizer }> {
  const dir = await scratch();
  await writeTinyTokenizer(dir, family);
  return { dir, tok: await TextTokenizer.fromPretrained(dir) };
}

describe('writeTinyTokenizer', () => {
  it('has 512 tokens and the golden fixtures’ special ids', async () => {
    const { tok } = await tiny('qwen2_vl');
    expect(tok.vocabSize).toBe(TINY_VOCAB_SIZE);
    const golden: Record<string, number> = {
      '<|endoftext|>': 481,
      '<|im_start|>': 482,
      '<|im_end|>': 483,
      '<|vision_start|>': 490,
      '<|vision_end|>': 491,
      '<|vision_pad|>': 492,
      '<|image_pad|>': 493,
      '<|video_pad|>': 494,
      '<img>': 503,
      '</img>': 504,
      '<IMG_CONTEXT>': 505,
    };
    for (const [token, id] of Object.entries(golden)) expect(tok.tokenToId(token)).toBe(id);
    expect(tok.eosTokenId).toBe(483);
    expect(tok.padTokenId).toBe(481);
    expect(tok.bosTokenId).toBeNull();
    expect(TINY_SPECIAL_TOKENS.at(-1)!.content).toBe('</box>');
    expect(tok.tokenToId('</box>')).toBe(511);
  });

  it('orders the shared special block as the real Qwen tokenizer does', () => {
    const real = JSON.parse(readFileSync(join(QWEN3_DIR, 'tokenizer.json'), 'utf8')) as {
      added_tokens: Array<{ id: number; content: string }>;
    };
    // Qwen3 shares 151643..151664 with Qwen2.5 (its later ids are Qwen3's own tool/think tokens).
    for (const { id, content } of real.added_tokens.filter((t) => t.id <= 151664)) {
      expect(TINY_SPECIAL_TOKENS[id - TINY_ID_OFFSET - 481]!.content).toBe(content);
    }
  });

  it('is a valid byte-level BPE: 256 byte symbols, merges of known tokens, ordinary ids 0..480', () => {
    const json = tinyTokenizerJson() as { model: { vocab: Record<string, number>; merges: string[] } };
    const vocab = json.model.vocab;
    const ids = Object.values(vocab).sort((a, b) => a - b);
    expect(ids).toEqual([...Array(481).keys()]);
    expect(vocab['!']).toBe(0);
    expect(vocab.Ġ).toBeLessThan(256);
    for (const merge of json.model.merges) {
      const [a, b] = merge.split(' ');
      expect(vocab[a!]).toBeDefined();
      expect(vocab[b!]).toBeDefined();
      expect(vocab[a! + b!]).toBeDefined();
    }
    expect(JSON.stringify(tinyTokenizerJson())).toBe(JSON.stringify(json)); // deterministic
  });

  it('round-trips text, Chinese and emoji, keeping specials whole', async () => {
    const { tok } = await tiny('qwen2_5_vl');
    for (const text of ['What is in the picture? 12 apples.', '你好，世界', '😀 👍🏽', "don't   stop\n\n", '']) {
      const ids = tok.encode(text);
      expect(ids.every((id) => id < 481)).toBe(true);
      expect(tok.decode(ids)).toBe(text);
    }
    const ids = tok.encode('<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n');
    expect(ids.slice(0, 1)).toEqual([482]);
    expect(ids.filter((id) => id >= 481)).toEqual([482, 490, 493, 491, 483]);
    expect(tok.encode('the assistant').length).toBeLessThan('the assistant'.length); // merges do apply
  });

  it('writes the Qwen files and leaves InternVL without chat_template.json / preprocessor_config.json', async () => {
    const { dir } = await tiny('qwen2_vl');
    const pre = JSON.parse(await readFile(join(dir, 'preprocessor_config.json'), 'utf8'));
    expect(qwen2VlImageOptionsFromConfig(pre)).toMatchObject({
      minPixels: 3136,
      maxPixels: 1003520,
      mergeSize: 2,
      patchSize: 14,
    });
    expect(JSON.parse(await readFile(join(dir, 'chat_template.json'), 'utf8')).chat_template).toContain(
      '<|vision_start|><|image_pad|><|vision_end|>',
    );
    const internvl = await tiny('internvl');
    await expect(access(join(internvl.dir, 'chat_template.json'))).rejects.toThrow();
    await expect(access(join(internvl.dir, 'preprocessor_config.json'))).rejects.toThrow();
    expect(internvl.tok.config.chat_template).toContain('<IMG_CONTEXT>');
    await expect(writeTinyTokenizer(dir, 'llava' as never)).rejects.toThrow(/for family but received "llava"/);
  });
});
