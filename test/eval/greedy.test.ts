// Batched greedy answering equals answering one prompt at a time (left padding, rows leaving the
// batch at their stop token, images in some rows only), on Qwen2-VL and InternVL tiny checkpoints,
// whichever side the processor pads on; greedyAccuracy is the metric's mean over those answers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../lib/generation/index.js';
import { models, processing, tiny } from '../../lib/index.js';
import type { CausalLM } from '../../lib/models/index.js';
import type { PromptRecord } from '../../lib/data/records.js';
import { answerBatch, greedyAnswers, leftPadded } from '../../lib/eval/greedy.js';
import { greedyAccuracy } from '../../lib/eval/greedy_accuracy.js';
import { exactMatch } from '../../lib/eval/answer_metrics.js';
import * as torch from '../../lib/torch/index.js';
import { userTurn } from '../processing/chats.js';
import { pngOf, promptRecord } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-eval-greedy-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe.each(['qwen2_vl', 'internvl'] as const)('greedy answering on tiny %s', (family) => {
  let dir: string;
  let model: CausalLM;
  let records: PromptRecord[];
  beforeAll(async () => {
    dir = join(root, family);
    await tiny.writeTinyCheckpoint(dir, family, { seed: 4 });
    model = await models.fromPretrained(dir);
    records = [
      promptRecord('r0', 'what colour is it?', await pngOf(1), { answer: 'red' }),
      promptRecord('r1', 'a longer question without any image at all, please answer', null, { answer: 'two' }),
      promptRecord('r2', 'and this?', await pngOf(2, 84), { answer: 'blue' }),
      promptRecord('r3', 'hi', null, { answer: 'x' }),
      promptRecord('r4', 'one more image question', await pngOf(5), { answer: 'y' }),
    ];
  }, 120_000);
  afterAll(() => model?.dispose());

  it.each(['left', 'right'] as const)(
    'batches of 3 equal one by one (processor pads %s)',
    async (paddingSide) => {
      const processor = await processing.fromPretrained(dir, { paddingSide });
      const options = { maxNewTokens: 6, batchSize: 3 };
      const batched = await collect(greedyAnswers(model, processor, records, options));
      const single = await collect(greedyAnswers(model, processor, records, { ...options, batchSize: 1 }));
      expect(batched.map((a) => a.record.id)).toEqual(records.map((r) => r.id));
      expect(batched.map((a) => a.tokens)).toEqual(single.map((a) => a.tokens));
      expect(batched.map((a) => a.text)).toEqual(single.map((a) => a.text));
      // Not a degenerate model: the answers differ between prompts.
      expect(new Set(batched.map((a) => a.tokens.join(','))).size).toBeGreaterThan(1);
    },
    120_000,
  );

  it('one prompt alone equals generate on the processor batch; a stop token ends the answer and leaves the text', async () => {
    const processor = await processing.fromPretrained(dir);
    const record = records[0]!;
    const batch = await processor.process([{ prompt: record.prompt, images: record.images as Uint8Array[] }]);
    const extras = batch as { imageGridThw?: torch.Tensor | null; imageFlags?: torch.Tensor | null };
    const free = generate(
      model,
      { ...batch, imageGridThw: extras.imageGridThw ?? null, imageFlags: extras.imageFlags ?? null },
      { maxNewTokens: 6, stopTokenIds: [] },
    );
    const first = free.tokens[0]!;
    const [plain] = await answerBatch(model, processor, [record], { maxNewTokens: 6, stopTokenIds: [] });
    expect(plain!.tokens).toEqual(first);
    expect(plain!.finishReason).toBe('length');
    // Make the third token a stop token: the answer ends there, without it in the text.
    const [stopped] = await answerBatch(model, processor, [record], { maxNewTokens: 6, stopTokenIds: [first[2]!] });
    expect(stopped!.tokens).toEqual(first.slice(0, first.indexOf(first[2]!) + 1));
    expect(stopped!.finishReason).toBe('stop');
    expect(stopped!.text).toBe(processor.tokenizer.decode(stopped!.tokens.slice(0, -1), { skipSpecialTokens: true }));
  }, 120_000);

  it('greedyAccuracy is the mean exact match of the greedy answers', async () => {
    const processor = await processing.fromPretrained(dir);
    const answers = await collect(greedyAnswers(model, processor, records, { maxNewTokens: 4 }));
    // Make two references the model's own answers, so the accuracy is 2/5 by construction.
    const graded = records.map((r, i) =>
      i === 1 || i === 3
        ? { ...r, columns: { answer: answers[i]!.text } }
        : { ...r, columns: { answer: 'zzz-not-said' } },
    );
    const expected = graded.map((r, i) => exactMatch(answers[i]!.text, [r.columns.answer as string]));
    expect(expected.filter((e) => e === 1).length).toBeGreaterThanOrEqual(2);
    const result = await greedyAccuracy(model, processor, graded, { maxNewTokens: 4, batchSize: 2 });
    expect(result.count).toBe(5);
    expect(result.answers.map((a) => a.prediction)).toEqual(answers.map((a) => a.text));
    expect(result.accuracy).toBeCloseTo(expected.reduce((a, b) => a + b, 0) / 5, 12);
  }, 120_000);
});

describe('bad records in a batch', () => {
  it('a prompt whose image slots do not match its images is named by file and line', async () => {
    const dir = join(root, 'bad');
    await tiny.writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 4 });
    const model = await models.fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    try {
      const good = promptRecord('good', 'fine', null, { answer: 'a' });
      const bad = { ...promptRecord('bad', 'two slots', await pngOf(1)), prompt: userTurn('two slots', 2) };
      await expect(answerBatch(model, processor, [good, bad], { maxNewTokens: 2 })).rejects.toThrow(
        /^bad\.jsonl:1: samples\[1\]/,
      );
    } finally {
      model.dispose();
    }
  }, 120_000);
});

describe('leftPadded', () => {
  it('moves each row to the right end', () => {
    const ids = torch.tensor(
      [
        [5, 6, 0],
        [7, 0, 0],
        [1, 2, 3],
      ],
      { dtype: 'int64' },
    );
    const mask = torch.tensor(
      [
        [1, 1, 0],
        [1, 0, 0],
        [1, 1, 1],
      ],
      { dtype: 'int64' },
    );
    const out = leftPadded(ids, mask, 9);
    expect(out.inputIds.toArray()).toEqual([
      [9, 5, 6],
      [9, 9, 7],
      [1, 2, 3],
    ]);
    expect(out.attentionMask.toArray()).toEqual([
      [0, 1, 1],
      [0, 0, 1],
      [1, 1, 1],
    ]);
  });
});
