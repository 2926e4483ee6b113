// DropoutNTP: the prefix rule of MMPR's `_truncate_prefix` on hand cases, the question the model
// sees with and without --load-image, the output rows (the input row plus rejected = prefix +
// continuation), the meta.json entry our MMPR reader opens, and bad rows named by file and line;
// with a streaming engine, the reorder buffer (rows back in any order, written in input order),
// resuming after any whole row, and the model engine's continuous batching (a row's text does not
// depend on how many rows decode beside it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../lib/data/open.js';
import type { PreferenceRecord } from '../../lib/data/records.js';
import { dropoutPrefix, dropoutQuestion, runDropoutNtp } from '../../lib/pipelines/dropout_ntp.js';
import {
  modelEngine,
  scriptedEngine,
  type GenerationEngine,
  type GenerationRequest,
} from '../../lib/pipelines/engine.js';
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

describe('runDropoutNtp on a tiny Qwen2-VL (continuous batching)', () => {
  it('continues each prefix; a row writes the same text with 1 or 3 rows in flight, and again for the same seed', async () => {
    const dir = path.join(root, 'tiny');
    await writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 6 });
    const model = await fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    const settings = { temperature: 0.7, topK: 50, topP: 1, maxNewTokens: 6, seed: 4 };
    const input = path.join(root, 'tiny_open.jsonl');
    const rows = [
      { question: 'Say something.', chosen: 'one two three four' },
      { question: 'Say more, please.', chosen: 'alpha beta gamma delta epsilon zeta' },
      { question: 'And a much longer question than the others, to pad the batch?', chosen: 'x y' },
      { question: 'Short.', chosen: 'a b c d e f g h' },
    ];
    fs.writeFileSync(input, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    const run = async (
      name: string,
      n: number,
      batchSize: number,
      engine = modelEngine(model, processor, settings),
    ) => {
      const output = path.join(root, `${name}_${n}_${batchSize}.jsonl`);
      await runDropoutNtp({ input, output, engine, numReturnSequences: n, batchSize });
      return readJsonl(output);
    };
    for (const n of [1, 2]) {
      const alone = await run('tiny_alone', n, 1);
      expect(alone).toHaveLength(rows.length * n);
      expect(
        alone.every((r, i) => (r.rejected as string).startsWith(dropoutPrefix(rows[Math.floor(i / n)]!.chosen, 0.5))),
      ).toBe(true);
      expect(alone.some((r, i) => r.rejected !== dropoutPrefix(rows[Math.floor(i / n)]!.chosen, 0.5))).toBe(true);
      expect(await run('tiny_together', n, 3)).toEqual(alone);
      expect(await run('tiny_again', n, 2)).toEqual(alone);
      const reseeded = await run('tiny_seed', n, 3, modelEngine(model, processor, { ...settings, seed: 5 }));
      expect(reseeded).not.toEqual(alone);
    }
  }, 240_000);
});

describe('runDropoutNtp with a streaming engine', () => {
  const rows = [...Array(7).keys()].map((i) => ({ question: `Question ${i}?`, chosen: `answer ${i} is ${i}` }));
  const input = path.join(root, 'stream_open.jsonl');
  fs.writeFileSync(input, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
  // Takes `rows` requests, then returns them last-in first-out: finishing order != input order.
  const lifo = (log: number[]): GenerationEngine => ({
    complete: async () => {
      throw new Error('complete is not used when the engine streams');
    },
    async *stream(requests, n, inFlight) {
      const held: Array<{ index: number; request: GenerationRequest }> = [];
      for await (const r of requests) {
        held.push(r);
        if (held.length === inFlight) {
          const out = held.pop()!;
          log.push(out.index);
          yield { index: out.index, texts: Array.from({ length: n }, (_, k) => ` <${out.request.question} k${k}>`) };
        }
      }
      while (held.length > 0) {
        const out = held.pop()!;
        log.push(out.index);
        yield { index: out.index, texts: Array.from({ length: n }, (_, k) => ` <${out.request.question} k${k}>`) };
      }
    },
  });

  it('writes rows in input order whatever order they finish in', async () => {
    const order: number[] = [];
    const output = path.join(root, 'stream_out.jsonl');
    const summary = await runDropoutNtp({ input, output, engine: lifo(order), numReturnSequences: 2, batchSize: 3 });
    expect(order).not.toEqual([...order].sort((a, b) => a - b)); // they did come back out of order
    expect(summary).toEqual({ rows: 7, resumed: 0, lines: 14 });
    expect(readJsonl(output)).toEqual(
      rows.flatMap((r, i) => [0, 1].map((k) => ({ ...r, rejected: `answer ${i} <Question ${i}? k${k}>` }))),
    );
  });

  it('resumes after every whole row (not batch) of a cut output, writing the same file', async () => {
    const output = path.join(root, 'stream_resume.jsonl');
    await runDropoutNtp({ input, output, engine: lifo([]), batchSize: 3 });
    const whole = fs.readFileSync(output, 'utf8');
    const lines = whole.split('\n');
    // 4 whole rows and half of the 5th row's line: a torn write
    fs.writeFileSync(output, `${lines.slice(0, 4).join('\n')}\n${lines[4]!.slice(0, 10)}`);
    const seen: number[] = [];
    const summary = await runDropoutNtp({ input, output, engine: lifo(seen), batchSize: 3 });
    expect(summary).toEqual({ rows: 7, resumed: 4, lines: 7 });
    expect(seen.sort()).toEqual([4, 5, 6]);
    expect(fs.readFileSync(output, 'utf8')).toBe(whole);
  });

  it('refuses an engine that returns a row it was not given', async () => {
    const bad: GenerationEngine = {
      complete: async () => [],
      async *stream(requests) {
        for await (const r of requests) yield { index: r.index + 100, texts: ['x'] };
      },
    };
    await expect(runDropoutNtp({ input, output: path.join(root, 'stream_bad.jsonl'), engine: bad })).rejects.toThrow(
      /returned row 100/,
    );
  });
});
