// DataLoader: full batches refilled past bad rows (counted), DataError naming file:line without
// skipping, exact resume (full run vs stop after k batches + restore), augmentation identical across
// resume, prefetch bounded (concurrent dataset.get calls counted through a wrapping dataset).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataLoader, type LoadedBatch } from '../../lib/data/loader.js';
import { BadRowPolicy, DataError, type RecordDataset, type SftRecord } from '../../lib/data/records.js';
import { EpochSampler } from '../../lib/data/sampler.js';
import { openTrl } from '../../lib/data/trl.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-loader-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const png = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'images', 'img_140x140.png'));

/** A TRL SFT jsonl of n rows; `bad` lines (1-based) are malformed JSON. */
function writeSft(name: string, n: number, bad: number[] = []): string {
  const file = join(root, name);
  const line = (i: number) =>
    bad.includes(i + 1) ? '{"messages": [' : JSON.stringify({ messages: [{ role: 'user', content: `q${i}` }] });
  writeFileSync(file, Array.from({ length: n }, (_, i) => line(i)).join('\n'));
  return file;
}

async function collect<T extends SftRecord>(batches: AsyncGenerator<LoadedBatch<T>>, stopAfter = Infinity) {
  const out: LoadedBatch<T>[] = [];
  for await (const batch of batches) {
    out.push(batch);
    if (out.length === stopAfter) break;
  }
  return out;
}
const ids = (batches: LoadedBatch<SftRecord>[]) => batches.map((b) => b.records.map((r) => r.record.id));

