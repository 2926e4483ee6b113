// openDataset: each format opened from a tiny dataset in its real layout, paths relative to the
// recipe's folder, snake_case blocks as recipes write them, unknown keys with the nearest name,
// options of another format refused, a missing path named.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, describe, expect, it } from 'vitest';
import { openDataset, parseDatasetSpec } from '../../lib/data/open.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-open-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const png = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'images', 'img_140x140.png'));
mkdirSync(join(root, 'images'));
writeFileSync(join(root, 'images', 'a.png'), png);

describe('openDataset', () => {
  it('opens MMPR meta.json + jsonl with max_dynamic_patch and seed', async () => {
    mkdirSync(join(root, 'mmpr'));
    writeFileSync(
      join(root, 'mmpr', 'ann.jsonl'),
      [1, 2, 3]
        .map((i) => JSON.stringify({ image: 'a.png', question: `q${i}`, chosen: 'c', rejected: 'r' }))
        .join('\n'),
    );
    writeFileSync(
      join(root, 'mmpr', 'meta.json'),
      JSON.stringify({ d: { root: '../images', annotation: 'ann.jsonl', repeat_time: 2 } }),
    );
    const data = await openDataset(
      { format: 'mmpr', path: 'mmpr/meta.json', max_dynamic_patch: 6, seed: 1 },
      { baseDir: root },
    );
    expect(data.length).toBe(6);
    expect(await data.get(0)).toMatchObject({
      kind: 'preference',
      maxTiles: 6,
      images: [join(root, 'images', 'a.png')],
    });
  });

  it('opens TRL parquet shards with a split slice, and jsonl', async () => {
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    mkdirSync(join(root, 'trl', 'data'), { recursive: true });
    await db.run(`COPY (SELECT 'p' || i AS prompt, 'c' || i AS chosen, 'r' || i AS rejected FROM range(10) t(i))
      TO '${join(root, 'trl', 'data', 'train-00000-of-00001.parquet')}' (FORMAT parquet, COMPRESSION zstd)`);
    const data = await openDataset({ format: 'trl', path: 'trl', split: 'train[2:6]' }, { baseDir: root });
    expect(data.length).toBe(4);
    expect(await data.get(0)).toMatchObject({ prompt: 'p2', chosen: 'c2', rejected: 'r2' });
    writeFileSync(join(root, 'kto.jsonl'), JSON.stringify({ prompt: 'p', completion: 'c', label: true }));
    const kto = await openDataset({ format: 'trl', path: join(root, 'kto.jsonl'), skipBadRows: true });
    expect(kto.skipBadRows).toBe(true);
    expect(await kto.get(0)).toMatchObject({ kind: 'unpaired', label: true });
  });

  it('opens plain_dpo, vlquery_json and InternVL SFT with image_root', async () => {
    writeFileSync(
      join(root, 'dpo.json'),
      JSON.stringify([{ image: 'a.png', prompt: 'p', chosen: 'c', rejected: 'r' }]),
    );
    const dpo = await openDataset({ format: 'plain_dpo', path: 'dpo.json', image_root: 'images' }, { baseDir: root });
    expect(await dpo.get(0)).toMatchObject({ kind: 'preference', images: [join(root, 'images', 'a.png')] });
    writeFileSync(
      join(root, 'images', 'vq.json'),
      JSON.stringify([
        {
          image: 'a.png',
          conversations: [
            { from: 'user', value: 'q' },
            { from: 'assistant', value: 'a' },
          ],
        },
      ]),
    );
    // Without image_root, images resolve beside the data file.
    const vq = await openDataset({ format: 'vlquery_json', path: 'images/vq.json' }, { baseDir: root });
    expect(await vq.get(0)).toMatchObject({ kind: 'sft', images: [join(root, 'images', 'a.png')] });
    writeFileSync(
      join(root, 'sft.jsonl'),
      JSON.stringify({
        image: 'a.png',
        conversations: [
          { from: 'human', value: 'q' },
          { from: 'gpt', value: 'a' },
        ],
      }),
    );
    const sft = await openDataset(
      { format: 'internvl_sft', path: 'sft.jsonl', imageRoot: 'images', maxDynamicPatch: 4 },
      { baseDir: root },
    );
    expect(await sft.get(0)).toMatchObject({ kind: 'sft', maxTiles: 4, messages: [{ content: '<image>\nq' }, {}] });
  });

  it("suggests the nearest key, refuses another format's options and names a missing path", async () => {
    expect(() => parseDatasetSpec({ format: 'trl', path: 'x', image_rot: 'i' })).toThrow(
      "dataset: invalid dataset.image_rot: unknown key (did you mean 'image_root'?)",
    );
    expect(() => parseDatasetSpec({ format: 'trl', path: 'x', skipBadRow: true }, { source: 'r.yaml' })).toThrow(
      "r.yaml: invalid dataset.skipBadRow: unknown key (did you mean 'skipBadRows'?)",
    );
    expect(() => parseDatasetSpec({ format: 'mmpr', path: 'x', split: 'train' })).toThrow(
      'invalid dataset.split: applies to format trl / trl_prompt / hf_disk, not mmpr',
    );
    expect(() => parseDatasetSpec({ format: 'csv', path: 'x' })).toThrow(/invalid dataset.format/);
    await expect(openDataset({ format: 'trl', path: 'nope.jsonl' }, { baseDir: root })).rejects.toThrow(
      `invalid dataset.path: ${join(root, 'nope.jsonl')} does not exist`,
    );
  });
});
