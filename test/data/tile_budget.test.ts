// InternVL's per-record tile budget end to end: MMPR meta.json + jsonl → records → the loader's
// decoded batches → samples → InternVLProcessor → packed pairs. Each image's tile count is checked
// three ways (pixel_values rows, image_flags, IMG_CONTEXT tokens inside its <img>…</img> block)
// against dynamic_preprocess's rule written out here from InternVL's dataset.py: the (i, j) grid
// with min <= i·j <= max closest in aspect ratio (on a tie the later, larger grid only when the
// image covers more than half its canvas), plus a thumbnail when the grid has more than one tile;
// max = the dataset's max_dynamic_patch for one image, max(1, max_dynamic_patch // n) for n.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTileDefault } from '../../lib/cli/build.js';
import { DataLoader } from '../../lib/data/loader.js';
import { openMmpr } from '../../lib/data/mmpr.js';
import { packPairs } from '../../lib/data/pack_pairs.js';
import type { PreferenceRecord, RecordDataset } from '../../lib/data/records.js';
import { preferenceSamples } from '../../lib/data/samples.js';
import { fromPretrained, type InternVLProcessor, type Qwen2VlProcessor } from '../../lib/processing/index.js';
import { tinyConfig } from '../../lib/tiny/configs.js';
import type { Tensor } from '../../lib/torch/index.js';
import { realQwenDir, tinyDir } from '../processing/helpers.js';

const TILE = 448;
const TOKENS_PER_TILE = 256; // (448 / 14 · downsample 0.5)²
const [IMG, IMG_END] = ['<img>', '</img>'];

/** Tiles dynamic_preprocess makes of a width x height image with max_num `maxNum` (min_num 1, thumbnail on). */
function expectedTiles(width: number, height: number, maxNum: number): number {
  const ratios: Array<[number, number]> = [];
  for (let n = 1; n <= maxNum; n++)
    for (let i = 1; i <= n; i++)
      for (let j = 1; j <= n; j++)
        if (i * j <= maxNum && !ratios.some(([a, b]) => a === i && b === j)) ratios.push([i, j]);
  ratios.sort((a, b) => a[0] * a[1] - b[0] * b[1]);
  let best: [number, number] = [1, 1];
  let bestDiff = Number.POSITIVE_INFINITY;
  for (const [i, j] of ratios) {
    const diff = Math.abs(width / height - i / j);
    if (diff < bestDiff) [bestDiff, best] = [diff, [i, j]];
    else if (diff === bestDiff && width * height > 0.5 * TILE * TILE * i * j) best = [i, j];
  }
  const blocks = best[0] * best[1];
  return blocks === 1 ? 1 : blocks + 1;
}

// Sizes where the budget decides: 4:1 gives (3,1) under 3 tiles, (4,1) under 4 and 6; 3:2 gives
// one tile under 3 (tie at 1 and 2 on a small image) and (3,2) under 6.
const IMAGES: Record<string, [number, number]> = {
  'wide.png': [400, 100],
  'small.png': [150, 100],
  'photo.png': [300, 200],
};

