// Images decoded ahead of the step: pixels equal the processor's own decode, the JPEG augmentation
// stays in quality [75, 100], is deterministic per seed and decodes to what sharp's JPEG at that
// quality gives, unreadable images are named by record, and the prefetcher keeps order and depth.
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeRecordImages, jpegReencode, prefetchDecoded } from '../../lib/data/images.js';
import { openMmpr } from '../../lib/data/mmpr.js';
import type { DataRecord, RecordDataset } from '../../lib/data/records.js';
import { SeededRandom } from '../../lib/data/rng.js';
import { loadImage } from '../../lib/processing/image/decode.js';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'images', 'img_140x140.png');
const root = mkdtempSync(join(tmpdir(), 'vlalign-images-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const record = (images: DataRecord['images'], augment = false): DataRecord => ({
  kind: 'sft',
  id: 'r',
  messages: [],
  images,
  augment,
  source: { file: 'data.jsonl', line: 7 },
});

describe('decodeRecordImages', () => {
  it('decodes paths and bytes as loadImage does', async () => {
    const expected = await loadImage(fixture);
    const [fromPath, fromBytes] = await decodeRecordImages(record([fixture, readFileSync(fixture)]));
    expect(fromPath).toEqual(expected);
    expect(fromBytes).toEqual(expected);
  });

  it('re-encodes as JPEG at a seeded quality in [75, 100]', async () => {
    const rgb = await loadImage(fixture);
    const qualities = [];
    for (let seed = 0; seed < 40; seed += 1) qualities.push((await jpegReencode(rgb, new SeededRandom(seed))).quality);
    expect(Math.min(...qualities)).toBeGreaterThanOrEqual(75);
    expect(Math.max(...qualities)).toBeLessThanOrEqual(100);
    expect(new Set(qualities).size).toBeGreaterThan(10);

    const { quality } = await jpegReencode(rgb, new SeededRandom(3));
    const [augmented] = await decodeRecordImages(record([fixture], true), new SeededRandom(3));
    // Independent path: sharp straight from the file (alpha dropped as Pillow's convert('RGB') does).
    expect(augmented).toEqual(await loadImage(await sharp(fixture).removeAlpha().jpeg({ quality }).toBuffer()));
    expect(augmented?.data).not.toEqual(rgb.data);
    expect(await decodeRecordImages(record([fixture], true))).toEqual([rgb]); // no random: no augmentation
  });

  it('names the record of an unreadable image', async () => {
    const broken = join(root, 'broken.png');
    writeFileSync(broken, 'not an image');
    await expect(decodeRecordImages(record([broken]))).rejects.toThrow(
      `data.jsonl:7: image 0 (${broken}) is unreadable`,
    );
  });
});

describe('prefetchDecoded', () => {
  it('yields in order with at most depth reads in flight, skipping and counting bad rows', async () => {
    const folder = join(root, 'mmpr');
    mkdirSync(join(folder, 'images'), { recursive: true });
    writeFileSync(join(folder, 'images', 'ok.png'), readFileSync(fixture));
    writeFileSync(join(folder, 'images', 'bad.png'), 'garbage');
    const rows = Array.from({ length: 12 }, (_, i) => ({
      image: i === 5 ? 'bad.png' : 'ok.png',
      question: `q${i}`,
      chosen: 'c',
      rejected: 'r',
    }));
    rows[8] = { ...rows[8], chosen: undefined } as never;
    writeFileSync(join(folder, 'ann.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
    writeFileSync(
      join(folder, 'meta.json'),
      JSON.stringify({ d: { root: 'images', annotation: 'ann.jsonl', repeat_time: 1 } }),
    );
    const dataset = await openMmpr(join(folder, 'meta.json'), { skipBadRows: true });
    let inFlight = 0;
    let peak = 0;
    const counted: RecordDataset = {
      ...dataset,
      length: dataset.length,
      badRows: dataset.badRows,
      skipBadRows: true,
      get: async (i) => {
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        try {
          return await dataset.get(i);
        } finally {
          inFlight -= 1;
        }
      },
    };
    const order = [...Array(12).keys()].reverse();
    const lines = (await Promise.all(order.map((i) => dataset.get(i)))).map((r) => r?.source.line);
    expect(dataset.badRows.count).toBe(1); // line 9; line 6's image is only found bad when decoded
    const seen = [];
    for await (const item of prefetchDecoded(counted, order, { depth: 3 })) seen.push(item);
    expect(peak).toBeLessThanOrEqual(3);
    expect(peak).toBeGreaterThan(1);
    expect(seen.map((s) => s.record.source.line)).toEqual(
      lines.filter((line) => line !== 6 && line !== 9 && line !== undefined),
    );
    expect(seen.every((s) => s.pixels[0]?.width === 140)).toBe(true);
    // Line 9 was read twice (above and here): a bad row counts once, so lines 6 and 9.
    expect(dataset.badRows.count).toBe(2);
    expect(dataset.badRows.examples.some((m) => m.includes('ann.jsonl:6: image 0') && m.includes('unreadable'))).toBe(
      true,
    );
    expect(dataset.badRows.examples.some((m) => m.includes('ann.jsonl:9: missing or non-string "chosen"'))).toBe(true);
  });
});
