// The library side of a run: question files (VQA and InternVL's refcoco jsonl) become prompt records
// with the right prompts and named bad rows; a run that fails part-way resumes from its log without
// rescoring what was logged; a refcoco run on a tiny InternVL scores each answer with InternVL's
// rule; the trainer-facing metric maps equal the results' aggregates.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { models, processing, tiny } from '../../lib/index.js';
import type { PromptRecord } from '../../lib/data/records.js';
import { groundingTruthOf, REFCOCO_PROMPT, refcocoHit } from '../../lib/eval/grounding.js';
import { PredictionsLog } from '../../lib/eval/predictions_log.js';
import { openQuestions } from '../../lib/eval/question_data.js';
import { evaluateAnswers, runEvaluation } from '../../lib/eval/run.js';
import { answerMetrics } from '../../lib/eval/trainer_metrics.js';
import { randomImage } from '../processing/chats.js';

const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-eval-run-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const jsonl = (file: string, rows: unknown[]) =>
  fs.writeFileSync(file, `${rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n')}\n`);

async function all<T>(dataset: { length: number; get(i: number): Promise<T | undefined> }): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < dataset.length; i++) out.push((await dataset.get(i))!);
  return out;
}

beforeAll(async () => {
  const image = randomImage(64, 48, 1);
  const raw = { raw: { width: 64, height: 48, channels: 3 as const } };
  await sharp(Buffer.from(image.data), raw).png().toFile(path.join(root, 'a.png'));
});

describe('question files', () => {
  it('vqa rows: images before the question, or where <image> stands; other columns kept', async () => {
    const file = path.join(root, 'vqa.jsonl');
    jsonl(file, [
      { image: 'a.png', question: 'What is it?', answer: 'cat', data_source: 'x' },
      { question: 'Text only?', answers: ['yes', 'yeah'] },
      { image: 'a.png', question: 'Look: <image>\nNow?', answer: 'now' },
    ]);
    const [first, second, third] = await all(await openQuestions(file, 'vqa'));
    expect(first!.prompt).toEqual([
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is it?' }] },
    ]);
    expect(first!.images).toEqual([path.join(root, 'a.png')]);
    expect(first!.columns).toMatchObject({ answer: 'cat', data_source: 'x', question: 'What is it?' });
    expect(second!.images).toEqual([]);
    expect(second!.columns.answers).toEqual(['yes', 'yeah']);
    expect(third!.prompt).toEqual([
      {
        role: 'user',
        content: [{ type: 'text', text: 'Look: ' }, { type: 'image' }, { type: 'text', text: '\nNow?' }],
      },
    ]);
  });

  it("refcoco rows are asked with InternVL's prompt; the box columns go to the metric", async () => {
    const file = path.join(root, 'refcoco.jsonl');
    jsonl(file, [{ image: 'a.png', sent: 'the left dog', bbox: [1, 2, 30, 40], width: 64, height: 48 }]);
    const [record] = await all(await openQuestions(file, 'refcoco'));
    expect(record!.prompt).toEqual([
      {
        role: 'user',
        content: [{ type: 'image' }, { type: 'text', text: REFCOCO_PROMPT.replace('{}', 'the left dog') }],
      },
    ]);
    expect(record!.columns).toMatchObject({ bbox: [1, 2, 30, 40], width: 64, height: 48 });
  });

  it.each([
    ['vqa', [{ question: 'fine' }, { image: 'a.png' }], ':2: missing "question"'],
    ['vqa', ['{"question": "cut'], ':1: '],
    ['vqa', [{ image: '../a.png', question: 'q' }], ':1: image "../a.png" escapes the image root'],
    [
      'vqa',
      [{ image: ['a.png', 'a.png'], question: 'one <image> only' }],
      ':1: prompt has 1 image placeholder(s) for 2 image(s)',
    ],
    ['refcoco', [{ image: 'a.png', sent: 's', bbox: [1, 2, 3, 4], width: 5 }], ':1: missing "height"'],
  ] as const)('%s: a bad row is named by file and line', async (format, rows, message) => {
    const file = path.join(root, `bad-${format}.jsonl`);
    jsonl(file, [...rows]);
    const dataset = await openQuestions(file, format);
    await expect(all(dataset)).rejects.toThrow(`${file}${message}`);
  });

  it('skipBadRows counts bad rows instead', async () => {
    const file = path.join(root, 'skip.jsonl');
    jsonl(file, [{ question: 'fine', answer: 'a' }, { nope: 1 }, { question: 'also', answer: 'b' }]);
    const dataset = await openQuestions(file, 'vqa', { skipBadRows: true });
    const records = (await all(dataset)).filter((r) => r !== undefined);
    expect(records.map((r) => r.columns.answer)).toEqual(['a', 'b']);
    expect(dataset.badRows.count).toBe(1);
  });
});

