// MMPR / InternVL meta.json + jsonl: InternVL's repeat_time rules (counts, repeats, per-seed
// determinism), `<image>` placement and the multi-image tile budget written as hand cases, bad
// rows named by file:line, the skip option's count, and image paths that escape the root refused.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openMmpr, repeatedOrder } from '../../lib/data/mmpr.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-mmpr-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const counts = (order: Uint32Array, rows: number): number[] => {
  const c = new Array<number>(rows).fill(0);
  for (const r of order) c[r] = (c[r] as number) + 1;
  return c;
};

describe('repeat_time', () => {
  it('below 1 samples int(n * r) distinct rows', () => {
    const order = repeatedOrder(10, 0.55, 0);
    expect(order.length).toBe(5);
    expect(new Set(order).size).toBe(5);
    expect([...order].every((r) => r < 10)).toBe(true);
  });

  it('above 1 repeats every row int(r) times (2.5 -> 2)', () => {
    const order = repeatedOrder(7, 2.5, 3);
    expect(order.length).toBe(14);
    expect(counts(order, 7)).toEqual([2, 2, 2, 2, 2, 2, 2]);
  });

  it('1 is a shuffled permutation, the same for the same seed and different for another', () => {
    const a = repeatedOrder(50, 1, 1);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(repeatedOrder(50, 1, 1)).toEqual(a);
    expect(repeatedOrder(50, 1, 2)).not.toEqual(a);
    expect(a).not.toEqual(Uint32Array.from(Array(50).keys()));
  });
});

function writeDataset(name: string, lines: string[], meta: Record<string, unknown>): string {
  const folder = join(root, name);
  mkdirSync(join(folder, 'images'), { recursive: true });
  for (const image of ['a.jpg', 'b.jpg', 'c.jpg']) writeFileSync(join(folder, 'images', image), 'x');
  writeFileSync(join(folder, 'ann.jsonl'), lines.join('\n'));
  const metaFile = join(folder, 'meta.json');
  writeFileSync(
    metaFile,
    JSON.stringify({ [name]: { root: 'images', annotation: 'ann.jsonl', repeat_time: 1, ...meta } }),
  );
  return metaFile;
}

const row = (extra: Record<string, unknown>) =>
  JSON.stringify({ question: 'Q?', chosen: 'yes', rejected: 'no', ...extra });

