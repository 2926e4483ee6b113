// scripts/make-recipe-data.mjs, checked with readers it does not use: DuckDB reads the parquet
// shards (columns, rows, codecs), apache-arrow's reader the `save_to_disk` Arrow streams, sharp
// decodes the image bytes (and the pictures' pixels prove the answers and boxes true), and our format
// readers and models.fromPretrained open every data set and checkpoint the recipes point at.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { tableFromIPC } from 'apache-arrow';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMmpr } from '../../lib/data/mmpr.js';
import { openTrl } from '../../lib/data/trl.js';
import { openInternVlSft, openPlainDpo, openVlQuery } from '../../lib/data/vlrlhf.js';
import { decodeRecordImages } from '../../lib/data/images.js';
import { openHfDisk } from '../../lib/data/hf_disk.js';
import { openVerl } from '../../lib/data/verl.js';
import { rewardRegistry } from '../../lib/rewards/registry.js';
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

// --- Pictures: the answers and boxes are checked against the pixels ---------------------------

type Shape = 'square' | 'circle' | 'triangle';
type Box = [number, number, number, number];

interface Picture {
  data: Buffer;
  width: number;
  height: number;
  background: [number, number, number];
}

async function pictureOf(bytes: Uint8Array): Promise<Picture> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const counts = new Map<number, number>();
  for (let i = 0; i < data.length; i += 3) {
    const key = ((data[i] as number) << 16) | ((data[i + 1] as number) << 8) | (data[i + 2] as number);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const [key] = [...counts.entries()].reduce((a, b) => (b[1] > a[1] ? b : a));
  return { data, width: info.width, height: info.height, background: [key >> 16, (key >> 8) & 255, key & 255] };
}

/** The tight pixel box [x1, y1, x2, y2) of the non-background pixels in `within`, and how many there are. */
function foreground(picture: Picture, within: Box = [0, 0, picture.width, picture.height]) {
  const [x1, y1, x2, y2] = within.map(Math.round) as Box;
  const box: Box = [Infinity, Infinity, -Infinity, -Infinity];
  let count = 0;
  for (let y = Math.max(0, y1); y < Math.min(picture.height, y2); y += 1) {
    for (let x = Math.max(0, x1); x < Math.min(picture.width, x2); x += 1) {
      const at = (y * picture.width + x) * 3;
      const distance = [0, 1, 2].reduce(
        (d, c) => d + Math.abs((picture.data[at + c] as number) - picture.background[c]!),
        0,
      );
      if (distance < 120) continue; // background, or JPEG ringing near it
      count += 1;
      box[0] = Math.min(box[0], x);
      box[1] = Math.min(box[1], y);
      box[2] = Math.max(box[2], x + 1);
      box[3] = Math.max(box[3], y + 1);
    }
  }
  return { box, count };
}

/** A shape told by how much of its box it fills: a square all of it, a circle pi/4, a triangle half. */
function shapeOf({ box, count }: { box: Box; count: number }): Shape {
  const fill = count / ((box[2] - box[0]) * (box[3] - box[1]));
  return fill > 0.92 ? 'square' : fill > 0.66 ? 'circle' : 'triangle';
}

/** A 0-1000 box in pixels of a width x height picture. */
const inPixels = (b: readonly number[], width: number, height: number): Box =>
  [(b[0]! * width) / 1000, (b[1]! * height) / 1000, (b[2]! * width) / 1000, (b[3]! * height) / 1000] as Box;

/** The shape inside a ground-truth box, after checking the box is tight around it (within 1.5 px a side). */
function shapeInBox(picture: Picture, thousandths: readonly number[]): Shape {
  const truth = inPixels(thousandths, picture.width, picture.height);
  const found = foreground(picture, truth);
  expect(found.count).toBeGreaterThan(20);
  for (let k = 0; k < 4; k += 1) expect(Math.abs(found.box[k]! - truth[k]!)).toBeLessThanOrEqual(1.5);
  return shapeOf(found);
}

/** ViRFT's solution, Python's str() of a list of dicts, read as JSON the way its reward does ('→"). */
const virftBoxes = (solution: string): { Position: number[]; Confidence: number }[] =>
  JSON.parse(/<answer>(.*)<\/answer>/.exec(solution)![1]!.replaceAll("'", '"'));

