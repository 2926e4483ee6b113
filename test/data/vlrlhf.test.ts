// VL-RLHF plain_dpo / vlquery_json and InternVL SFT jsonl: hand-written rows in each format, the
// image placement each project's code uses, bad rows named, paths outside image_root refused.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openInternVlSft, openPlainDpo, openVlQuery } from '../../lib/data/vlrlhf.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-vlrlhf-'));
const imageRoot = join(root, 'images');
mkdirSync(imageRoot);
for (const name of ['a.jpg', 'b.jpg']) writeFileSync(join(imageRoot, name), 'x');
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('plain_dpo', () => {
  it('reads a JSON list, the image leading the user turn', async () => {
    const file = join(root, 'dpo.json');
    writeFileSync(
      file,
      JSON.stringify([
        { image: 'a.jpg', prompt: 'What is it?', chosen: 'A cat.', rejected: 'A dog.' },
        { prompt: 'Text only', chosen: 'c', rejected: 'r' },
        { image: '../dpo.json', prompt: 'p', chosen: 'c', rejected: 'r' },
        { image: 'a.jpg', prompt: 'p', chosen: 'c' },
      ]),
    );
    const data = await openPlainDpo(file, { imageRoot });
    expect(data.length).toBe(4);
    expect(await data.get(0)).toEqual({
      kind: 'preference',
      id: 'dpo.json:0',
      prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is it?' }] }],
      chosen: [{ role: 'assistant', content: 'A cat.' }],
      rejected: [{ role: 'assistant', content: 'A dog.' }],
      images: [join(imageRoot, 'a.jpg')],
      source: { file, row: 0 },
    });
    expect((await data.get(1))?.images).toEqual([]);
    await expect(data.get(2)).rejects.toThrow(`${file} row 2: image "../dpo.json" escapes the image root`);
    await expect(data.get(3)).rejects.toThrow(`${file} row 3: missing or non-string "rejected"`);
  });
});

describe('vlquery_json', () => {
  it('maps user/assistant turns, the image leading the first user turn', async () => {
    const file = join(root, 'sft.json');
    writeFileSync(
      file,
      JSON.stringify([
        {
          image: 'b.jpg',
          conversations: [
            { from: 'user', value: 'Describe.' },
            { from: 'assistant', value: 'Blue.' },
          ],
        },
        { image: 'b.jpg', conversations: [{ from: 'human', value: 'Describe.' }] },
      ]),
    );
    const data = await openVlQuery(file, { imageRoot, skipBadRows: true });
    expect((await data.get(0))?.messages).toEqual([
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe.' }] },
      { role: 'assistant', content: 'Blue.' },
    ]);
    expect(await data.get(1)).toBeUndefined();
    expect(data.badRows).toEqual({
      count: 1,
      examples: [`${file} row 1: conversations[0].from must be one of user, assistant`],
    });
  });
});

describe('InternVL SFT jsonl', () => {
  it('prepends <image> when absent, checks counts for several images, budgets tiles', async () => {
    const file = join(root, 'internvl.jsonl');
    writeFileSync(
      file,
      [
        {
          image: 'a.jpg',
          conversations: [
            { from: 'system', value: 'S' },
            { from: 'human', value: 'Q' },
            { from: 'gpt', value: 'A' },
          ],
        },
        {
          image: ['a.jpg', 'b.jpg'],
          conversations: [
            { from: 'human', value: 'Image-1: <image>\nImage-2: <image>\nQ' },
            { from: 'gpt', value: 'A' },
          ],
        },
        {
          image: ['a.jpg', 'b.jpg'],
          conversations: [
            { from: 'human', value: '<image>Q' },
            { from: 'gpt', value: 'A' },
          ],
        },
        {
          conversations: [
            { from: 'human', value: 'Q' },
            { from: 'gpt', value: 7 },
          ],
        },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n'),
    );
    const data = await openInternVlSft(file, { imageRoot, maxDynamicPatch: 6 });
    expect(await data.get(0)).toMatchObject({
      messages: [
        { role: 'system', content: 'S' },
        { role: 'user', content: '<image>\nQ' },
        { role: 'assistant', content: 'A' },
      ],
      maxTiles: 6,
      source: { file, line: 1 },
    });
    expect(await data.get(1)).toMatchObject({
      maxTiles: 3,
      images: [join(imageRoot, 'a.jpg'), join(imageRoot, 'b.jpg')],
    });
    await expect(data.get(2)).rejects.toThrow(`${file}:3: conversations have 1 <image> for 2 image(s)`);
    await expect(data.get(3)).rejects.toThrow(`${file}:4: conversations[1].value must be a string`);
  });
});
