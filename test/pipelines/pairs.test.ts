// MMPR's correctness postprocess on hand-written sampled responses: which responses are positive,
// negative and format-negative, the pairs MMPR's rules give (the substring skip, answer_fix,
// num_pairs_per_key with Python's random.sample, deduplication), the files and meta.json it
// writes, and that our MMPR reader opens them. The kept subsets are checked against python3's own
// `random` (the generator MMPR uses), not against our port of it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../lib/data/open.js';
import type { PreferenceRecord } from '../../lib/data/records.js';
import { fixAnswer, optionLetter, runPairs } from '../../lib/pipelines/pairs.js';
import { PythonRandom } from '../../lib/pipelines/python_random.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-pairs-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const fixtureImage = path.join(import.meta.dirname, '../fixtures/images/img_140x140.png');

const jsonl = (rows: readonly object[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join('');
const readJsonl = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** A sampled row as `vlalign data sample` writes it (question already wrapped). */
const sampled = (question: string, answer: string, response: string, image?: string) => ({
  ...(image === undefined ? {} : { image }),
  question,
  answer,
  question_orig: question,
  response,
  prompt_version: 'en',
});

const reason = (final: string) => `Look at it.\nThink again.\nFinal answer: ${final}`;

describe('fixAnswer and optionLetter (MMPR fix_answer / post_process)', () => {
  it('rewrites the last occurrence of the prediction to the ground truth and unbolds Final', () => {
    expect(fixAnswer('Think.\nMore.\n**Final answer: (a)**', '(a)**', 'A')).toBe('Think.\nMore.\nFinal answer: A');
    // 30,594 vs 30594: matched with ',' removed and '.' stripped; the earlier "30,594." stays.
    expect(fixAnswer('It is 30,594.\nYes.\nFinal answer: 30,594.', '30,594.', '30594')).toBe(
      'It is 30,594.\nYes.\nFinal answer: 30594',
    );
  });
  it('leaves a prediction without the ground truth alone, apart from **Final', () => {
    expect(fixAnswer('a\nb\n**Final answer: 7', '7', '8')).toBe('a\nb\nFinal answer: 7');
    // An option ground truth and a prediction that is no option letter: returned unchanged.
    expect(fixAnswer('a\nb\n**Final answer: maybe', 'maybe', 'B')).toBe('a\nb\n**Final answer: maybe');
  });
  it('raises where MMPR raises: a one-line response', () => {
    expect(() => fixAnswer('Final answer: 3', '3', '3')).toThrow(/one line/);
  });
  it('reads option letters as post_process does', () => {
    expect(optionLetter(' **b** ')).toBe('B');
    expect(optionLetter('C. red')).toBe('C');
    expect(optionLetter('(d) blue')).toBe('D');
    expect(() => optionLetter('blue')).toThrow(/Fail to parse/);
  });
});

describe('PythonRandom against python3', () => {
  const python = (code: string) =>
    JSON.parse(execFileSync('python3', ['-c', code], { encoding: 'utf8' })) as number[][];
  it('samples as random.sample does, small pools and large populations, any seed', () => {
    const cases: [number, number, number][] = [
      [0, 20, 15],
      [0, 7, 7],
      [3, 1000, 15],
      [2 ** 40 + 5, 90, 40],
    ];
    const script = `import json, random\nout = []\nfor seed, n, k in ${JSON.stringify(cases)}:\n    random.seed(seed)\n    out.append(random.sample(range(n), k) + [random.getrandbits(32)])\nprint(json.dumps(out))`;
    const expected = python(script);
    const ours = cases.map(([seed, n, k]) => {
      const r = new PythonRandom(seed);
      return [...r.sample([...Array(n).keys()], k), r.uint32()];
    });
    expect(ours).toEqual(expected);
  });
});

describe('runPairs on hand-written responses', () => {
  const image = 'a.png';
  fs.copyFileSync(fixtureImage, path.join(root, image));
  const q1 = '<image>\nWhich option? Q1';
  const rows = [
    sampled(q1, 'B', reason('B'), image), // positive, pred "B"
    sampled(q1, 'B', reason('C'), image), // negative, pred "C"
    sampled(q1, 'B', reason('(B) is right'), image), // positive by the mc rule, pred "(B) is right"
    sampled(q1, 'B', reason('B or C'), image), // negative; contains the first positive's "b": skipped with it
    sampled(q1, 'B', 'just B', image), // format negative: fewer than two newlines
    sampled(q1, 'B', reason('C'), image), // the same negative again: its pairs are duplicates
    sampled('Q2: how many?', '12', reason('13')), // all wrong: a neg_items row
    sampled('Q3: colour?', 'red', reason('red')), // all right: no pairs
    sampled('Q4: pick', 'A', 'Think.\nMore.\n**Final answer: (a)**'), // positive (mc); answer_fix rewrites it
    sampled('Q4: pick', 'A', reason('D')),
  ];
  const input = path.join(root, 'toy.jsonl');
  fs.writeFileSync(input, jsonl(rows));

  it('builds the correctness and format pairs by MMPR rules', async () => {
    const out = path.join(root, 'plain');
    const summary = await runPairs({ input, outDir: out });
    const pairs = readJsonl(path.join(out, 'raw/toy_pairs_vqa_correctness_rules.jsonl'));
    const pair = (chosen: string, rejected: string, q: string, gt: string, img?: string) => ({
      ...(img === undefined ? {} : { image: img }),
      question: q,
      chosen,
      rejected,
      answer_gt: gt,
    });
    // Q1: positives B and "(B) is right" x negatives C, "B or C", C. "b" is in "b or c": skipped;
    // the repeated C gives duplicates, kept once.
    const expected = [
      pair(reason('B'), reason('C'), q1, 'B', image),
      pair(reason('(B) is right'), reason('C'), q1, 'B', image),
      pair(reason('(B) is right'), reason('B or C'), q1, 'B', image),
      pair('Think.\nMore.\n**Final answer: (a)**', reason('D'), 'Q4: pick', 'A'),
    ];
    expect(new Set(pairs.map((p) => JSON.stringify(p)))).toEqual(new Set(expected.map((p) => JSON.stringify(p))));
    expect(pairs).toHaveLength(4);
    expect(summary.correctness).toMatchObject({ entailSkip: 1, maxPossiblePairs: 6 + 1, distinct: 4, pairs: 6 });
    const format = readJsonl(path.join(out, 'raw/toy_pairs_vqa_format_rules.jsonl'));
    // random.sample returns its picks shuffled: compared as a set.
    expect(new Set(format.map((p) => JSON.stringify(p)))).toEqual(
      new Set(
        [pair(reason('B'), 'just B', q1, 'B', image), pair(reason('(B) is right'), 'just B', q1, 'B', image)].map((p) =>
          JSON.stringify(p),
        ),
      ),
    );
    expect(readJsonl(path.join(out, 'neg_items/toy.jsonl'))).toEqual([{ question: 'Q2: how many?', answer: '12' }]);
    const positives = readJsonl(path.join(out, 'pos_items/toy.jsonl'));
    expect(positives.map((r) => r.answer_pred)).toEqual(['B', '(B) is right', 'red', '(a)**']);
  });

  it('answer_fix rewrites en responses (the chosen text), not the correctness', async () => {
    const out = path.join(root, 'fixed');
    await runPairs({ input, outDir: out, answerFix: true });
    const pairs = readJsonl(path.join(out, 'raw/toy_pairs_vqa_correctness_rules.jsonl'));
    expect(pairs.filter((p) => p.question === 'Q4: pick').map((p) => p.chosen)).toEqual([
      'Think.\nMore.\nFinal answer: A',
    ]);
    // Q1's ground truth is an option letter: "(B) is right" and "B or C" both read as B, so both
    // are rewritten to end in "Final answer: B" (the negative too: MMPR fixes every parsed
    // response). The two positives' pairs with C then coincide, and "B or C" pairs as written.
    const q1Pairs = pairs.filter((p) => p.question === q1).map((p) => [p.chosen, p.rejected]);
    expect(new Set(q1Pairs.map((p) => JSON.stringify(p)))).toEqual(
      new Set([JSON.stringify([reason('B'), reason('C')]), JSON.stringify([reason('B'), reason('B')])]),
    );
    expect(pairs).toHaveLength(3);
  });

  it('writes meta.json entries our MMPR reader opens', async () => {
    const out = path.join(root, 'plain');
    const meta = JSON.parse(fs.readFileSync(path.join(out, 'meta.json'), 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
    expect(meta.toy_pairs_vqa_correctness_rules).toEqual({
      root: path.relative(out, root),
      annotation: 'raw/toy_pairs_vqa_correctness_rules.jsonl',
      data_augment: false,
      repeat_time: 1,
      length: 4,
    });
    const dataset = await openDataset({ format: 'mmpr', path: path.join(out, 'meta.json') });
    expect(dataset.length).toBe(6);
    const records: PreferenceRecord[] = [];
    for (let i = 0; i < dataset.length; i++) records.push((await dataset.get(i)) as PreferenceRecord);
    const withImage = records.filter((r) => r.images.length === 1);
    expect(withImage).toHaveLength(5);
    expect(fs.realpathSync(withImage[0]!.images[0] as string)).toBe(fs.realpathSync(path.join(root, image)));
    expect(records.every((r) => r.kind === 'preference')).toBe(true);
  });

  it('keeps num_pairs_per_key pairs per key as random.sample(seed 0) picks them', async () => {
    // Two keys: 4 positives x 5 negatives (20 candidates) and 3 x 2 (6); at most 5 kept per key.
    const many = [
      ...[1, 2, 3, 4].map((i) => sampled('K1', '7', `step ${i}\nmore\nFinal answer: 7`)),
      ...[1, 2, 3, 4, 5].map((i) => sampled('K1', '7', `step\nmore\nFinal answer: ${100 + i}`)),
      ...[1, 2, 3].map((i) => sampled('K2', '8', `try ${i}\nmore\nFinal answer: 8`)),
      ...[1, 2].map((i) => sampled('K2', '8', `try\nmore\nFinal answer: ${200 + i}`)),
    ];
    const file = path.join(root, 'many.jsonl');
    fs.writeFileSync(file, jsonl(many));
    const out = path.join(root, 'many');
    await runPairs({ input: file, outDir: out, numPairsPerKey: 5 });
    // MMPR: candidates in positive-major order, then random.sample(cands, min(n, 5)) per key, one
    // generator seeded 0 for the whole file.
    const picks = JSON.parse(
      execFileSync(
        'python3',
        [
          '-c',
          'import json, random\nrandom.seed(0)\nprint(json.dumps([random.sample(range(n), min(n, 5)) for n in (20, 6)]))',
        ],
        { encoding: 'utf8' },
      ),
    ) as number[][];
    const candidates = (key: string, pos: number, neg: number, base: number, word: string, gt: string) =>
      [...Array(pos).keys()].flatMap((p) =>
        [...Array(neg).keys()].map((n) => ({
          question: key,
          chosen: `${word} ${p + 1}\nmore\nFinal answer: ${gt}`,
          rejected: `${word === 'step' ? 'step' : 'try'}\nmore\nFinal answer: ${base + n + 1}`,
          answer_gt: gt,
        })),
      );
    const k1 = candidates('K1', 4, 5, 100, 'step', '7');
    const k2 = candidates('K2', 3, 2, 200, 'try', '8');
    const expected = [...picks[0]!.map((i) => k1[i]), ...picks[1]!.map((i) => k2[i])];
    expect(readJsonl(path.join(out, 'raw/many_pairs_vqa_correctness_rules.jsonl'))).toEqual(expected);
  });

  it('names the file and line of a bad row', async () => {
    const bad = path.join(root, 'bad.jsonl');
    fs.writeFileSync(bad, `${JSON.stringify(sampled('Q', 'a', reason('a')))}\n{"question": "Q", "answer": "a"}\n`);
    await expect(runPairs({ input: bad, outDir: path.join(root, 'bad') })).rejects.toThrow(
      `${bad}:2: "response" must be a string`,
    );
    const broken = path.join(root, 'broken.jsonl');
    fs.writeFileSync(broken, '\n{"question": \n');
    await expect(runPairs({ input: broken, outDir: path.join(root, 'bad') })).rejects.toThrow(
      `${broken}:2: not valid JSON`,
    );
  });
});
