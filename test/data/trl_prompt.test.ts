// TRL prompt-only data for GRPO, read by hyparquet from parquet DuckDB (a different library) wrote
// and from jsonl: conversational and standard prompts, `images` lists and single `image` structs,
// extra columns (nested structs included) passed to the rewards, shards and split slices, bad rows
// and a missing prompt column named, image paths kept inside the root.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRecordImages } from '../../lib/data/images.js';
import { openDataset } from '../../lib/data/open.js';
import type { PromptRecord } from '../../lib/data/records.js';
import { openTrlPrompt } from '../../lib/data/trl_prompt.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-trlprompt-'));
const png = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'images', 'img_320x240.png'));
let db: DuckDBConnection;
beforeAll(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function writeParquet(select: string, file: string) {
  await db.run(`COPY (${select}) TO '${file}' (FORMAT parquet, COMPRESSION snappy)`);
}

describe('parquet (written by DuckDB)', () => {
  it('reads conversational prompts with image structs and passes the other columns, across shards', async () => {
    const folder = join(root, 'lisa');
    mkdirSync(join(folder, 'data'), { recursive: true });
    const rows = (from: number, to: number) => `
      SELECT [{'role': 'user', 'content': [{'type': 'image', 'text': NULL}, {'type': 'text', 'text': 'find ' || i}]}]
          AS prompt,
        [{'bytes': from_hex('${png.toString('hex')}'), 'path': 'x.png'}] AS images,
        '<answer>[' || i || ', 0, 10, 10]</answer>' AS solution,
        {'width': 320::BIGINT, 'height': 240, 'labels': ['cat', 'dog']} AS meta
      FROM range(${from}, ${to}) t(i)`;
    await writeParquet(rows(0, 3), join(folder, 'data', 'train-00000-of-00002.parquet'));
    await writeParquet(rows(3, 5), join(folder, 'data', 'train-00001-of-00002.parquet'));
    const data = await openTrlPrompt(folder);
    expect(data.length).toBe(5);
    const record = (await data.get(4)) as PromptRecord;
    expect(record).toMatchObject({
      kind: 'prompt',
      prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'find 4' }] }],
      columns: {
        solution: '<answer>[4, 0, 10, 10]</answer>',
        meta: { width: 320, height: 240, labels: ['cat', 'dog'] },
      },
      source: { file: join(folder, 'data', 'train-00001-of-00002.parquet'), row: 1 },
    });
    expect(Object.keys(record.columns).sort()).toEqual(['meta', 'solution']);
    const [pixels] = await decodeRecordImages(record);
    expect([pixels?.width, pixels?.height]).toEqual([320, 240]);

    const slice = await openDataset({ format: 'trl_prompt', path: 'lisa', split: 'train[1:3]' }, { baseDir: root });
    expect(slice.length).toBe(2);
    expect(await slice.get(0)).toMatchObject({
      kind: 'prompt',
      columns: { solution: '<answer>[1, 0, 10, 10]</answer>' },
    });
  });

  it('reads standard prompts with one `image` struct by path, inside the root only', async () => {
    const file = join(root, 'single.parquet');
    writeFileSync(join(root, 'pic.png'), png);
    await writeParquet(
      `SELECT 'How many birds? ' || i AS prompt,
         {'bytes': NULL::BLOB, 'path': CASE WHEN i = 1 THEN '../../pic.png' ELSE 'pic.png' END} AS image,
         i AS answer
       FROM range(2) t(i)`,
      file,
    );
    const data = await openTrlPrompt(file);
    expect(await data.get(0)).toMatchObject({
      prompt: 'How many birds? 0',
      images: [join(root, 'pic.png')],
      columns: { answer: 0 },
    });
    await expect(data.get(1)).rejects.toThrow(`${file} row 1: image "../../pic.png" escapes the image root`);
  });

  it('names a file without a prompt column', async () => {
    const file = join(root, 'pairs.parquet');
    await writeParquet(`SELECT 'c' AS chosen, 'r' AS rejected`, file);
    await expect(openTrlPrompt(file)).rejects.toThrow(`${file}: missing column "prompt" (columns: chosen, rejected)`);
  });
});

describe('jsonl', () => {
  it('reads rows, names bad lines and counts them when skipping', async () => {
    const file = join(root, 'prompts.jsonl');
    writeFileSync(join(root, 'a.png'), png);
    writeFileSync(
      file,
      [
        { prompt: [{ role: 'user', content: 'Solve 2+2.' }], solution: '4', level: { name: 'easy', rank: 1 } },
        { prompt: 'What is shown?', images: ['a.png'], solution: 'a cat' },
        { solution: 'no prompt' },
        { prompt: [{ role: 'user', content: [{ type: 'picture' }] }] },
        { prompt: '<image><image>two images?', images: ['a.png'] },
        { prompt: 'q', images: ['/etc/passwd'] },
      ]
        .map((row) => JSON.stringify(row))
        .join('\n\n'),
    );
    const data = await openTrlPrompt(file);
    expect(data.length).toBe(6);
    expect(await data.get(0)).toEqual({
      kind: 'prompt',
      id: 'prompts.jsonl:1',
      prompt: [{ role: 'user', content: 'Solve 2+2.' }],
      images: [],
      columns: { solution: '4', level: { name: 'easy', rank: 1 } },
      source: { file, line: 1 },
    });
    expect(await data.get(1)).toMatchObject({ images: [join(root, 'a.png')], columns: { solution: 'a cat' } });
    await expect(data.get(2)).rejects.toThrow(`${file}:5: missing "prompt"`);
    await expect(data.get(3)).rejects.toThrow(new RegExp(`^${file}:7: chat messages: invalid prompt\\[0\\]\\.content`));
    await expect(data.get(4)).rejects.toThrow(`${file}:9: prompt has 2 image placeholder(s) for 1 image(s)`);
    await expect(data.get(5)).rejects.toThrow(`${file}:11: image path "/etc/passwd" is absolute`);
    const lenient = await openDataset({ format: 'trl_prompt', path: file, skip_bad_rows: true });
    const got = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => lenient.get(i)));
    expect(got.map((r) => r === undefined)).toEqual([false, false, true, true, true, true]);
    expect(lenient.badRows.count).toBe(4);
  });
});
