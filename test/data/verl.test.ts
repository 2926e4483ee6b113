// verl RL parquet read by hyparquet from files DuckDB (a different library) wrote: geo3k rows
// (`<image>` in the text, image bytes in HF structs, reward_model / extra_info structs), MMPR-Tiny
// rows (several images by relative path), the rewards' columns, bad rows and missing columns named,
// image paths kept inside the root, and laziness: a row reads its own row group, not later ones
// (row-group byte ranges from DuckDB's parquet_metadata).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeRecordImages } from '../../lib/data/images.js';
import { openDataset } from '../../lib/data/open.js';
import type { PromptRecord } from '../../lib/data/records.js';
import { openVerl } from '../../lib/data/verl.js';

const reads: { file: string; start: number; end: number }[] = [];
vi.mock('hyparquet', async (importOriginal) => {
  const original = await importOriginal<typeof import('hyparquet')>();
  return {
    ...original,
    asyncBufferFromFile: async (file: string) => {
      const buffer = await original.asyncBufferFromFile(file);
      return {
        byteLength: buffer.byteLength,
        slice: (start: number, end?: number) => {
          reads.push({ file, start, end: end ?? buffer.byteLength });
          return buffer.slice(start, end);
        },
      };
    },
  };
});

const root = mkdtempSync(join(tmpdir(), 'vlalign-verl-'));
const png = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'images', 'img_140x140.png'));
let db: DuckDBConnection;
beforeAll(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function writeParquet(select: string, file: string, rowGroup = 122880) {
  await db.run(`COPY (${select}) TO '${file}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${rowGroup})`);
}

// examples/data_preprocess/geo3k.py's row: the instruction appended to the problem, which holds `<image>`.
const instruction =
  ' You FIRST think about the reasoning process as an internal monologue and then provide the final answer. ' +
  'The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.';
const geo3kRows = (n: number, images = `[{'bytes': from_hex('${png.toString('hex')}'), 'path': NULL}]`) => `
  SELECT 'hiyouga/geometry3k' AS data_source,
    [{'role': 'user', 'content': '<image>Find x in triangle ' || i || '.' || '${instruction}'}] AS prompt,
    ${images} AS images,
    'math' AS ability,
    {'style': 'rule', 'ground_truth': (i * 2)::VARCHAR} AS reward_model,
    {'split': 'train', 'index': i, 'answer': (i * 2)::VARCHAR, 'question': '<image>Find x in triangle ' || i || '.'}
      AS extra_info
  FROM range(${n}) t(i)`;

describe('geo3k rows (written by DuckDB)', () => {
  const file = join(root, 'geo3k_train.parquet');
  beforeAll(() => writeParquet(geo3kRows(40), file));

  it("splits `<image>` into parts as verl's dataset does and passes the reward columns", async () => {
    const data = await openVerl(file);
    expect(data.length).toBe(40);
    const record = (await data.get(17)) as PromptRecord;
    expect(record).toMatchObject({ kind: 'prompt', id: 'geo3k_train.parquet:17', source: { file, row: 17 } });
    expect(record.prompt).toEqual([
      {
        role: 'user',
        content: [{ type: 'image' }, { type: 'text', text: `Find x in triangle 17.${instruction}` }],
      },
    ]);
    expect(record.columns).toEqual({
      data_source: 'hiyouga/geometry3k',
      ability: 'math',
      reward_model: { style: 'rule', ground_truth: '34' },
      extra_info: { split: 'train', index: 17, answer: '34', question: '<image>Find x in triangle 17.' },
      ground_truth: '34',
    });
    expect(record.images.map((b) => Buffer.from(b as Uint8Array).equals(png))).toEqual([true]);
    const [pixels] = await decodeRecordImages(record);
    expect([pixels?.width, pixels?.height]).toEqual([140, 140]);
  });

  it('reads a row group only when one of its rows is asked for', async () => {
    // Four row groups of 2048 rows (DuckDB's smallest), ~0.5 MB each from an incompressible column,
    // so that hyparquet's 512 kB footer read reaches into the last group only.
    const file = join(root, 'groups.parquet');
    const noise = Array.from({ length: 16 }, (_, k) => `md5((extra_info.index * 16 + ${k})::VARCHAR)`).join(' || ');
    await writeParquet(
      `SELECT *, ${noise} AS noise FROM (${geo3kRows(8192, "[{'bytes': NULL::BLOB, 'path': 'pic.png'}]")})`,
      file,
      2048,
    );
    writeFileSync(join(root, 'pic.png'), png);
    const groups = await db.runAndReadAll(
      `SELECT row_group_id, min(coalesce(dictionary_page_offset, data_page_offset)) AS start,
         max(coalesce(dictionary_page_offset, data_page_offset) + total_compressed_size) AS stop
       FROM parquet_metadata('${file}') GROUP BY row_group_id ORDER BY row_group_id`,
    );
    const spans = groups.getRowObjects().map((g) => ({ start: Number(g.start), stop: Number(g.stop) }));
    expect(spans).toHaveLength(4);
    const touched = () =>
      spans.slice(0, 3).map((span) => reads.some((r) => r.file === file && r.start < span.stop && r.end > span.start));
    reads.length = 0;
    const data = await openVerl(file);
    expect(touched()).toEqual([false, false, false]);
    await data.get(3);
    await data.get(2047);
    expect(touched()).toEqual([true, false, false]);
    expect(((await data.get(4100)) as PromptRecord).columns.ground_truth).toBe('8200');
    expect(touched()).toEqual([true, false, true]);
  });

  it('opens through openDataset (a folder of parquet files, image_root)', async () => {
    const folder = join(root, 'shards');
    mkdirSync(folder);
    await writeParquet(geo3kRows(3), join(folder, 'train-00000.parquet'));
    await writeParquet(geo3kRows(2), join(folder, 'train-00001.parquet'));
    const data = await openDataset({ format: 'verl', path: 'shards', image_root: '.' }, { baseDir: root });
    expect(data.length).toBe(5);
    expect(await data.get(4)).toMatchObject({
      kind: 'prompt',
      columns: { ground_truth: '2' },
      source: { file: join(folder, 'train-00001.parquet'), row: 1 },
    });
  });
});

describe('MMPR-Tiny rows (written by DuckDB)', () => {
  it('resolves relative image paths beside the parquet, several images per row', async () => {
    const folder = join(root, 'MMPR-Tiny');
    mkdirSync(join(folder, 'images', 'ai2d'), { recursive: true });
    writeFileSync(join(folder, 'images', 'ai2d', '1.png'), png);
    writeFileSync(join(folder, 'images', 'ai2d', '2.png'), png);
    const file = join(folder, 'mmpr_tiny.parquet');
    await writeParquet(
      `
      SELECT 'mmpr_tiny' AS data_source,
        [{'role': 'user', 'content': CASE WHEN i = 0 THEN '<image>\nWhich label? A. leaf B. root'
          ELSE 'Image-1: <image>\nImage-2: <image>\nCompare them.' END}] AS prompt,
        CASE WHEN i = 0 THEN [{'bytes': NULL::BLOB, 'path': 'images/ai2d/1.png'}]
          ELSE [{'bytes': NULL::BLOB, 'path': 'images/ai2d/1.png'}, {'bytes': NULL::BLOB, 'path': 'images/ai2d/2.png'}]
          END AS images,
        'math' AS ability,
        {'style': 'rule', 'ground_truth': CASE WHEN i = 0 THEN 'A' ELSE '3/4' END} AS reward_model,
        {'question': 'q' || i} AS extra_info
      FROM range(2) t(i)`,
      file,
    );
    const data = await openVerl(file);
    expect(await data.get(0)).toMatchObject({
      prompt: [
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: '\nWhich label? A. leaf B. root' }] },
      ],
      images: [join(folder, 'images', 'ai2d', '1.png')],
      columns: { data_source: 'mmpr_tiny', ground_truth: 'A', extra_info: { question: 'q0' } },
    });
    const two = (await data.get(1)) as PromptRecord;
    expect(two.prompt).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Image-1: ' },
          { type: 'image' },
          { type: 'text', text: '\nImage-2: ' },
          { type: 'image' },
          { type: 'text', text: '\nCompare them.' },
        ],
      },
    ]);
    expect(two.images).toEqual([join(folder, 'images', 'ai2d', '1.png'), join(folder, 'images', 'ai2d', '2.png')]);
    expect(two.columns.ground_truth).toBe('3/4');
    expect(two.maxTiles).toBeUndefined();
    // InternVL's tile budget, shared by a row's images as max(1, max_dynamic_patch // n).
    const tiled = await openDataset({ format: 'verl', path: file, max_dynamic_patch: 12 });
    expect([(await tiled.get(0))?.maxTiles, (await tiled.get(1))?.maxTiles]).toEqual([12, 6]);
  });
});