const virftFolder = (name: string) => join(out, name);

describe('ViRFT save_to_disk DatasetDicts (read by apache-arrow)', () => {
  it('are DatasetDicts of one train split: an Arrow IPC stream, state.json and dataset_info.json', () => {
    for (const [name, rows] of [
      ['virft_detection', 8],
      ['virft_classification', 12],
    ] as const) {
      const folder = virftFolder(name);
      expect(JSON.parse(readFileSync(join(folder, 'dataset_dict.json'), 'utf8'))).toEqual({ splits: ['train'] });
      const state = JSON.parse(readFileSync(join(folder, 'train', 'state.json'), 'utf8'));
      expect(state._data_files).toEqual([{ filename: 'data-00000-of-00001.arrow' }]);
      expect(state._fingerprint).toMatch(/^[0-9a-f]{16}$/);
      const bytes = readFileSync(join(folder, 'train', 'data-00000-of-00001.arrow'));
      expect(bytes.readUInt32LE(0)).toBe(0xffffffff); // a stream opens with a continuation marker, a file with ARROW1
      const table = tableFromIPC(bytes);
      expect(table.numRows).toBe(rows);
      expect(table.schema.fields.map((f) => [f.name, String(f.type)])).toEqual([
        ['image', 'Struct<{bytes:Binary, path:Utf8}>'],
        ['problem', 'Utf8'],
        ['solution', 'Utf8'],
      ]);
      const features = {
        image: { _type: 'Image' },
        problem: { dtype: 'string', _type: 'Value' },
        solution: { dtype: 'string', _type: 'Value' },
      };
      expect(JSON.parse(table.schema.metadata.get('huggingface')!).info.features).toEqual(features);
      const info = JSON.parse(readFileSync(join(folder, 'train', 'dataset_info.json'), 'utf8'));
      expect(info.features).toEqual(features);
    }
  });

  it('detection: RGBA PNG pictures, and every solution box is tight around a shape of the asked category', async () => {
    const table = tableFromIPC(
      readFileSync(join(virftFolder('virft_detection'), 'train', 'data-00000-of-00001.arrow')),
    );
    let boxes = 0;
    for (let i = 0; i < table.numRows; i += 1) {
      const row = table.get(i)!.toJSON() as {
        image: { bytes: Uint8Array; path: string | null };
        problem: string;
        solution: string;
      };
      expect(row.image.path).toBeNull();
      const meta = await sharp(row.image.bytes).metadata();
      expect([meta.format, meta.channels]).toEqual(['png', 4]);
      const category = /category '(\w+)'/.exec(row.problem)![1];
      expect(row.problem).toContain("<answer>[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]</answer>");
      expect(row.solution).toMatch(
        /^<answer>\[\{'Position': \[\d+, \d+, \d+, \d+\], 'Confidence': 1\}(, \{.*\})*\]<\/answer>$/,
      );
      const picture = await pictureOf(row.image.bytes);
      for (const { Position, Confidence } of virftBoxes(row.solution)) {
        expect(Confidence).toBe(1);
        expect(shapeInBox(picture, Position)).toBe(category);
        boxes += 1;
      }
    }
    expect(boxes).toBeGreaterThan(table.numRows); // some pictures hold two of the category
  });

  it('classification: four pictures of each shape, the solution naming the shape drawn', async () => {
    const table = tableFromIPC(
      readFileSync(join(virftFolder('virft_classification'), 'train', 'data-00000-of-00001.arrow')),
    );
    const seen: string[] = [];
    for (let i = 0; i < table.numRows; i += 1) {
      const row = table.get(i)!.toJSON() as { image: { bytes: Uint8Array }; problem: string; solution: string };
      expect(row.problem).toContain('<think> ... </think> <answer>shape name</answer>');
      const shape = /^<answer>(\w+)<\/answer>$/.exec(row.solution)![1]!;
      expect(shapeOf(foreground(await pictureOf(row.image.bytes)))).toBe(shape);
      seen.push(shape);
    }
    expect(seen.sort()).toEqual([...Array(4).fill('circle'), ...Array(4).fill('square'), ...Array(4).fill('triangle')]);
  });
});