describe('openMmpr', () => {
  it('places <image>, resolves images inside the root and budgets tiles per image', async () => {
    const meta = writeDataset(
      'rules',
      [
        row({}),
        row({ image: 'a.jpg' }),
        row({ image: 'b.jpg', question: 'Look: <image>\nQ?' }),
        '',
        row({
          image: ['a.jpg', 'b.jpg', 'c.jpg'],
          question: 'Image-1: <image>\nImage-2: <image>\nImage-3: <image>\nQ?',
        }),
        row({ image: '', extra: 1 }),
      ],
      { max_dynamic_patch: 8, data_augment: true },
    );
    const data = await openMmpr(meta);
    expect(data.length).toBe(5);
    const records = await Promise.all([...Array(5).keys()].map((i) => data.get(i)));
    const byLine = new Map(records.map((r) => [r?.source.line, r]));
    expect([...byLine.keys()].sort()).toEqual([1, 2, 3, 5, 6]);
    expect(byLine.get(1)).toMatchObject({ prompt: [{ role: 'user', content: 'Q?' }], images: [], maxTiles: 1 });
    expect(byLine.get(2)).toMatchObject({ prompt: [{ content: '<image>\nQ?' }], maxTiles: 8, augment: true });
    expect(byLine.get(2)?.images).toEqual([join(root, 'rules', 'images', 'a.jpg')]);
    expect(byLine.get(2)).toMatchObject({
      chosen: [{ role: 'assistant', content: 'yes' }],
      rejected: [{ content: 'no' }],
    });
    expect(byLine.get(3)?.prompt).toEqual([{ role: 'user', content: 'Look: <image>\nQ?' }]);
    expect(byLine.get(5)).toMatchObject({ maxTiles: 2 }); // max(1, 8 // 3)
    expect(byLine.get(5)?.images).toHaveLength(3);
    expect(byLine.get(6)?.images).toEqual([]);
  });

  it('the CLI max_dynamic_patch applies without a per-dataset one; 13 images get 1 tile each', async () => {
    const images = Array(13).fill('a.jpg');
    const question = `${'<image>'.repeat(13)}Q?`;
    const meta = writeDataset(
      'budget',
      [row({ image: ['a.jpg', 'b.jpg'], question: '<image><image>' }), row({ image: images, question })],
      {},
    );
    const data = await openMmpr(meta, { maxDynamicPatch: 12 });
    const tiles = (await Promise.all([data.get(0), data.get(1)])).map((r) => [r?.images.length, r?.maxTiles]);
    expect(tiles.sort()).toEqual([
      [13, 1],
      [2, 6],
    ]);
  });

  it('concatenates datasets with repeat_time and numbers them per dataset', async () => {
    const metaFile = writeDataset('concat', [row({}), row({}), row({}), row({})], { repeat_time: 0.5 });
    writeFileSync(
      join(root, 'concat', 'meta.json'),
      JSON.stringify({
        half: { root: 'images', annotation: 'ann.jsonl', repeat_time: 0.5 },
        triple: { root: 'images', annotation: 'ann.jsonl', repeat_time: 3 },
      }),
    );
    const data = await openMmpr(metaFile);
    expect(data.length).toBe(2 + 12);
    const ids = await Promise.all([...Array(14).keys()].map(async (i) => (await data.get(i))?.id));
    expect(ids.slice(0, 2).every((id) => id?.startsWith('half:'))).toBe(true);
    expect(ids.slice(2).every((id) => id?.startsWith('triple:'))).toBe(true);
    expect(() => data.get(14)).toThrow(/out of range/);
  });

  it('names the file and line of bad rows, and counts them when skipping', async () => {
    const meta = writeDataset(
      'bad',
      [
        row({}),
        '{"question": "Q?", "chosen": "yes"',
        row({ rejected: 3 }),
        row({ image: 'missing.jpg' }),
        row({ image: ['a.jpg', 'b.jpg'], question: 'one <image> only' }),
        '[1, 2]',
      ],
      {},
    );
    const annotation = join(root, 'bad', 'ann.jsonl');
    const strict = await openMmpr(meta, { seed: 5 });
    const errors: string[] = [];
    for (let i = 0; i < strict.length; i += 1) await strict.get(i).catch((e: Error) => errors.push(e.message));
    expect(errors.sort()).toEqual([
      expect.stringMatching(new RegExp(`^${annotation}:2: malformed JSON line`)),
      `${annotation}:3: missing or non-string "rejected"`,
      expect.stringMatching(new RegExp(`^${annotation}:4: image "missing.jpg" not found`)),
      `${annotation}:5: question has 1 <image> for 2 image(s)`,
      `${annotation}:6: expected a JSON object`,
    ]);
    const lenient = await openMmpr(meta, { skipBadRows: true });
    const kept = [];
    for (let i = 0; i < lenient.length; i += 1) kept.push(await lenient.get(i));
    expect(kept.filter((r) => r !== undefined)).toHaveLength(1);
    expect(lenient.badRows.count).toBe(5);
    expect(lenient.badRows.examples).toHaveLength(5);
  });

  it('refuses image paths that escape the root: .., absolute, symlink out', async () => {
    writeFileSync(join(root, 'secret.jpg'), 'x');
    const meta = writeDataset(
      'escape',
      [
        row({ image: '../../secret.jpg' }),
        row({ image: join(root, 'secret.jpg') }),
        row({ image: 'link.jpg' }),
        row({ image: 'images/../a.jpg' }),
      ],
      {},
    );
    symlinkSync(join(root, 'secret.jpg'), join(root, 'escape', 'images', 'link.jpg'));
    const data = await openMmpr(meta);
    const results = await Promise.all(
      [...Array(4).keys()].map((i) =>
        data.get(i).then(
          (r) => r?.images[0],
          (e: Error) => e.message,
        ),
      ),
    );
    const messages = results.filter((r) => typeof r === 'string' && r.includes('ann.jsonl:')).sort();
    expect(messages).toEqual([
      expect.stringMatching(/ann\.jsonl:1: image "\.\.\/\.\.\/secret\.jpg" escapes the image root/),
      expect.stringMatching(/ann\.jsonl:2: image path ".*secret\.jpg" is absolute/),
      expect.stringMatching(/ann\.jsonl:3: image "link\.jpg" escapes the image root/),
    ]);
    expect(results).toContain(join(root, 'escape', 'images', 'a.jpg'));
  });
});