describe('bad input', () => {
  it('names bad rows by file and row, counts them when skipping, and keeps paths inside the root', async () => {
    const file = join(root, 'bad.parquet');
    await writeParquet(
      `
      SELECT CASE WHEN i = 1 THEN NULL ELSE 'geo' END AS data_source,
        CASE WHEN i = 4 THEN [{'role': 'user', 'content': '<image><image>two?'}]
          ELSE [{'role': 'user', 'content': '<image>q'}] END AS prompt,
        [{'bytes': NULL::BLOB, 'path': CASE WHEN i = 3 THEN '../../etc/passwd' ELSE 'pic.png' END}] AS images,
        {'style': 'rule', 'ground_truth': CASE WHEN i = 2 THEN NULL ELSE '1' END} AS reward_model,
        CASE WHEN i = 0 THEN NULL ELSE {'index': i} END AS extra_info
      FROM range(5) t(i)`,
      file,
    );
    writeFileSync(join(root, 'pic.png'), png);
    const data = await openVerl(file);
    // A null extra_info reaches the rewards as {} (verl's reward manager reads `.get("extra_info", {})`).
    expect(((await data.get(0)) as PromptRecord).columns.extra_info).toEqual({});
    await expect(data.get(1)).rejects.toThrow(`${file} row 1: "data_source" must be a non-empty string`);
    await expect(data.get(2)).rejects.toThrow(`${file} row 2: missing "reward_model.ground_truth"`);
    await expect(data.get(3)).rejects.toThrow(`${file} row 3: image "../../etc/passwd" escapes the image root`);
    await expect(data.get(4)).rejects.toThrow(`${file} row 4: prompt has 2 image placeholder(s) for 1 image(s)`);
    const lenient = await openVerl(file, { skipBadRows: true });
    const got = await Promise.all([0, 1, 2, 3, 4].map((i) => lenient.get(i)));
    expect(got.map((r) => r === undefined)).toEqual([false, true, true, true, true]);
    expect(lenient.badRows.count).toBe(4);
    expect(lenient.badRows.examples[0]).toBe(`${file} row 1: "data_source" must be a non-empty string`);
  });

  it('names the missing columns of a file before reading rows', async () => {
    const file = join(root, 'no_reward.parquet');
    await writeParquet(
      `SELECT 'geo' AS data_source, [{'role': 'user', 'content': 'q'}] AS prompt FROM range(2) t(i)`,
      file,
    );
    await expect(openVerl(file)).rejects.toThrow(
      `${file}: missing column "reward_model" (columns: data_source, prompt)`,
    );
    const text = join(root, 'text_prompt.parquet');
    await writeParquet(
      `SELECT 'geo' AS data_source, 'q' AS prompt, {'ground_truth': '1'} AS reward_model FROM range(1) t(i)`,
      text,
    );
    await expect((await openVerl(text)).get(0)).rejects.toThrow(
      `${text} row 0: "prompt" must be a list of chat messages`,
    );
  });
});