describe('MMPR-Tiny-style verl parquet (read by DuckDB)', () => {
  const file = (name: string) => join(out, 'mmpr_tiny', name);

  it("has verl's columns and types (pandas' int64), snappy pages", async () => {
    const common = [
      ['data_source', 'VARCHAR'],
      ['prompt', 'STRUCT("content" VARCHAR, "role" VARCHAR)[]'],
      ['images', 'STRUCT(bytes BLOB, path VARCHAR)[]'],
      ['ability', 'VARCHAR'],
    ];
    for (const [name, rows, groundTruth, extraInfo] of [
      ['mmpr_tiny.parquet', 8, 'VARCHAR', 'STRUCT(answer VARCHAR, "index" BIGINT, question VARCHAR, split VARCHAR)'],
      [
        'grounding.parquet',
        4,
        'BIGINT[]',
        'STRUCT(height BIGINT, id VARCHAR, "index" BIGINT, question VARCHAR, split VARCHAR, width BIGINT)',
      ],
    ] as const) {
      const columns = await query(`DESCRIBE SELECT * FROM '${file(name)}'`);
      expect(columns.map((c) => [c.column_name, c.column_type])).toEqual([
        ...common,
        ['reward_model', `STRUCT(ground_truth ${groundTruth}, style VARCHAR)`],
        ['extra_info', extraInfo],
      ]);
      expect(await query(`SELECT count(*)::INT AS n FROM '${file(name)}'`)).toEqual([{ n: rows }]);
      const codecs = await query(`SELECT DISTINCT compression FROM parquet_metadata('${file(name)}')`);
      expect(codecs).toEqual([{ compression: 'SNAPPY' }]);
    }
  });

  it('boxed rows: one <image> a prompt, image bytes or an images/ path, answers true of the picture', async () => {
    const rows = await query(
      `SELECT data_source, prompt[1].content AS content, prompt[1].role AS role, len(images)::INT AS n,
        images[1].bytes AS bytes, images[1].path AS path, reward_model.ground_truth AS gt, reward_model.style AS style,
        extra_info.answer AS answer, extra_info.question AS question FROM '${file('mmpr_tiny.parquet')}'`,
    );
    const corners: Record<Shape, string> = { triangle: '3', square: '4', circle: '0' };
    for (const [k, row] of rows.entries()) {
      expect([row.data_source, row.role, row.n, row.style]).toEqual(['hiyouga/geometry3k', 'user', 1, 'rule']);
      expect(row.gt).toBe(row.answer);
      const content = row.content as string;
      expect(content.match(/<image>/g)?.length).toBe(1);
      expect(content).toBe(`<image>\n${row.question} ${content.slice(content.indexOf('You FIRST think'))}`);
      expect(content.endsWith('The final answer MUST BE put in \\boxed{}.')).toBe(true);
      const bytes =
        row.bytes === null
          ? new Uint8Array(readFileSync(join(out, 'mmpr_tiny', row.path as string)))
          : (row.bytes as { bytes: Uint8Array }).bytes;
      expect(row.bytes === null).toBe(k >= 6);
      const shape = shapeOf(foreground(await pictureOf(bytes)));
      const question = row.question as string;
      if (question.startsWith('How many corners')) expect(row.gt).toBe(corners[shape]);
      const option = new RegExp(`^${row.gt as string}\\. (\\w+)$`, 'm').exec(question);
      if (question.startsWith('Which shape')) expect(option?.[1]).toBe(shape);
      if (question.startsWith('What colour')) expect(option).not.toBeNull();
    }
    expect(rows.filter((r) => (r.question as string).startsWith('Which shape')).length).toBeGreaterThan(1);
  });

  it('grounding rows (the verl-internvl fork): a 0-1000 box tight around the named shape, the picture size in extra_info', async () => {
    const rows = await query(
      `SELECT prompt[1].content AS content, images[1].bytes AS bytes, reward_model.ground_truth AS gt,
        extra_info.width AS width, extra_info.height AS height, ability FROM '${file('grounding.parquet')}'`,
    );
    expect(rows.length).toBe(4);
    for (const row of rows) {
      const content = row.content as string;
      const [, shape] =
        /^<image>\nPlease provide the bounding box coordinate of the region this sentence describes: <ref>the \w+ (\w+)<\/ref>$/.exec(
          content,
        )!;
      const picture = await pictureOf((row.bytes as { bytes: Uint8Array }).bytes);
      expect([Number(row.width), Number(row.height)]).toEqual([picture.width, picture.height]);
      const gt = (row.gt as { items: bigint[] }).items.map(Number);
      expect(shapeInBox(picture, gt)).toBe(shape);
      expect(row.ability).toBe('grounding');
    }
  });
});

