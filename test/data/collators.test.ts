// Collators: pairs and unpaired rows against hand-written tensors and against each sample processed
// alone (padded and shifted here on plain arrays), the model seeing each collated row as it sees
// the sample alone, and rollouts against generate(): the loss's log-probs of the collated
// completions equal the log-probs generate returned while sampling them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { data, generation, losses, models, processing, tiny, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { assistantTurn as answer, randomImage as image, userTurn as user } from '../processing/chats.js';

const IGNORE = -100;
const PAD = 481; // the tiny tokenizer's <|endoftext|>
const EOS = 483; // <|im_end|>

const root = mkdtempSync(join(tmpdir(), 'vlalign-collators-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ids = (values: number[][]): Tensor => torch.tensor(values, { dtype: 'int64' });
const rows = (t: Tensor): number[][] => t.toArray() as number[][];

// Three pairs: one image, text only, two images; the rejected answers have other lengths.
const PROMPTS: Array<[string, processing.image.RgbImage[]]> = [
  ['What is it?', [image(56, 56, 1)]],
  ['Say hello.', []],
  ['Compare the two pictures.', [image(56, 56, 2), image(84, 56, 3)]],
];
const CHOSEN = ['A test pattern.', 'Hello!', 'The first is square and the second is wide.'];
const REJECTED = ['A cat sitting on the table next to a red cup.', 'No.', 'They are the same.'];
const samples = (answers: string[]): processing.Sample[] =>
  PROMPTS.map(([q, images], i) => ({ prompt: user(q, images.length), completion: answer(answers[i]!), images }));

/** Plain-array padding of single-row batches to the longest, on `side`. */
function padRows(batches: processing.TokenBatch[], side: 'left' | 'right') {
  const unpadded = batches.map((b) => ({ ids: rows(b.inputIds)[0]!, labels: rows(b.labels)[0]! }));
  const width = Math.max(...unpadded.map((r) => r.ids.length));
  const pad = <T>(row: T[], fill: T): T[] => {
    const extra = Array<T>(width - row.length).fill(fill);
    return side === 'left' ? [...extra, ...row] : [...row, ...extra];
  };
  return {
    inputIds: unpadded.map((r) => pad(r.ids, PAD)),
    attentionMask: unpadded.map((r) =>
      pad(
        r.ids.map(() => 1),
        0,
      ),
    ),
    targets: unpadded.map((r) => pad([...r.labels.slice(1), IGNORE], IGNORE)),
  };
}

async function tinyFamily(family: tiny.TinyFamily) {
  const dir = join(root, family);
  await tiny.writeTinyCheckpoint(dir, family, { seed: 5 });
  const tiling = { maxNum: 1 }; // InternVL: one 448 tile per image keeps the tiny forward quick
  return {
    dir,
    model: await models.fromPretrained(dir),
    right: await processing.fromPretrained(dir, { paddingSide: 'right', tiling }),
    left: await processing.fromPretrained(dir, { paddingSide: 'left', tiling }),
  };
}

describe('collatePairs on hand-built batches', () => {
  let processor: processing.Processor;
  let leftProcessor: processing.Processor;
  beforeAll(async () => {
    const dir = join(root, 'tokenizer-only');
    await tiny.writeTinyTokenizer(dir, 'qwen2_vl');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen2_vl' }));
    processor = await processing.fromPretrained(dir, { paddingSide: 'right' });
    leftProcessor = await processing.fromPretrained(dir, { paddingSide: 'left' });
  });

  // chosen: 2 rows (right-padded to 4), rejected: 2 rows of 5 and 2 tokens; images in rows 0 and 2.
  const chosen = () => ({
    inputIds: ids([
      [10, 493, 11, 12],
      [20, 21, 22, PAD],
    ]),
    attentionMask: ids([
      [1, 1, 1, 1],
      [1, 1, 1, 0],
    ]),
    labels: ids([
      [IGNORE, IGNORE, 11, 12],
      [IGNORE, 21, 22, IGNORE],
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
      [10, 493, 13, 14, 15],
      [20, 23, PAD, PAD, PAD],
    ]),
    attentionMask: ids([
      [1, 1, 1, 1, 1],
      [1, 1, 0, 0, 0],
    ]),
    labels: ids([
      [IGNORE, IGNORE, 13, 14, 15],
      [IGNORE, 23, IGNORE, IGNORE, IGNORE],
    ]),
    pixelValues: torch.tensor([
      [5, 5],
      [6, 6],
      [7, 7],
      [8, 8],
    ]),
    imageGridThw: ids([[1, 2, 2]]),
  });

  it('stacks chosen then rejected rows, re-padded to the longest, with targets and images in row order', () => {
    const batch = data.collatePairs(processor, chosen(), rejected());
    expect(batch.pairs).toBe(2);
    expect(rows(batch.inputIds)).toEqual([
      [10, 493, 11, 12, PAD],
      [20, 21, 22, PAD, PAD],
      [10, 493, 13, 14, 15],
      [20, 23, PAD, PAD, PAD],
    ]);
    expect(rows(batch.attentionMask)).toEqual([
      [1, 1, 1, 1, 0],
      [1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1],
      [1, 1, 0, 0, 0],
    ]);
    expect(rows(batch.targets)).toEqual([
      [IGNORE, 11, 12, IGNORE, IGNORE],
      [21, 22, IGNORE, IGNORE, IGNORE],
      [IGNORE, 13, 14, 15, IGNORE],
      [23, IGNORE, IGNORE, IGNORE, IGNORE],
    ]);
    expect(batch.pixelValues!.toArray()).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
      [5, 5],
      [6, 6],
      [7, 7],
      [8, 8],
    ]);
    expect(rows(batch.imageGridThw!)).toEqual([
      [1, 2, 2],
      [1, 2, 2],
    ]);
    expect([batch.imageFlags, batch.tilesPerImage]).toEqual([null, []]);
  });

  it("pads on the processor's side, and a text-only side adds no images", () => {
    const text = { ...rejected(), pixelValues: null, imageGridThw: null };
    const batch = data.collatePairs(leftProcessor, chosen(), text, { ignoreIndex: -1 });
    expect(rows(batch.inputIds)).toEqual([
      [PAD, 10, 493, 11, 12],
      [PAD, PAD, 20, 21, 22],
      [10, 493, 13, 14, 15],
      [PAD, PAD, PAD, 20, 23],
    ]);
    expect(rows(batch.targets)[1]).toEqual([IGNORE, IGNORE, 21, 22, -1]);
    expect(rows(batch.imageGridThw!)).toEqual([[1, 2, 2]]);
    expect(batch.pixelValues!.shape).toEqual([4, 2]);
  });

  it('names what does not fit', () => {
    const row = ids([[1, 2, 3, 4, 5]]);
    const one = { ...rejected(), inputIds: row, attentionMask: ids([[1, 1, 1, 1, 1]]), labels: row };
    expect(() => data.collatePairs(processor, chosen(), one)).toThrow(/chosen has 2 rows, rejected 1/);
    const holes = {
      ...chosen(),
      attentionMask: ids([
        [1, 0, 1, 1],
        [1, 1, 1, 0],
      ]),
    };
    expect(() => data.collatePairs(processor, holes, rejected())).toThrow(/chosen row 0: attention_mask has padding/);
    const short = { ...rejected(), labels: ids([[1, 2]]) };
    expect(() => data.collatePairs(processor, chosen(), short)).toThrow(/rejected\.labels must be \[2, 5\]/);
    const internvl = { ...chosen(), imageFlags: null, tilesPerImage: [] };
    expect(() => data.collatePairs(processor, internvl, rejected())).toThrow(/chosen: expected a Qwen2-VL processor/);
  });

  it('collateUnpaired keeps the rows and their desirable flags', () => {
    const batch = data.collateUnpaired(processor, rejected(), [true, false]);
    expect(batch.desirable).toEqual([true, false]);
    expect(rows(batch.inputIds)).toEqual(rows(rejected().inputIds));
    expect(rows(batch.targets)).toEqual([
      [IGNORE, 13, 14, 15, IGNORE],
      [23, IGNORE, IGNORE, IGNORE, IGNORE],
    ]);
    expect(() => data.collateUnpaired(processor, rejected(), [true])).toThrow(/1 flags for 2 rows/);
    expect(() => data.collateUnpaired(processor, rejected(), [true, 1 as never])).toThrow(/desirable\[1\]/);
  });
});

