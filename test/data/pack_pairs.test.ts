// packPairs on hand-built processor batches: the packed ids, segments, positions, the gather index
// and targets of the 2P virtual rows written out by hand, both padding sides, maxLength (keep_start)
// and the errors (prompt mismatch, prompt too long, image placeholder in a completion, other images).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processing, tiny, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { packPairs, SEGMENT } from '../../lib/data/pack_pairs.js';

const IGNORE = -100;
const PAD = 481; // the tiny tokenizer's <|endoftext|>
const IMAGE_PAD = 493; // <|image_pad|>
const root = mkdtempSync(join(tmpdir(), 'vlalign-pack-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ids = (values: number[][]): Tensor => torch.tensor(values, { dtype: 'int64' });
const rows = (t: Tensor): number[][] => t.toArray() as number[][];
const { padding: _, prompt: S, chosen: C, rejected: R } = SEGMENT;

// Pair 0: prompt [10, IMAGE_PAD] (an image of 4 patches), chosen [11, 12], rejected [13, 14, 15].
// Pair 1: prompt [20], chosen [21, 22, 23], rejected [24]. Right-padded, as the processor pads.
const chosen = () => ({
  inputIds: ids([
    [10, IMAGE_PAD, 11, 12],
    [20, 21, 22, 23],
  ]),
  attentionMask: ids([
    [1, 1, 1, 1],
    [1, 1, 1, 1],
  ]),
  labels: ids([
    [IGNORE, IGNORE, 11, 12],
    [IGNORE, 21, 22, 23],
  ]),
  pixelValues: torch.tensor([
    [1, 1],
    [2, 2],
    [3, 3],
    [4, 4],
  ]),
  imageGridThw: ids([[1, 2, 2]]),
});
const rejected = () => ({
  inputIds: ids([
    [10, IMAGE_PAD, 13, 14, 15],
    [20, 24, PAD, PAD, PAD],
  ]),
  attentionMask: ids([
    [1, 1, 1, 1, 1],
    [1, 1, 0, 0, 0],
  ]),
  labels: ids([
    [IGNORE, IGNORE, 13, 14, 15],
    [IGNORE, 24, IGNORE, IGNORE, IGNORE],
  ]),
  pixelValues: torch.tensor([
    [1, 1],
    [2, 2],
    [3, 3],
    [4, 4],
  ]),
  imageGridThw: ids([[1, 2, 2]]),
});

describe('packPairs', () => {
  let right: processing.Processor;
  let left: processing.Processor;
  beforeAll(async () => {
    const dir = join(root, 'tokenizer-only');
    await tiny.writeTinyTokenizer(dir, 'qwen2_vl');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen2_vl' }));
    right = await processing.fromPretrained(dir, { paddingSide: 'right' });
    left = await processing.fromPretrained(dir, { paddingSide: 'left' });
  });

  it('packs prompt, chosen, rejected per pair, with segments, restarting positions, gather index and targets', () => {
    const p = packPairs(right, chosen(), rejected());
    expect(p.pairs).toBe(2);
    expect(rows(p.inputIds)).toEqual([
      [10, IMAGE_PAD, 11, 12, 13, 14, 15],
      [20, 21, 22, 23, 24, PAD, PAD],
    ]);
    expect(rows(p.attentionMask)).toEqual([
      [1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 0, 0],
    ]);
    expect(rows(p.segments)).toEqual([
      [S, S, C, C, R, R, R],
      [S, C, C, C, R, 0, 0],
    ]);
    expect(rows(p.positionIds)).toEqual([
      [0, 1, 2, 3, 2, 3, 4],
      [0, 1, 2, 3, 1, 1, 1],
    ]);
    expect([p.promptLength, p.chosenLength, p.rejectedLength, p.offset]).toEqual([
      [2, 1],
      [2, 3],
      [3, 1],
      [0, 0],
    ]);
    // W = 3 (the longest completion). Flat index = pair * 7 + token; column 0 = the last prompt
    // token; unused columns repeat it (their targets are ignored).
    expect(p.gatherIndex.toArray()).toEqual([
      ...[1, 2, 1], // pair 0 chosen: last prompt token, chosen token 0; (pad)
      ...[7, 8, 9], // pair 1 chosen: last prompt token, chosen 0, chosen 1
      ...[1, 4, 5], // pair 0 rejected: last prompt token, rejected 0, rejected 1
      ...[7, 7, 7], // pair 1 rejected: last prompt token; (pad, pad)
    ]);
    expect(rows(p.targets)).toEqual([
      [11, 12, IGNORE],
      [21, 22, 23],
      [13, 14, 15],
      [24, IGNORE, IGNORE],
    ]);
    expect(p.pixelValues!.toArray()).toEqual(chosen().pixelValues.toArray());
    expect(rows(p.imageGridThw!)).toEqual([[1, 2, 2]]);
    expect([p.imageFlags, p.tilesPerImage]).toEqual([null, []]);
  });

  it("pads on the processor's side (left: offsets shift every index) and uses ignoreIndex", () => {
    const p = packPairs(left, chosen(), rejected(), { ignoreIndex: -1 });
    expect(rows(p.inputIds)[1]).toEqual([PAD, PAD, 20, 21, 22, 23, 24]);
    expect(rows(p.positionIds)[1]).toEqual([1, 1, 0, 1, 2, 3, 1]);
    expect(p.offset).toEqual([0, 2]);
    expect((p.gatherIndex.toArray() as number[]).slice(3, 6)).toEqual([9, 10, 11]);
    expect(rows(p.targets)[3]).toEqual([24, -1, -1]);
  });

  it('maxLength cuts completions (keep_start), never the prompt', () => {
    const p = packPairs(right, chosen(), rejected(), { maxLength: 3 });
    expect([p.promptLength, p.chosenLength, p.rejectedLength]).toEqual([
      [2, 1],
      [1, 2],
      [1, 1],
    ]);
    expect(rows(p.inputIds)).toEqual([
      [10, IMAGE_PAD, 11, 13],
      [20, 21, 22, 24],
    ]);
    expect(rows(p.targets)).toEqual([
      [11, IGNORE],
      [21, 22],
      [13, IGNORE],
      [24, IGNORE],
    ]);
    expect(() => packPairs(right, chosen(), rejected(), { maxLength: 2 })).toThrow(
      /pair 0: the prompt has 2 tokens, maxLength is 2/,
    );
    expect(() => packPairs(right, chosen(), rejected(), { maxLength: 0 })).toThrow(/maxLength/);
  });

  it('names the pair whose prompts differ, the completion holding an image token, other images', () => {
    const other = rejected();
    other.inputIds = ids([
      [10, IMAGE_PAD, 13, 14, 15],
      [29, 24, PAD, PAD, PAD],
    ]);
    expect(() => packPairs(right, chosen(), other)).toThrow(
      /pair 1: the chosen and rejected prompts differ .*chosen 20, rejected 29/,
    );
    const longer = rejected();
    longer.labels = ids([
      [IGNORE, IGNORE, IGNORE, 14, 15],
      [IGNORE, 24, IGNORE, IGNORE, IGNORE],
    ]);
    expect(() => packPairs(right, chosen(), longer)).toThrow(
      /pair 0: the chosen and rejected prompts differ \(2 and 3 tokens/,
    );
    const image = chosen();
    image.inputIds = ids([
      [10, IMAGE_PAD, 11, IMAGE_PAD],
      [20, 21, 22, 23],
    ]);
    expect(() => packPairs(right, image, rejected())).toThrow(
      /pair 0: chosen completion token 1 is the image placeholder/,
    );
    const pixels = rejected();
    pixels.pixelValues = pixels.pixelValues.add(1);
    expect(() => packPairs(right, chosen(), pixels)).toThrow(/different images/);
    const few = { ...rejected(), inputIds: ids([[10]]), attentionMask: ids([[1]]), labels: ids([[IGNORE]]) };
    expect(() => packPairs(right, chosen(), few)).toThrow(/chosen has 2 rows, rejected 1/);
    const none = rejected();
    none.labels = ids([
      [IGNORE, IGNORE, IGNORE, IGNORE, IGNORE],
      [IGNORE, 24, IGNORE, IGNORE, IGNORE],
    ]);
    expect(() => packPairs(right, chosen(), none)).toThrow(/pair 0: the rejected row has no labelled token/);
  });
});