describe('the GRPO data with our readers and rewards', () => {
  const score = async (name: string, completions: string[], columns: Record<string, unknown>[]) =>
    rewardRegistry.create(name).fn({ prompts: completions.map(() => ''), completions, columns });

  it('ViRFT: the folders open as image + problem prompts; the solutions themselves score full marks', async () => {
    const detection = await openHfDisk(virftFolder('virft_detection'));
    const classification = await openHfDisk(virftFolder('virft_classification'), { split: 'train' });
    expect([detection.length, classification.length]).toEqual([8, 12]);
    for (const [dataset, rewards] of [
      [detection, ['virft_accuracy_iou', 'virft_accuracy_confidence', 'virft_format']],
      [classification, ['virft_classification', 'virft_format']],
    ] as const) {
      const records = await Promise.all(Array.from({ length: dataset.length }, (_, i) => dataset.get(i)));
      for (const record of records) {
        expect((await decodeRecordImages(record!)).length).toBe(1);
        expect(record!.prompt).toEqual([
          { role: 'user', content: [{ type: 'image' }, { type: 'text', text: record!.columns.problem }] },
        ]);
      }
      const columns = records.map((r) => r!.columns);
      const right = columns.map((c) => `<think>I see it.</think> ${c.solution as string}`);
      for (const name of rewards) expect(await score(name, right, columns)).toEqual(columns.map(() => 1));
      const wrong = columns.map(() => '<think>?</think> <answer>[]</answer>');
      expect(await score(rewards[0], wrong, columns)).toEqual(columns.map(() => 0));
    }
  });

  it('verl: the folder opens as 12 records with one image each; verl_default gives right answers 1 and wrong ones less', async () => {
    const dataset = await openVerl(join(out, 'mmpr_tiny'), { maxDynamicPatch: 2 });
    expect(dataset.length).toBe(12);
    const records = await Promise.all(Array.from({ length: 12 }, (_, i) => dataset.get(i)));
    for (const record of records) {
      expect((await decodeRecordImages(record!)).length).toBe(1);
      expect(record!.maxTiles).toBe(2);
    }
    const columns = records.map((r) => r!.columns);
    expect(columns.map((c) => c.data_source)).toEqual([
      ...Array(4).fill('grounding'),
      ...Array(8).fill('hiyouga/geometry3k'),
    ]);
    const answer = (c: Record<string, unknown>, right: boolean) => {
      const gt = c.ground_truth;
      if (Array.isArray(gt)) return `<answer>[${(right ? gt : gt.map((v: number) => 1000 - v)).join(', ')}]</answer>`;
      return `<think>Look at it.</think> The answer is \\boxed{${right ? gt : 'Z'}}.`;
    };
    expect(
      await score(
        'verl_default',
        columns.map((c) => answer(c, true)),
        columns,
      ),
    ).toEqual(columns.map(() => 1));
    const wrong = await score(
      'verl_default',
      columns.map((c) => answer(c, false)),
      columns,
    );
    for (const value of wrong) expect(value).toBeLessThan(1);
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
        'virft_detection/train/data-00000-of-00001.arrow',
        'virft_detection/train/state.json',
        'virft_classification/train/data-00000-of-00001.arrow',
        'mmpr_tiny/mmpr_tiny.parquet',
        'mmpr_tiny/grounding.parquet',
        'qwen2_5_vl/model.safetensors',
      ])
        expect(readFileSync(join(again, file)).equals(readFileSync(join(out, file)))).toBe(true);
    } finally {
      rmSync(again, { recursive: true, force: true });
    }
  }, 60_000);
});
