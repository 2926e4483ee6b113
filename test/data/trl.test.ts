// TRL / HF datasets read by hyparquet from parquet that DuckDB (a different library) wrote: HF's
// `{bytes, path}` image structs, shards of a split, several row groups, snappy and zstd; jsonl for
// KTO / SFT rows; split slices; bad rows named by file and row; image paths kept inside the root.
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTrl } from '../../lib/data/trl.js';
import type { PreferenceRecord } from '../../lib/data/records.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-trl-'));
const png = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'images', 'img_140x140.png'));
let db: DuckDBConnection;

beforeAll(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

// rlaif-v_formatted's row shape: a user turn with an image part and a text part, one assistant turn each side.
const preferenceRows = (from: number, to: number) => `
  SELECT
    [{'role': 'user', 'content': [{'type': 'image', 'text': NULL}, {'type': 'text', 'text': 'q' || i}]}] AS prompt,
    [{'role': 'assistant', 'content': [{'type': 'text', 'text': 'good ' || i}]}] AS chosen,
    [{'role': 'assistant', 'content': [{'type': 'text', 'text': 'bad ' || i}]}] AS rejected,
    [{'bytes': from_hex('${png.toString('hex')}'), 'path': 'img_' || i || '.png'}] AS images
  FROM range(${from}, ${to}) t(i)`;

async function writeParquet(select: string, file: string, compression: 'zstd' | 'snappy', rowGroup = 122880) {
  await db.run(
    `COPY (${select}) TO '${file}' (FORMAT parquet, COMPRESSION ${compression}, ROW_GROUP_SIZE ${rowGroup})`,
  );
}

const text = (messages: PreferenceRecord['chosen']) => (typeof messages === 'string' ? messages : messages[0]?.content);

describe('parquet (written by DuckDB)', () => {
  const folder = join(root, 'rlaif');
  beforeAll(async () => {
    mkdirSync(join(folder, 'data'), { recursive: true });
    await writeParquet(preferenceRows(0, 5000), join(folder, 'data', 'train-00000-of-00002.parquet'), 'zstd', 2048);
    await writeParquet(preferenceRows(5000, 5100), join(folder, 'data', 'train-00001-of-00002.parquet'), 'snappy');
    await writeParquet(preferenceRows(9000, 9010), join(folder, 'data', 'test-00000-of-00001.parquet'), 'snappy');
  });

  it('reads conversational rows with image bytes across shards and row groups', async () => {
    const data = await openTrl(folder);
    expect(data.length).toBe(5100);
    for (const i of [0, 2047, 2048, 4999, 5000, 5099]) {
      const record = (await data.get(i)) as PreferenceRecord;
      expect(record.kind).toBe('preference');
      expect(record.prompt).toEqual([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: `q${i}` }] }]);
      expect(text(record.chosen)).toEqual([{ type: 'text', text: `good ${i}` }]);
      expect(text(record.rejected)).toEqual([{ type: 'text', text: `bad ${i}` }]);
      expect(record.images).toHaveLength(1);
      expect(Buffer.from(record.images[0] as Uint8Array).equals(png)).toBe(true);
      const shard = i < 5000 ? 'train-00000-of-00002.parquet' : 'train-00001-of-00002.parquet';
      expect(record.source).toEqual({ file: join(folder, 'data', shard), row: i < 5000 ? i : i - 5000 });
    }
  });

  it('selects a split and slices it as datasets does', async () => {
    const test = await openTrl(folder, { split: 'test' });
    expect(test.length).toBe(10);
    expect((await test.get(3))?.source.row).toBe(3);
    const head = await openTrl(folder, { split: 'train[:5%]' });
    expect(head.length).toBe(255); // round(0.05 * 5100)
    const tail = await openTrl(folder, { split: 'train[-100:]' });
    expect(tail.length).toBe(100);
    expect(text(((await tail.get(0)) as PreferenceRecord).chosen)).toEqual([{ type: 'text', text: 'good 5000' }]);
    const middle = await openTrl(folder, { split: 'train[10:20]' });
    expect(middle.length).toBe(10);
    expect(((await middle.get(0)) as PreferenceRecord).source.row).toBe(10);
    await expect(openTrl(folder, { split: 'validation' })).rejects.toThrow(/no validation-\*\.parquet/);
    await expect(openTrl(folder, { split: 'train[:5' })).rejects.toThrow(/expected name or name\[start:end\]/);
  });

  it('reads standard (text) rows, implicit prompts and image paths inside the root', async () => {
    const file = join(root, 'standard.parquet');
    writeFileSync(join(root, 'pic.png'), png);
    await writeParquet(
      `
      SELECT 'p' || i AS prompt, 'c' || i AS chosen, 'r' || i AS rejected,
        [{'bytes': NULL::BLOB, 'path': CASE WHEN i = 2 THEN '../outside.png' ELSE 'pic.png' END}] AS images
      FROM range(3) t(i)`,
      file,
      'snappy',
    );
    const data = await openTrl(file);
    expect(await data.get(1)).toMatchObject({
      prompt: 'p1',
      chosen: 'c1',
      rejected: 'r1',
      images: [join(root, 'pic.png')],
    });
    await expect(data.get(2)).rejects.toThrow(`${file} row 2: image "../outside.png" escapes the image root`);

    const implicit = join(root, 'implicit.parquet');
    await writeParquet(
      `
      SELECT [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'A'}] AS chosen,
        [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'B'}] AS rejected`,
      implicit,
      'zstd',
    );
    expect(await (await openTrl(implicit)).get(0)).toMatchObject({
      prompt: [{ role: 'user', content: 'hi' }],
      chosen: [{ role: 'assistant', content: 'A' }],
      rejected: [{ content: 'B' }],
      images: [],
    });
  });

  it('reads KTO rows, rlaif-v style content structs, null image lists and shards without data/', async () => {
    const folder = join(root, 'kto');
    mkdirSync(folder);
    const select = (from: number, to: number) => `
      SELECT [{'role': 'user', 'content': [
          {'index': 0, 'text': NULL, 'type': 'image'}, {'index': NULL, 'text': 'q' || i, 'type': 'text'}]}] AS prompt,
        [{'role': 'assistant', 'content': 'a' || i}] AS completion,
        i % 2 = 0 AS label,
        CASE WHEN i % 3 = 0 THEN NULL ELSE [{'bytes': from_hex('${png.toString('hex')}'), 'path': NULL}] END AS images
      FROM range(${from}, ${to}) t(i)`;
    await writeParquet(select(0, 6), join(folder, 'train-00000-of-00002.parquet'), 'zstd');
    await writeParquet(select(6, 9), join(folder, 'train-00001-of-00002.parquet'), 'snappy');
    const data = await openTrl(folder);
    expect(data.length).toBe(9);
    expect(await data.get(7)).toMatchObject({
      kind: 'unpaired',
      label: false,
      prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'q7' }] }],
      completion: [{ role: 'assistant', content: 'a7' }],
      source: { row: 1 },
    });
    expect((await data.get(6))?.images).toEqual([]);
    expect((await data.get(4))?.images.map((b) => Buffer.from(b as Uint8Array).equals(png))).toEqual([true]);
  });

  it('names the file and row of bad rows, and counts them when skipping', async () => {
    const file = join(root, 'bad.parquet');
    await writeParquet(
      `
      SELECT 'p' AS prompt, CASE WHEN i = 1 THEN NULL ELSE 'c' END AS chosen, 'r' AS rejected FROM range(3) t(i)`,
      file,
      'zstd',
    );
    await expect((await openTrl(file)).get(1)).rejects.toThrow(`${file} row 1: missing "chosen"`);
    const lenient = await openTrl(file, { skipBadRows: true });
    const rows = await Promise.all([0, 1, 2].map((i) => lenient.get(i)));
    expect(rows.map((r) => r === undefined)).toEqual([false, true, false]);
    expect(lenient.badRows).toEqual({ count: 1, examples: [`${file} row 1: missing "chosen"`] });

    const other = join(root, 'other.parquet');
    await writeParquet('SELECT 1 AS question, 2 AS answer', other, 'snappy');
    await expect(openTrl(other)).rejects.toThrow(`${other}: columns [question, answer] match no TRL format`);
  });
});

