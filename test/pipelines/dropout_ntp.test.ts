// DropoutNTP: the prefix rule of MMPR's `_truncate_prefix` on hand cases, the question the model
// sees with and without --load-image, the output rows (the input row plus rejected = prefix +
// continuation), the meta.json entry our MMPR reader opens, and bad rows named by file and line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../lib/data/open.js';
import type { PreferenceRecord } from '../../lib/data/records.js';
import { dropoutPrefix, dropoutQuestion, runDropoutNtp } from '../../lib/pipelines/dropout_ntp.js';
import { modelEngine, scriptedEngine, type GenerationRequest } from '../../lib/pipelines/engine.js';
import { fromPretrained } from '../../lib/models/index.js';
import * as processing from '../../lib/processing/index.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-dropout-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const readJsonl = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('dropoutPrefix (MMPR _truncate_prefix)', () => {
  it('keeps int(words x ratio) space-separated words, then strips', () => {
    expect(dropoutPrefix('one two three four five', 0.5)).toBe('one two'); // int(2.5) = 2
    expect(dropoutPrefix('one two three four', 0.5)).toBe('one two');
    expect(dropoutPrefix('one two three four', 0.75)).toBe('one two three');
    expect(dropoutPrefix('one two three', 0)).toBe('');
    expect(dropoutPrefix('one two three', 1)).toBe('one two three');
    // Split on ' ' only: a double space is an empty word, a newline stays inside a word.
    expect(dropoutPrefix('a  b c d', 0.5)).toBe('a'); // ['a', '', 'b', 'c', 'd'] -> int(2.5) = 2 -> 'a ' -> 'a'
    expect(dropoutPrefix('first line\nsecond line here', 0.5)).toBe('first line\nsecond'); // 4 words
    expect(dropoutPrefix('  lead trail  ', 0.5)).toBe('lead'); // ['', '', 'lead', 'trail', '', ''] -> 3 -> '  lead' stripped
  });
  it('refuses ratios outside [0, 1]', () => {
    expect(() => dropoutPrefix('a b', 1.5)).toThrow(/startRatio/);
  });
});

describe('dropoutQuestion', () => {
  it('drops every <image> without loadImage and places one for a lone image with it', () => {
    expect(dropoutQuestion('<image>\nWhat is shown?', 1, false)).toBe('What is shown?');
    expect(dropoutQuestion('What is shown?', 1, true)).toBe('<image>\nWhat is shown?');
    expect(dropoutQuestion('<image>\nWhat?', 1, true)).toBe('<image>\nWhat?');
    expect(dropoutQuestion('Image-1: <image>\nImage-2: <image>\nSame?', 2, false)).toBe('Image-1: \nImage-2: \nSame?');
  });
});

