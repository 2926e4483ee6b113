// The correctness pipeline: MMPR's prompt versions wrapped around questions (texts as in InternVL's
// constants.py), sampling with a scripted engine into MMPR's sampled-row format and on into pairs
// and our MMPR reader, and sampling from a tiny Qwen2-VL checkpoint through the real processor and
// batched rollout (N responses per row, reproducible by seed).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../lib/data/open.js';
import { fromPretrained } from '../../lib/models/index.js';
import * as processing from '../../lib/processing/index.js';
import { modelEngine, scriptedEngine, type GenerationRequest } from '../../lib/pipelines/engine.js';
import { runPairs } from '../../lib/pipelines/pairs.js';
import { versionForFile, wrapQuestion } from '../../lib/pipelines/prompts.js';
import { runCorrectnessSampling } from '../../lib/pipelines/sample.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-sample-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
fs.copyFileSync(path.join(import.meta.dirname, '../fixtures/images/img_140x140.png'), path.join(root, 'chart.png'));
const readJsonl = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const writeJsonl = (file: string, rows: readonly object[]) =>
  fs.writeFileSync(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));

describe('MMPR prompt versions', () => {
  it('en: the instruction, the question after "Question:", a short-answer instruction cut', () => {
    expect(wrapQuestion('What is 2+2?\nAnswer the question using a single word or phrase.', 'en', false)).toBe(
      'Your task is to answer the question below. Give step by step reasoning before you answer, and when ' +
        'you\'re ready to answer, please use the format "Final answer: .."\n\nQuestion:\n\nWhat is 2+2?',
    );
  });
  it('en_v2: the question first, then the boxed-answer instruction; one <image> moves to the front', () => {
    const wrapped = wrapQuestion('Look: <image>\nHow many bars?', 'en_v2', true);
    expect(
      wrapped.startsWith(
        '<image>\nLook: How many bars?\nAnswer the preceding question. The last line of your response',
      ),
    ).toBe(true);
    expect(wrapped.endsWith('considering all relevant information before answering.')).toBe(true);
    expect(wrapped).toContain("'Answer: \\boxed{$FINAL_ANSWER}' (without quotes)");
    // No placeholder in the question: one is put in front.
    expect(wrapQuestion('How many?', 'en_v2', true).startsWith('<image>\nHow many?\n')).toBe(true);
  });
  it('en_r1: the R1 protocol, the question, then the boxed request', () => {
    const wrapped = wrapQuestion(
      "Which is larger? Answer with the option's letter from the given choices directly.",
      'en_r1',
      false,
    );
    expect(
      wrapped.startsWith('You are an AI assistant that rigorously follows this response protocol:\n\n1. First,'),
    ).toBe(true);
    expect(
      wrapped.endsWith(
        'not reference the thinking section.\nWhich is larger?\nPlease answer the question and put the final answer within \\boxed{}.',
      ),
    ).toBe(true);
  });
  it('a file with _zh_ in its name takes the zh twin; a $ in the question is kept as written', () => {
    expect(versionForFile('en_v2', 'geoqa_zh_train.jsonl')).toBe('zh_v2');
    expect(versionForFile('en', 'geoqa_train.jsonl')).toBe('en');
    expect(wrapQuestion("costs $& and $'", 'en_v2', false).startsWith("costs $& and $'\n")).toBe(true);
  });
});