describe.each(['qwen2_vl', 'internvl'] as const)('collatePairs with the %s processor and model', (family) => {
  let setup: Awaited<ReturnType<typeof tinyFamily>>;
  beforeAll(async () => {
    setup = await tinyFamily(family);
  });
  afterAll(() => setup.model.dispose());

  it.each(['right', 'left'] as const)('equals each sample processed alone, padded %s', async (side) => {
    const processor = side === 'right' ? setup.right : setup.left;
    const [chosen, rejected] = [await processor.process(samples(CHOSEN)), await processor.process(samples(REJECTED))];
    const batch = data.collatePairs(processor, chosen, rejected);
    const alone = await Promise.all([...samples(CHOSEN), ...samples(REJECTED)].map((s) => processor.process(s)));
    const expected = padRows(alone, side);
    expect(rows(batch.inputIds)).toEqual(expected.inputIds);
    expect(rows(batch.attentionMask)).toEqual(expected.attentionMask);
    expect(rows(batch.targets)).toEqual(expected.targets);
    const withImages = alone.filter((b) => b.pixelValues !== null);
    expect(withImages).toHaveLength(4); // rows 0, 2, 3, 5: one, two, one, two images
    expect(batch.pixelValues!.equal(torch.cat(withImages.map((b) => b.pixelValues!)))).toBe(true);
    if (family === 'internvl') {
      const tiles = withImages.flatMap((b) => (b as processing.InternVLBatch).tilesPerImage);
      expect(batch.tilesPerImage).toEqual(tiles);
      expect(batch.imageFlags!.toArray()).toEqual(Array(tiles.reduce((a, b) => a + b, 0)).fill([1]));
      expect(batch.imageGridThw).toBeNull();
    } else {
      const grids = withImages.flatMap((b) => rows((b as processing.Qwen2VlBatch).imageGridThw!));
      expect(rows(batch.imageGridThw!)).toEqual(grids);
      expect(batch.imageFlags).toBeNull();
    }
  });

  it('the model reads each collated row (with its images) as it reads the sample alone', async () => {
    const processor = setup.right;
    const [chosen, rejected] = [await processor.process(samples(CHOSEN)), await processor.process(samples(REJECTED))];
    const batch = data.collatePairs(processor, chosen, rejected);
    const hidden = torch.noGrad(() => setup.model.forward(batch, { logits: false }).hidden);
    const all = [...samples(CHOSEN), ...samples(REJECTED)];
    for (const [r, sample] of all.entries()) {
      const one = await processor.process(sample);
      const alone = torch.noGrad(() => setup.model.forward(one, { logits: false }).hidden).squeeze(0);
      const length = alone.shape[0]!;
      const diff = hidden.select(0, r).narrow(0, 0, length).sub(alone).abs().max().item() as number;
      expect(diff, `row ${r}`).toBeLessThan(1e-4);
    }
  }, 180_000);
});