describe('jsonl', () => {
  it('reads unpaired KTO rows and SFT messages, naming bad lines', async () => {
    const kto = join(root, 'kto.jsonl');
    writeFileSync(
      kto,
      [
        JSON.stringify({
          prompt: [{ role: 'user', content: 'q' }],
          completion: [{ role: 'assistant', content: 'a' }],
          label: true,
        }),
        JSON.stringify({ prompt: 'q', completion: 'a', label: 'yes' }),
        JSON.stringify({ prompt: 'q', completion: 'a', label: false, images: ['../../etc/passwd'] }),
      ].join('\n'),
    );
    const data = await openTrl(kto);
    expect(await data.get(0)).toMatchObject({
      kind: 'unpaired',
      label: true,
      completion: [{ role: 'assistant', content: 'a' }],
    });
    await expect(data.get(1)).rejects.toThrow(`${kto}:2: "label" must be true or false, got "yes"`);
    await expect(data.get(2)).rejects.toThrow(`${kto}:3: image "../../etc/passwd" escapes the image root`);

    const sft = join(root, 'sft.jsonl');
    writeFileSync(
      sft,
      `${JSON.stringify({
        messages: [
          { role: 'user', content: 'q' },
          { role: 'assistant', content: 'a' },
        ],
      })}\n` + `${JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'txt' }] }] })}\n`,
    );
    const messages = await openTrl(sft);
    expect(await messages.get(0)).toMatchObject({
      kind: 'sft',
      messages: [{ role: 'user' }, { role: 'assistant', content: 'a' }],
    });
    await expect(messages.get(1)).rejects.toThrow(
      new RegExp(`^${sft}:2: chat messages: invalid messages\\[0\\]\\.content`),
    );
  });
});
