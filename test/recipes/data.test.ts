// scripts/make-recipe-data.mjs, checked with readers it does not use: DuckDB reads the parquet
// shards (columns, rows, codecs), sharp decodes the image bytes, and our format readers and
// models.fromPretrained open every data set and checkpoint the recipes point at.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMmpr } from '../../lib/data/mmpr.js';
import { openTrl } from '../../lib/data/trl.js';
import { openInternVlSft, openPlainDpo, openVlQuery } from '../../lib/data/vlrlhf.js';
import { decodeRecordImages } from '../../lib/data/images.js';
import { fromPretrained } from '../../lib/models/index.js';

const repo = join(import.meta.dirname, '..', '..');
const out = mkdtempSync(join(tmpdir(), 'vlalign-recipe-data-'));
const shard = (k: number) => join(out, 'rlaif-v', 'data', `train-0000${k}-of-00002.parquet`);
let db: DuckDBConnection;

function generate(folder: string): string {
  const child = spawnSync(process.execPath, ['scripts/make-recipe-data.mjs', '--out', folder], {
    cwd: repo,
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(`make-recipe-data failed (${child.status}): ${child.stderr}`);
  return child.stdout;
}

beforeAll(async () => {
  generate(out);
  db = await (await DuckDBInstance.create(':memory:')).connect();
}, 60_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

async function query(sql: string): Promise<Record<string, unknown>[]> {
  return (await db.runAndReadAll(sql)).getRowObjects() as Record<string, unknown>[];
}

describe('rlaif-v parquet shards (read by DuckDB)', () => {
  it('has HF columns, 6 rows a shard, snappy then zstd', async () => {
    for (const [k, codec] of [
      [0, 'SNAPPY'],
      [1, 'ZSTD'],
    ] as const) {
      const columns = await query(`DESCRIBE SELECT * FROM '${shard(k)}'`);
      expect(columns.map((c) => [c.column_name, c.column_type])).toEqual([
        ['prompt', 'STRUCT("content" STRUCT("text" VARCHAR, "type" VARCHAR)[], "role" VARCHAR)[]'],
        ['chosen', 'STRUCT("content" STRUCT("text" VARCHAR, "type" VARCHAR)[], "role" VARCHAR)[]'],
        ['rejected', 'STRUCT("content" STRUCT("text" VARCHAR, "type" VARCHAR)[], "role" VARCHAR)[]'],
        ['images', 'STRUCT(bytes BLOB, path VARCHAR)[]'],
      ]);
      expect(await query(`SELECT count(*)::INT AS n FROM '${shard(k)}'`)).toEqual([{ n: 6 }]);
      const codecs = await query(`SELECT DISTINCT compression FROM parquet_metadata('${shard(k)}')`);
      expect(codecs).toEqual([{ compression: codec }]);
      const kv = await query(`SELECT decode(key) AS key FROM parquet_kv_metadata('${shard(k)}')`);
      expect(kv.map((r) => r.key)).toContain('huggingface');
    }
  });

  it('holds images whose bytes decode, and questions whose chosen answer is true of the image', async () => {
    const rows = await query(
      `SELECT prompt[1].content[2].text AS q, chosen[1].content[1].text AS a, rejected[1].content[1].text AS w,
        images[1].bytes AS bytes, images[1].path AS path FROM read_parquet(['${shard(0)}', '${shard(1)}'])`,
    );
    expect(rows.length).toBe(12);
    for (const [k, row] of rows.entries()) {
      const bytes = (row.bytes as { bytes: Uint8Array }).bytes;
      const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      expect(info.width * info.height).toBeGreaterThanOrEqual(32 * 32);
      expect(row.path).toBe(k < 6 ? null : `scene_${String(k).padStart(2, '0')}.${k % 2 === 0 ? 'png' : 'jpg'}`);
      expect(row.a).not.toBe(row.w);
      if ((row.q as string).startsWith('What colour is the background')) {
        // the top-left pixel is background unless the shape starts there; check the answer names its colour
        const [r, g, b] = [data[0] as number, data[1] as number, data[2] as number];
        const name = r > 200 && g > 200 && b > 200 ? 'white' : r < 60 && g < 60 && b < 60 ? 'black' : 'grey';
        if (Math.max(r, g, b) - Math.min(r, g, b) < 30) expect(row.a).toBe(`It is ${name}.`);
      }
    }
  });
});

describe('our readers open every data set', () => {
  it('MMPR: repeat_time 2 and 0.5 give 8 x 2 + 4 records; multi-image and text-only rows read', async () => {
    const dataset = await openMmpr(join(out, 'mmpr', 'meta.json'));
    expect(dataset.length).toBe(20);
    const records = await Promise.all(Array.from({ length: 20 }, (_, i) => dataset.get(i)));
    const imageCounts = records.map((r) => r?.images.length);
    expect(imageCounts.filter((n) => n === 1).length).toBe(16);
    expect(imageCounts.filter((n) => n === 0).length + imageCounts.filter((n) => n === 2).length).toBe(4);
    for (const record of records) expect((await decodeRecordImages(record!)).length).toBe(record!.images.length);
  });

  it('TRL: the parquet folder (12 pairs, 2 test), KTO and SFT jsonl', async () => {
    const train = await openTrl(join(out, 'rlaif-v'));
    expect([train.length, (await openTrl(join(out, 'rlaif-v'), { split: 'test' })).length]).toEqual([12, 2]);
    for (let i = 0; i < 12; i += 1) expect((await decodeRecordImages((await train.get(i))!)).length).toBe(1);
    const kto = await openTrl(join(out, 'kto', 'train.jsonl'));
    const labels = await Promise.all(Array.from({ length: kto.length }, async (_, i) => (await kto.get(i))?.kind));
    expect(labels).toEqual(Array(8).fill('unpaired'));
    const sft = await openTrl(join(out, 'sft', 'train.jsonl'));
    expect([sft.length, (await sft.get(1))?.kind]).toEqual([6, 'sft']);
  });

  it('VL-RLHF plain_dpo and vlquery_json, InternVL SFT', async () => {
    const imageRoot = join(out, 'vlrlhf', 'images');
    const dpo = await openPlainDpo(join(out, 'vlrlhf', 'plain_dpo.json'), { imageRoot });
    const query = await openVlQuery(join(out, 'vlrlhf', 'vlquery.json'), { imageRoot });
    const internvl = await openInternVlSft(join(out, 'internvl_sft', 'train.jsonl'), {
      imageRoot: join(out, 'internvl_sft', 'images'),
    });
    expect([dpo.length, query.length, internvl.length]).toEqual([8, 6, 6]);
    for (const dataset of [dpo, query, internvl])
      for (let i = 0; i < dataset.length; i += 1) expect(await dataset.get(i)).toBeDefined();
  });
});

describe('checkpoints and determinism', () => {
  it('each tiny checkpoint loads with models.fromPretrained', async () => {
    for (const family of ['qwen2_vl', 'qwen2_5_vl', 'internvl']) {
      const model = await fromPretrained(join(out, family));
      expect(model.parameters().length).toBeGreaterThan(0);
      model.dispose();
    }
  });

  it('a second run writes the same bytes', () => {
    const again = mkdtempSync(join(tmpdir(), 'vlalign-recipe-data-'));
    try {
      generate(again);
      for (const file of [
        'mmpr/meta.json',
        'mmpr/annotations/shapes_vqa_correctness_rules.jsonl',
        'rlaif-v/data/train-00001-of-00002.parquet',
        'kto/train.jsonl',
        'vlrlhf/images/scene_03.jpg',
        'qwen2_5_vl/model.safetensors',
      ])
        expect(readFileSync(join(again, file)).equals(readFileSync(join(out, file)))).toBe(true);
    } finally {
      rmSync(again, { recursive: true, force: true });
    }
  }, 60_000);
});