describe('collateRollouts', () => {
  const prompt = () => ({
    inputIds: ids([
      [PAD, 5, 6],
      [7, 8, 9],
    ]),
    attentionMask: ids([
      [0, 1, 1],
      [1, 1, 1],
    ]),
  });

  it('appends completions after the left-padded prompts, targets on the positions that predict them', () => {
    const batch = data.collateRollouts(
      prompt(),
      [
        [10, EOS],
        [11, 12, 13],
      ],
      { padTokenId: PAD, stopTokenIds: [EOS] },
    );
    expect(batch.promptLength).toBe(3);
    expect(rows(batch.inputIds)).toEqual([
      [PAD, 5, 6, 10, EOS, PAD],
      [7, 8, 9, 11, 12, 13],
    ]);
    expect(rows(batch.attentionMask)).toEqual([
      [0, 1, 1, 1, 1, 0],
      [1, 1, 1, 1, 1, 1],
    ]);
    expect(rows(batch.targets)).toEqual([
      [IGNORE, IGNORE, 10, EOS, IGNORE, IGNORE],
      [IGNORE, IGNORE, 11, 12, 13, IGNORE],
    ]);
    expect(rows(batch.completionMask)).toEqual([
      [0, 0, 1, 1, 0, 0],
      [0, 0, 1, 1, 1, 0],
    ]);
    expect(batch.truncated).toEqual([false, true]);
    expect([batch.pixelValues, batch.imageGridThw, batch.imageFlags]).toEqual([null, null, null]);
  });

  it('maskTruncated drops the targets of completions cut at the length limit', () => {
    const options = { padTokenId: PAD, stopTokenIds: [EOS], maskTruncated: true, ignoreIndex: -1 };
    const batch = data.collateRollouts(
      prompt(),
      [
        [10, EOS],
        [11, 12, 13],
      ],
      options,
    );
    expect(rows(batch.targets)).toEqual([
      [-1, -1, 10, EOS, -1, -1],
      [-1, -1, -1, -1, -1, -1],
    ]);
    expect(rows(batch.completionMask)[1]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('names what does not fit', () => {
    const options = { padTokenId: PAD, stopTokenIds: [EOS] };
    expect(() => data.collateRollouts(prompt(), [[1]], options)).toThrow(/1 completions for 2 prompt rows/);
    expect(() => data.collateRollouts(prompt(), [[1], [2.5]], options)).toThrow(/completions\[1\]\[0\]/);
    const right = {
      inputIds: prompt().inputIds,
      attentionMask: ids([
        [1, 1, 0],
        [1, 1, 1],
      ]),
    };
    expect(() => data.collateRollouts(right, [[1], [2]], options)).toThrow(/prompt row 0 ends with padding/);
    expect(() => data.collateRollouts(prompt(), [[1], [2]], { ...options, padTokenId: -1 })).toThrow(/padTokenId/);
  });
});

describe.each(['qwen2_vl', 'internvl'] as const)('collateRollouts of %s generations', (family) => {
  let setup: Awaited<ReturnType<typeof tinyFamily>>;
  beforeAll(async () => {
    setup = await tinyFamily(family);
  });
  afterAll(() => setup.model.dispose());

  it("the loss's log-probs of the collated completions are generate's log-probs", async () => {
    const prompt = await setup.left.process([
      { prompt: user('Describe the picture.', 1), images: [image(56, 56, 4)] },
      { prompt: user('Say something.', 0) },
      { prompt: user('What is it?', 1), images: [image(84, 56, 5)] },
    ]);
    const out = generation.generate(setup.model, prompt, { maxNewTokens: 6, doSample: true, temperature: 1, seed: 11 });
    const stopTokenIds = setup.model.textConfig.eosTokenIds;
    const batch = data.collateRollouts(prompt, out.tokens, { padTokenId: PAD, stopTokenIds });
    expect(batch.truncated).toEqual(out.finishReasons.map((f) => f === 'length'));
    const hidden = torch.noGrad(() => setup.model.forward(batch, { logits: false }).hidden);
    const head = setup.model.lmHead();
    const logps = rows(losses.tokenLogps(hidden, head, batch.targets)) as number[][];
    const P = batch.promptLength;
    out.tokens.forEach((tokens, s) => {
      const got = tokens.map((_, k) => logps[s]![P - 1 + k]!);
      got.forEach((lp, k) => expect(Math.abs(lp - out.logprobs[s]![k]!), `row ${s} token ${k}`).toBeLessThan(2e-4));
    });

    // GRPO on the collated batch: with generate's log-probs as the old policy the ratio is 1, so
    // the loss equals the on-policy loss and nothing is clipped.
    const old = torch
      .zeros(batch.targets.shape)
      .indexPut_([batch.completionMask.bool()], torch.tensor(out.logprobs.flat()));
    const grpo = new losses.GrpoLoss({ lossType: 'grpo' });
    const advantages = torch.tensor([1, -0.5, 0.25]);
    const withOld = grpo.compute({ hidden, targets: batch.targets, advantages, oldLogps: old }, head);
    const onPolicy = grpo.compute({ hidden, targets: batch.targets, advantages }, head);
    expect(Math.abs((withOld.loss.item() as number) - (onPolicy.loss.item() as number))).toBeLessThan(1e-4);
    expect(withOld.metrics['clip_ratio/region_mean']).toBe(0);
  });
});