describe('DataLoader', () => {
  it('yields the sampler order in full batches; dropLast drops the short one', async () => {
    const data = (await openTrl(writeSft('plain.jsonl', 23))) as RecordDataset<SftRecord>;
    const loader = new DataLoader(data, { batchSize: 4, seed: 5 });
    expect(loader.batchesPerEpoch).toBe(6);
    const batches = await collect(loader.epoch(1));
    expect(batches.map((b) => b.records.length)).toEqual([4, 4, 4, 4, 4, 3]);
    const sampler = new EpochSampler(23, { seed: 5 });
    sampler.startEpoch(1);
    const order = Array.from({ length: 23 }, () => sampler.next()?.index);
    expect(batches.flatMap((b) => b.records.map((r) => r.index))).toEqual(order);
    expect(batches.map((b) => b.position.index)).toEqual([4, 8, 12, 16, 20, 23]);
    const dropping = new DataLoader(data, { batchSize: 4, seed: 5, dropLast: true });
    expect(dropping.batchesPerEpoch).toBe(5);
    expect((await collect(dropping.epoch(1))).map((b) => b.records.length)).toEqual([4, 4, 4, 4, 4]);
  });

  it('skips and counts bad rows, refilling batches; without skipping names file:line', async () => {
    const file = writeSft('bad.jsonl', 20, [3, 7, 8]);
    const lenient = (await openTrl(file, { skipBadRows: true })) as RecordDataset<SftRecord>;
    const batches = await collect(new DataLoader(lenient, { batchSize: 4, seed: 2 }).epoch(0));
    expect(batches.map((b) => b.records.length)).toEqual([4, 4, 4, 4, 1]);
    expect(lenient.badRows.count).toBe(3);
    const lines = batches.flatMap((b) => b.records.map((r) => r.record.source.line));
    expect(new Set(lines)).toEqual(
      new Set([...Array(20).keys()].map((i) => i + 1).filter((l) => ![3, 7, 8].includes(l))),
    );
    const strict = (await openTrl(file)) as RecordDataset<SftRecord>;
    const error = await collect(new DataLoader(strict, { batchSize: 4, seed: 2 }).epoch(0)).catch((e: Error) => e);
    expect(error).toBeInstanceOf(DataError);
    expect((error as Error).message).toMatch(new RegExp(`^${file}:(3|7|8): malformed JSON line`));
  });

  it('resumes exactly from any batch and from the epoch end', async () => {
    const data = (await openTrl(writeSft('resume.jsonl', 30, [5, 11]), {
      skipBadRows: true,
    })) as RecordDataset<SftRecord>;
    const options = { batchSize: 4, seed: 9, prefetch: 3 };
    const full = await collect(new DataLoader(data, options).epoch(2));
    for (const k of [1, 3, full.length - 1, full.length]) {
      const head = await collect(new DataLoader(data, options).epoch(2), k);
      const saved = JSON.parse(JSON.stringify(head.at(-1)?.position));
      const rest = await collect(new DataLoader(data, options).epoch(2, saved));
      expect(ids([...head, ...rest])).toEqual(ids(full));
    }
    const next = await collect(new DataLoader(data, options).epoch(3));
    expect(ids(next)).not.toEqual(ids(full));
    await expect(collect(new DataLoader(data, options).epoch(3, full.at(-1)!.position))).rejects.toThrow(
      /position in epoch 3 but received epoch 2/,
    );
  });

  it('draws the same JPEG qualities in a resumed run', async () => {
    const records: SftRecord[] = Array.from({ length: 6 }, (_, i) => ({
      kind: 'sft',
      id: `r${i}`,
      messages: [],
      images: [png],
      augment: true,
      source: { file: 'mem.jsonl', line: i + 1 },
    }));
    const policy = new BadRowPolicy(false);
    const data: RecordDataset<SftRecord> = {
      length: 6,
      get: async (i) => records[i],
      badRows: policy.report,
      skipBadRows: false,
    };
    const options = { batchSize: 2, seed: 1, augmentSeed: 4 };
    const pixels = (batches: LoadedBatch<SftRecord>[]) => batches.flatMap((b) => b.records.map((r) => r.pixels[0]));
    const full = await collect(new DataLoader(data, options).epoch(0));
    const head = await collect(new DataLoader(data, options).epoch(0), 1);
    const rest = await collect(new DataLoader(data, options).epoch(0, head[0]!.position));
    expect(pixels([...head, ...rest])).toEqual(pixels(full));
    const plain = await collect(new DataLoader(data, { ...options, batchSize: 6 }).epoch(0));
    expect(plain[0]!.records.map((r) => r.index)).toEqual(full.flatMap((b) => b.records.map((r) => r.index)));
    // Augmented: not the PNG's pixels; another epoch re-draws some qualities.
    const unaugmented = { ...records[0]!, augment: false };
    const raw = await collect(
      new DataLoader({ ...data, get: async () => unaugmented }, { batchSize: 1, seed: 1 }).epoch(0),
      1,
    );
    expect(
      pixels(full).some(
        (p) => Buffer.compare(Buffer.from(p!.data), Buffer.from(raw[0]!.records[0]!.pixels[0]!.data)) !== 0,
      ),
    ).toBe(true);
    const byIndex = (batches: LoadedBatch<SftRecord>[]) =>
      new Map(batches.flatMap((b) => b.records.map((r) => [r.index, r.pixels[0]!.data] as const)));
    const e0 = byIndex(full);
    const e1 = byIndex(await collect(new DataLoader(data, options).epoch(1)));
    expect([...e0.keys()].some((i) => Buffer.compare(Buffer.from(e0.get(i)!), Buffer.from(e1.get(i)!)) !== 0)).toBe(
      true,
    );
  });

  it('keeps at most `prefetch` reads in flight while the consumer works', async () => {
    const inner = (await openTrl(writeSft('bounded.jsonl', 40))) as RecordDataset<SftRecord>;
    let inFlight = 0;
    let peak = 0;
    const counted: RecordDataset<SftRecord> = {
      length: inner.length,
      badRows: inner.badRows,
      skipBadRows: false,
      get: async (i) => {
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        try {
          await new Promise((r) => setTimeout(r, 1 + (i % 3)));
          return await inner.get(i);
        } finally {
          inFlight -= 1;
        }
      },
    };
    let seen = 0;
    for await (const batch of new DataLoader(counted, { batchSize: 3, seed: 0, prefetch: 5 }).epoch(0)) {
      seen += batch.records.length;
      await new Promise((r) => setTimeout(r, 5)); // the model's step: reads continue meanwhile
    }
    expect(seen).toBe(40);
    expect(peak).toBe(5);
  });

  it('gives each rank its DistributedSampler share', async () => {
    const data = (await openTrl(writeSft('ranks.jsonl', 9))) as RecordDataset<SftRecord>;
    const perRank = await Promise.all(
      [0, 1].map(async (rank) =>
        ids(await collect(new DataLoader(data, { batchSize: 2, seed: 3, rank, worldSize: 2 }).epoch(0))).flat(),
      ),
    );
    expect(perRank.map((r) => r.length)).toEqual([5, 5]);
    expect(new Set(perRank.flat()).size).toBe(9);
  });
});