describe('correctness sampling with a scripted engine, into pairs', () => {
  const input = path.join(root, 'chartqa_train.jsonl');
  const rows = [
    {
      image: 'chart.png',
      question: 'How many bars are there?\nAnswer the question using a single word or phrase.',
      answer: '12',
    },
    { question: 'What is 3 + 4?', answer: 7 },
  ];
  writeJsonl(input, rows);
  // Per row, response k: right, wrong, unparseable.
  const answers: Record<string, string[]> = { '12': ['12', '15', ''], '7': ['7.0', '8', ''] };
  const engine = scriptedEngine((request: GenerationRequest, k) => {
    const gt = request.question.includes('bars') ? '12' : '7';
    const final = answers[gt]![k]!;
    return final === '' ? 'no idea' : `Count them.\nCarefully.\nFinal answer: ${final}`;
  });

  it('writes MMPR sampled rows: wrapped question in place, question_orig, response, prompt_version', async () => {
    const output = path.join(root, 'sampled/chartqa_train.jsonl');
    fs.mkdirSync(path.dirname(output), { recursive: true });
    const summary = await runCorrectnessSampling({ input, output, engine, promptVersion: 'en', numReturnSequences: 3 });
    expect(summary).toEqual({ rows: 2, resumed: 0, lines: 6 });
    const lines = readJsonl(output);
    expect(lines).toHaveLength(6);
    expect(Object.keys(lines[0]!)).toEqual([
      'image',
      'question',
      'answer',
      'question_orig',
      'response',
      'prompt_version',
    ]);
    expect(lines[0]).toMatchObject({
      image: 'chart.png',
      question: wrapQuestion('How many bars are there?', 'en', true),
      question_orig: rows[0]!.question,
      prompt_version: 'en',
      response: 'Count them.\nCarefully.\nFinal answer: 12',
    });
    expect((lines[0]!.question as string).startsWith('<image>\nYour task is')).toBe(true);
    expect(lines[3]).toMatchObject({ question_orig: 'What is 3 + 4?', answer: 7 });

    // chartqa in the name: relaxed accuracy only (7.0 vs 7 within 5%: right; 15 vs 12: wrong).
    const pairsDir = path.join(root, 'pairs');
    const pairs = await runPairs({ input: output, outDir: pairsDir });
    expect(pairs.correctness.distinct).toBe(2);
    expect(pairs.format.distinct).toBe(2);
    const correctness = readJsonl(path.join(pairsDir, 'raw/chartqa_train_pairs_vqa_correctness_rules.jsonl'));
    expect(correctness).toEqual([
      {
        image: 'chart.png',
        question: lines[0]!.question,
        chosen: 'Count them.\nCarefully.\nFinal answer: 12',
        rejected: 'Count them.\nCarefully.\nFinal answer: 15',
        answer_gt: '12',
      },
      {
        question: lines[3]!.question,
        chosen: 'Count them.\nCarefully.\nFinal answer: 7.0',
        rejected: 'Count them.\nCarefully.\nFinal answer: 8',
        answer_gt: 7,
      },
    ]);
    const dataset = await openDataset({ format: 'mmpr', path: path.join(pairsDir, 'meta.json') });
    expect(dataset.length).toBe(4);
  });

  it('names the file and line of a row without an answer', async () => {
    const bad = path.join(root, 'bad.jsonl');
    writeJsonl(bad, [rows[1]!, { question: 'no answer' }]);
    await expect(
      runCorrectnessSampling({ input: bad, output: path.join(root, 'bad_out.jsonl'), engine, promptVersion: 'en_v2' }),
    ).rejects.toThrow(`${bad}:2: "answer" must be a string or a number, got nothing`);
  });
});

describe('correctness sampling from a tiny Qwen2-VL', () => {
  let engine: ReturnType<typeof modelEngine>;
  const input = path.join(root, 'tiny_in.jsonl');
  beforeAll(async () => {
    const dir = path.join(root, 'tiny');
    await writeTinyCheckpoint(dir, 'qwen2_vl', { seed: 3 });
    const model = await fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    engine = modelEngine(model, processor, { temperature: 0.7, topK: 50, topP: 1, maxNewTokens: 6, seed: 11 });
    writeJsonl(input, [
      { image: 'chart.png', question: 'How many bars?', answer: '3' },
      { question: 'What is two plus two?', answer: '4' },
      { image: 'chart.png', question: 'What colour is the first bar?', answer: 'red' },
    ]);
  }, 120_000);

  it('samples N responses per row through the processor and rollout, the same again for the same seed', async () => {
    const run = async (name: string, batchSize: number) => {
      const output = path.join(root, name);
      await runCorrectnessSampling({ input, output, engine, promptVersion: 'en_v2', numReturnSequences: 3, batchSize });
      return readJsonl(output);
    };
    const once = await run('tiny_a.jsonl', 2);
    const again = await run('tiny_b.jsonl', 2);
    expect(once).toHaveLength(9);
    expect(again).toEqual(once);
    expect(once.every((l) => typeof l.response === 'string' && l.prompt_version === 'en_v2')).toBe(true);
    // Sampling at temperature 0.7 from a random model: the three responses of a row differ.
    expect(new Set(once.slice(0, 3).map((l) => l.response)).size).toBeGreaterThan(1);
  }, 120_000);
});
