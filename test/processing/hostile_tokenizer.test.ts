// tokenizer.json edits `npm run fuzz` found reaching the tokenizer library unchecked (issue #17): a
// BPE merge that is not "left right" or [left, right], and an added token without string content,
// are refused naming the file and the entry, before the library parses the file.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../lib/processing/tokenizer.js';
import { tinyDir } from './helpers.js';

const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// A tiny checkpoint folder whose tokenizer.json went through `edit`.
async function edited(edit: (json: Record<string, any>) => void): Promise<string> {
  const dir = await tinyDir('qwen2_vl', { model_type: 'qwen2_vl' });
  const file = join(dir, 'tokenizer.json');
  const json = JSON.parse(await readFile(file, 'utf8'));
  edit(json);
  await writeFile(file, JSON.stringify(json));
  return dir;
}

describe('hostile tokenizer.json', () => {
  it('the unedited file loads, with merges as strings or as pairs', async () => {
    const dir = await edited(() => {});
    const tokenizer = await TextTokenizer.fromPretrained(dir);
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    expect(Array.isArray(json.model.merges) && json.model.merges.length).toBeGreaterThan(0);
    const paired = await edited((j) => {
      j.model.merges = j.model.merges.map((m: string | string[]) => (typeof m === 'string' ? m.split(' ') : m));
    });
    const again = await TextTokenizer.fromPretrained(paired);
    expect(again.encode('hello world')).toEqual(tokenizer.encode('hello world'));
  });

  it.each([
    ['a number', 4294967297, /model\.merges\[3\] is 4294967297, not "left right" or \[left, right\]/],
    ['a triple', ['a', 'b', 'c'], /model\.merges\[3\] is \["a","b","c"\]/],
    ['null', null, /model\.merges\[3\] is null/],
  ])('refuses a merge that is %s', async (_, merge, pattern) => {
    const dir = await edited((j) => {
      j.model.merges[3] = merge;
    });
    const file = escaped(join(dir, 'tokenizer.json'));
    await expect(TextTokenizer.fromPretrained(dir)).rejects.toThrow(new RegExp(`^${file}: ${pattern.source}`));
  });

  it('refuses merges that are not a list', async () => {
    const dir = await edited((j) => {
      j.model.merges = { a: 1 };
    });
    await expect(TextTokenizer.fromPretrained(dir)).rejects.toThrow(/tokenizer\.json: model\.merges must be a list/);
  });

  it('refuses an added token without string content', async () => {
    const dir = await edited((j) => {
      delete j.added_tokens[1].content;
    });
    await expect(TextTokenizer.fromPretrained(dir)).rejects.toThrow(
      /tokenizer\.json: added_tokens\[1\]\.content is undefined, not a string/,
    );
  });
});

// Fuzz run 5 (docs/fuzz.md): pipeline parts the tokenizers library reads unchecked, at load or when
// text first goes through them; what it throws now names the file.
describe('tokenizer.json parts the library rejects', () => {
  it.each([
    [
      'a decoder type that is not a string',
      (j: Record<string, any>) => {
        j.decoder = { type: false };
      },
      /Unknown Decoder type: false/,
    ],
    [
      'a missing added_tokens list',
      (j: Record<string, any>) => void delete j.added_tokens,
      /.*added_tokens is not iterable/,
    ],
  ])('refuses %s at load, naming the file', async (_, edit, pattern) => {
    const dir = await edited(edit);
    const file = escaped(join(dir, 'tokenizer.json'));
    await expect(TextTokenizer.fromPretrained(dir)).rejects.toThrow(
      new RegExp(`^${file}: the tokenizers library cannot read it: ${pattern.source}`),
    );
  });

  it('a Split pre-tokenizer whose behavior is not a string names the file when text reaches it', async () => {
    const dir = await edited((j) => {
      j.pre_tokenizer = { type: 'Split', pattern: { Regex: ' ' }, behavior: true, invert: false };
    });
    const tokenizer = await TextTokenizer.fromPretrained(dir);
    const file = escaped(join(dir, 'tokenizer.json'));
    expect(() => tokenizer.encode('a b')).toThrow(new RegExp(`^${file}: the tokenizers library failed on it: `));
    // the same split with a valid behavior encodes
    const valid = await edited((j) => {
      j.pre_tokenizer = { type: 'Split', pattern: { Regex: ' ' }, behavior: 'Removed', invert: false };
    });
    expect((await TextTokenizer.fromPretrained(valid)).encode('a b').length).toBeGreaterThan(0);
  });
});