const root = mkdtempSync(join(tmpdir(), 'vlalign-tile-budget-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function writeMmpr(): Promise<string> {
  mkdirSync(join(root, 'images'), { recursive: true });
  for (const [name, [width, height]] of Object.entries(IMAGES)) {
    const data = Buffer.alloc(width * height * 3, 0);
    for (let k = 0; k < data.length; k++) data[k] = (k * 37) % 251;
    await sharp(data, { raw: { width, height, channels: 3 } })
      .png()
      .toFile(join(root, 'images', name));
  }
  const row = (extra: Record<string, unknown>) =>
    JSON.stringify({ question: 'Q?', chosen: 'yes', rejected: 'no', ...extra });
  writeFileSync(
    join(root, 'own.jsonl'),
    [
      row({ image: ['wide.png', 'small.png'], question: 'Image-1: <image>\nImage-2: <image>\nQ?' }),
      row({ image: 'photo.png' }),
      row({}),
    ].join('\n'),
  );
  writeFileSync(join(root, 'default.jsonl'), row({ image: 'wide.png' }));
  const entry = (annotation: string, extra: Record<string, unknown>) => ({
    root: 'images',
    annotation,
    repeat_time: 1,
    ...extra,
  });
  const meta = join(root, 'meta.json');
  writeFileSync(
    meta,
    JSON.stringify({ own: entry('own.jsonl', { max_dynamic_patch: 6 }), fallback: entry('default.jsonl', {}) }),
  );
  return meta;
}

let dataset: RecordDataset<PreferenceRecord>;
let processor: InternVLProcessor;

beforeAll(async () => {
  // The dataset default (InternVL's --max_dynamic_patch) is 4; the processor's own maxNum 2 must not be used.
  dataset = await openMmpr(await writeMmpr(), { maxDynamicPatch: 4 });
  const dir = await tinyDir('internvl', tinyConfig('internvl'));
  processor = (await fromPretrained(dir, { tiling: { maxNum: 2 } })) as InternVLProcessor;
});

/** Per pair: the IMG_CONTEXT count of each <img>…</img> block, in order. */
function contextBlocks(inputIds: Tensor, p: InternVLProcessor): number[][] {
  const [img, end] = [p.tokenizer.tokenToId(IMG), p.tokenizer.tokenToId(IMG_END)];
  return (inputIds.toArray() as number[][]).map((row) => {
    const blocks: number[] = [];
    let open = -1;
    row.forEach((id, t) => {
      if (id === img) open = t;
      if (id === end) {
        const inside = row.slice(open + 1, t);
        expect(inside.every((x) => x === p.imageContext.id)).toBe(true);
        blocks.push(inside.length);
      }
    });
    expect(row.filter((id) => id === p.imageContext.id)).toHaveLength(blocks.reduce((a, b) => a + b, 0));
    return blocks;
  });
}

describe('InternVL tile budget from the record to the processor', () => {
  it('records carry max(1, max_dynamic_patch // n) per image, the meta entry first, the default next', async () => {
    const budgets = await Promise.all([0, 1, 2, 3].map(async (i) => (await dataset.get(i))!));
    const byImages = new Map(budgets.map((r) => [r.images.length === 0 ? 'text' : r.images.join(','), r.maxTiles]));
    expect(byImages.get(join(root, 'images', 'wide.png'))).toBe(4); // fallback dataset: the option's 4
    expect(byImages.get(join(root, 'images', 'photo.png'))).toBe(6);
    expect(byImages.get([join(root, 'images', 'wide.png'), join(root, 'images', 'small.png')].join(','))).toBe(3);
    expect(byImages.get('text')).toBe(1);
  });

  it('every pair packs the tiles, flags and IMG_CONTEXT tokens of its own budget', async () => {
    const loader = new DataLoader(dataset, { batchSize: 4, seed: 0, shuffle: false });
    const seen: string[] = [];
    for await (const { records } of loader.epoch(0)) {
      const samples = records.map((r) => preferenceSamples(r));
      const chosen = await processor.process(samples.map((s) => s.chosen));
      const rejected = await processor.process(samples.map((s) => s.rejected));
      expect(rejected.tilesPerImage).toEqual(chosen.tilesPerImage);
      const packed = packPairs(processor, chosen, rejected);
      const expected = records.map(({ record }) =>
        record.images.map((path) => {
          const [width, height] = IMAGES[(path as string).split('/').at(-1)!]!;
          return expectedTiles(width, height, record.maxTiles!);
        }),
      );
      const total = expected.flat().reduce((a, b) => a + b, 0);
      expect(packed.tilesPerImage).toEqual(expected.flat());
      expect(packed.pixelValues!.shape).toEqual([total, 3, TILE, TILE]);
      expect(packed.imageFlags!.shape).toEqual([total, 1]);
      expect(packed.imageFlags!.sum().item()).toBe(total);
      expect(contextBlocks(packed.inputIds, processor)).toEqual(expected.map((e) => e.map((t) => t * TOKENS_PER_TILE)));
      seen.push(...expected.map((e) => e.join('+') || 'text'));
    }
    // 4:1 under 3 → (3,1) + thumbnail; 3:2 small under 3 → 1; 3:2 under 6 → (3,2) + thumbnail; 4:1 under 4 → (4,1) + thumbnail.
    expect(seen.sort()).toEqual(['4+1', '5', '7', 'text']);
  });

  it('a text-only row has no pixel values, flags or image tokens', async () => {
    const text = (await Promise.all([0, 1, 2, 3].map((i) => dataset.get(i)))).find((r) => r!.images.length === 0)!;
    const { chosen } = preferenceSamples({ index: 0, record: text, pixels: [] });
    expect(chosen.maxTiles).toBe(1);
    const batch = await processor.process(chosen);
    expect([batch.pixelValues, batch.imageFlags, batch.tilesPerImage]).toEqual([null, null, []]);
    expect((batch.inputIds.toArray() as number[][])[0]).not.toContain(processor.imageContext.id);
  });

  it("without a sample budget the processor's rule applies; a bad budget names the sample", async () => {
    const [width, height] = IMAGES['wide.png']!;
    const wide = { width, height, data: new Uint8Array(width * height * 3) };
    const prompt = [{ role: 'user' as const, content: 'Image-1: <image>\nImage-2: <image>\nQ?' }];
    const own = await processor.process({ prompt, images: [wide, wide] });
    expect(own.tilesPerImage).toEqual([1, 1]); // the processor's maxNum 2 shared by 2 images
    const given = await processor.process({ prompt, images: [wide, wide], maxTiles: 3 });
    expect(given.tilesPerImage).toEqual([expectedTiles(width, height, 3), expectedTiles(width, height, 3)]);
    await expect(processor.process([{ prompt, images: [wide, wide], maxTiles: 0 }])).rejects.toThrow(
      /samples\[0\]\.maxTiles/,
    );
  });

  it('Qwen2-VL sizes images by pixels and ignores a tile budget', async () => {
    const qwen = (await fromPretrained(await realQwenDir())) as Qwen2VlProcessor;
    const image = { width: 56, height: 28, data: new Uint8Array(56 * 28 * 3).fill(9) };
    const prompt = [
      { role: 'user' as const, content: [{ type: 'image' as const }, { type: 'text' as const, text: 'q' }] },
    ];
    const plain = await qwen.process({ prompt, images: [image] });
    const budgeted = await qwen.process({ prompt, images: [image], maxTiles: 1 });
    expect(budgeted.imageGridThw!.toArray()).toEqual(plain.imageGridThw!.toArray());
    expect(budgeted.inputIds.toArray()).toEqual(plain.inputIds.toArray());
  });

  it("a recipe's processor max_dynamic_patch is the InternVL datasets' default, as InternVL's one flag", () => {
    const processor = { maxDynamicPatch: 2 };
    expect(withTileDefault({ format: 'mmpr', path: 'm.json' }, processor)).toEqual({
      format: 'mmpr',
      path: 'm.json',
      maxDynamicPatch: 2,
    });
    expect(withTileDefault({ format: 'internvl_sft', path: 'a', skip_bad_rows: true }, processor)).toMatchObject({
      max_dynamic_patch: 2,
    });
    const own = { format: 'mmpr', path: 'm.json', max_dynamic_patch: 6 };
    expect(withTileDefault(own, processor)).toBe(own);
    const trl = { format: 'trl', path: 'd' };
    expect(withTileDefault(trl, processor)).toBe(trl);
    expect(withTileDefault({ format: 'mmpr', path: 'm.json' }, {})).toEqual({ format: 'mmpr', path: 'm.json' });
  });
});