describe('runEvaluation', () => {
  const records: PromptRecord[] = [0, 1, 2, 3, 4].map((i) => ({
    kind: 'prompt',
    id: `r${i}`,
    prompt: `question ${i}`,
    images: [],
    columns: { answer: String(i), data_source: i % 2 === 0 ? 'even' : 'odd' },
    source: { file: 'q.jsonl', line: i + 1 },
  }));
  // A scorer that answers "i" for record i, scoring 1 for even i.
  const scored: string[] = [];
  const scoreBatch = async (batch: PromptRecord[]) => {
    scored.push(...batch.map((r) => r.id));
    return batch.map((r) => ({ id: r.id, prediction: r.id, score: Number(r.id.slice(1)) % 2 === 0 ? 1 : 0 }));
  };

  it('a run that fails part-way resumes from its log, scoring only what was not logged', async () => {
    const dir = path.join(root, 'resume');
    let batches = 0;
    const failing = async (batch: PromptRecord[]) => {
      if (++batches === 3) throw new Error('simulated crash');
      return scoreBatch(batch);
    };
    await expect(
      runEvaluation(records, 'toy', failing, { outputDir: dir, settings: {}, batchSize: 2 }),
    ).rejects.toThrow('simulated crash');
    expect(PredictionsLog.open(path.join(dir, 'predictions.jsonl')).size).toBe(4);
    scored.length = 0;
    const progress: Array<[number, number | null]> = [];
    const results = await runEvaluation(records, 'toy', scoreBatch, {
      outputDir: dir,
      settings: {},
      batchSize: 2,
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(scored).toEqual(['r4']);
    expect(progress).toEqual([[5, 5]]);
    expect(results.predictions.map((p) => p.id)).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    expect(results.overall).toEqual({ count: 5, score: 3 / 5, parts: {} });
  });

  it('refuses a dataset whose ids repeat, naming both rows', async () => {
    const twice = [records[0]!, { ...records[1]!, id: 'r0' }];
    await expect(
      runEvaluation(twice, 'toy', scoreBatch, { outputDir: path.join(root, 'dup'), settings: {} }),
    ).rejects.toThrow('q.jsonl:2: record id "r0" repeats q.jsonl:1');
  });
});

describe('refcoco on a tiny InternVL', () => {
  it("each answer is scored by InternVL's rule; answerMetrics equals the results' aggregates", async () => {
    const dir = path.join(root, 'internvl');
    await tiny.writeTinyCheckpoint(dir, 'internvl', { seed: 2 });
    const file = path.join(root, 'grounding.jsonl');
    const rows = [0, 1, 2].map((k) => ({
      image: 'a.png',
      sent: `object ${k}`,
      bbox: [k, 2, 30 + k, 40],
      width: 64,
      height: 48,
      data_source: k === 1 ? 'refcoco+' : 'refcoco',
    }));
    jsonl(file, rows);
    const model = await models.fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    try {
      // One 448 tile per image, as InternVL's refcoco evaluation without --dynamic.
      const dataset = await openQuestions(file, 'refcoco', { maxTiles: 1 });
      expect((await dataset.get(0))!.maxTiles).toBe(1);
      const options = { metric: 'refcoco_iou' as const, maxNewTokens: 8, batchSize: 2 };
      const results = await evaluateAnswers(model, processor, dataset, {
        ...options,
        outputDir: path.join(root, 'refcoco-run'),
        settings: { model: dir },
      });
      results.predictions.forEach((p, i) => {
        expect(p.score).toBe(refcocoHit(p.prediction, groundingTruthOf(rows[i]!, 'r')));
        expect(p.data_source).toBe(rows[i]!.data_source);
      });
      const metrics = await answerMetrics(model, processor, dataset, options);
      expect(metrics).toEqual({
        refcoco_iou: results.overall.score,
        'refcoco_iou/refcoco': results.by_data_source.refcoco!.score,
        'refcoco_iou/refcoco+': results.by_data_source['refcoco+']!.score,
      });
    } finally {
      model.dispose();
    }
  }, 120_000);
});