describe('runDropoutNtp with a scripted engine', () => {
  fs.copyFileSync(path.join(import.meta.dirname, '../fixtures/images/img_140x140.png'), path.join(root, 'cat.png'));
  const rows = [
    { image: 'cat.png', question: '<image>\nDescribe the image.', chosen: 'A small cat sits on a red mat.', id: 7 },
    { question: 'Tell me a fact.', chosen: 'Water boils at 100 degrees at sea level.' },
  ];
  const input = path.join(root, 'open.jsonl');
  fs.writeFileSync(input, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
  const seen: GenerationRequest[] = [];
  const engine = scriptedEngine((request, k, batch) => {
    seen.push(request);
    return ` [b${batch} k${k}]`;
  });

  it('writes each row with rejected = prefix + continuation, text only by default', async () => {
    const output = path.join(root, 'out/open_sr0.5_wo_image.jsonl');
    fs.mkdirSync(path.dirname(output), { recursive: true });
    const summary = await runDropoutNtp({ input, output, engine, numReturnSequences: 2, batchSize: 1 });
    expect(summary).toEqual({ rows: 2, resumed: 0, lines: 4 });
    expect(readJsonl(output)).toEqual([
      { ...rows[0], rejected: 'A small cat sits [b0 k0]' },
      { ...rows[0], rejected: 'A small cat sits [b0 k1]' },
      { ...rows[1], rejected: 'Water boils at 100 [b1 k0]' },
      { ...rows[1], rejected: 'Water boils at 100 [b1 k1]' },
    ]);
    expect(seen[0]).toEqual({ question: 'Describe the image.', images: [], prefix: 'A small cat sits', maxTiles: 6 });
    const meta = JSON.parse(fs.readFileSync(path.join(root, 'out/meta.json'), 'utf8'));
    expect(meta['open_sr0.5_wo_image']).toEqual({
      root: '..',
      annotation: 'open_sr0.5_wo_image.jsonl',
      data_augment: false,
      repeat_time: 1,
      length: 4,
    });
    const dataset = await openDataset({ format: 'mmpr', path: path.join(root, 'out/meta.json') });
    expect(dataset.length).toBe(4);
    // The reader shuffles each dataset: find the first output line's record by its rejected text.
    const records: PreferenceRecord[] = [];
    for (let i = 0; i < dataset.length; i++) records.push((await dataset.get(i)) as PreferenceRecord);
    const first = records.find((r) => JSON.stringify(r.rejected).includes('[b0 k0]'))!;
    expect(first.images).toHaveLength(1);
    expect([first.chosen, first.rejected]).toEqual([
      [{ role: 'assistant', content: rows[0]!.chosen }],
      [{ role: 'assistant', content: 'A small cat sits [b0 k0]' }],
    ]);
    expect(records.filter((r) => r.images.length === 0)).toHaveLength(2);
  });

  it('passes the image with loadImage and a start ratio of 0 continues from nothing', async () => {
    seen.length = 0;
    const output = path.join(root, 'with_image.jsonl');
    await runDropoutNtp({ input, output, engine, startRatio: 0, loadImage: true, maxNum: 2 });
    expect(seen[0]).toEqual({
      question: '<image>\nDescribe the image.',
      images: [fs.realpathSync(path.join(root, 'cat.png'))],
      prefix: '',
      maxTiles: 2,
    });
    expect(seen[1]!.images).toEqual([]);
    expect(readJsonl(output).map((r) => r.rejected)).toEqual([' [b0 k0]', ' [b0 k0]']);
  });

  it('names the file and line of a bad row and of an image outside the root', async () => {
    const bad = path.join(root, 'bad.jsonl');
    fs.writeFileSync(bad, `${JSON.stringify(rows[1])}\n\n${JSON.stringify({ question: 'q', chosen: 3 })}\n`);
    await expect(runDropoutNtp({ input: bad, output: path.join(root, 'bad_out.jsonl'), engine })).rejects.toThrow(
      `${bad}:3: "chosen" must be a string, got number`,
    );
    const outside = path.join(root, 'escape.jsonl');
    fs.writeFileSync(outside, `${JSON.stringify({ image: '../x.png', question: 'q', chosen: 'a b' })}\n`);
    await expect(
      runDropoutNtp({ input: outside, output: path.join(root, 'escape_out.jsonl'), engine, loadImage: true }),
    ).rejects.toThrow(`${outside}:1:`);
  });
});

describe('runDropoutNtp on a tiny Qwen2-VL', () => {
  it('continues each prefix (one completion: generate; two: the widened rollout), reproducibly by seed', async () => {
    const dir = path.join(root, 'tiny');
    await writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 6 });
    const model = await fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    const engine = modelEngine(model, processor, { temperature: 0.7, topK: 50, topP: 1, maxNewTokens: 5, seed: 4 });
    const input = path.join(root, 'tiny_open.jsonl');
    const rows = [
      { question: 'Say something.', chosen: 'one two three four' },
      { question: 'Say more, please.', chosen: 'alpha beta gamma delta epsilon zeta' },
    ];
    fs.writeFileSync(input, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    for (const n of [1, 2]) {
      const run = async (name: string) => {
        const output = path.join(root, `${name}_${n}.jsonl`);
        await runDropoutNtp({ input, output, engine, numReturnSequences: n, batchSize: 2 });
        return readJsonl(output);
      };
      const once = await run('tiny_a');
      expect(once).toHaveLength(2 * n);
      expect(
        once.every((r, i) => (r.rejected as string).startsWith(dropoutPrefix(rows[Math.floor(i / n)]!.chosen, 0.5))),
      ).toBe(true);
      expect(once.some((r, i) => r.rejected !== dropoutPrefix(rows[Math.floor(i / n)]!.chosen, 0.5))).toBe(true);
      expect(await run('tiny_b')).toEqual(once);
    }
  }, 120_000);
});
