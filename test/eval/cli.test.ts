// `vlalign eval` end to end on a tiny Qwen2-VL checkpoint: a VQA jsonl (images in some rows, two
// data sources) scored by exact match, results.json / results.md checked against the predictions;
// a run SIGKILLed after a batch, or in the middle of writing one, then rerun (with another batch
// size) writes the same predictions.jsonl, results.json and results.md bytes as a run never
// stopped; preference accuracy against the same checkpoint is 0.5; bad rows and bad options are
// named.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { exactMatch } from '../../lib/eval/answer_metrics.js';
import type { EvalResults } from '../../lib/eval/results.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';
import { randomImage } from '../processing/chats.js';

const repo = path.resolve(import.meta.dirname, '../..');
const runTs = path.join(repo, 'test/train/fixtures/run_ts.mjs');
const child = path.join(import.meta.dirname, 'fixtures/eval_child.ts');
const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-eval-cli-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
afterEach(() => {
  process.exitCode = undefined;
});

const model = path.join(root, 'tiny');
const data = path.join(root, 'data/questions.jsonl');
const FILES = ['predictions.jsonl', 'results.json', 'results.md'];

const evalArgs = (out: string, batch: number) => [
  '--model',
  model,
  '--dataset',
  data,
  '--format',
  'vqa',
  '--metric',
  'exact_match',
  '--batch-size',
  String(batch),
  '--max-new-tokens',
  '5',
  '--output-dir',
  path.join(root, out),
];

async function runCli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const err: string[] = [];
  const out: string[] = [];
  const write = (sink: string[]) => (chunk: string | Uint8Array) => {
    sink.push(String(chunk));
    return true;
  };
  const [stderr, stdout] = [process.stderr.write, process.stdout.write];
  process.stderr.write = write(err) as typeof process.stderr.write;
  process.stdout.write = write(out) as typeof process.stdout.write;
  try {
    await main(['node', 'vlalign', ...args]);
  } finally {
    process.stderr.write = stderr;
    process.stdout.write = stdout;
  }
  return { code: Number(process.exitCode ?? 0), stderr: err.join(''), stdout: out.join('') };
}

function runChild(args: string[], env: Record<string, string>) {
  const run = spawnSync(process.execPath, [runTs, child, ...args], {
    cwd: repo,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
    encoding: 'utf8',
  });
  return { status: run.status, signal: run.signal, output: `${run.stdout}\n${run.stderr}` };
}

const bytes = (dir: string) =>
  Object.fromEntries(FILES.map((f) => [f, fs.readFileSync(path.join(root, dir, f), 'utf8')]));

describe('vlalign eval', () => {
  beforeAll(async () => {
    await writeTinyCheckpoint(model, 'qwen2_vl', { seed: 5 });
    fs.mkdirSync(path.join(root, 'data/images'), { recursive: true });
    for (const k of [0, 1]) {
      const image = randomImage(56, 56, k);
      const raw = { raw: { width: 56, height: 56, channels: 3 as const } };
      await sharp(Buffer.from(image.data), raw)
        .png()
        .toFile(path.join(root, `data/images/${k}.png`));
    }
    const rows = [
      { image: 'images/0.png', question: 'What colour?', answer: 'red', data_source: 'colours', question_type: 'what' },
      { question: 'How many?', answers: ['2', 'two'], data_source: 'counts', question_type: 'how many' },
      {
        image: 'images/1.png',
        question: '<image>\nWhat is it?',
        answer: 'cat',
        data_source: 'colours',
        question_type: 'what',
      },
      { question: 'Is it on?', answer: 'yes', data_source: 'counts' },
      { question: 'Say hi', answer: 'hi', data_source: 'colours' },
      { image: 'images/0.png', question: 'Which one?', answer: 'left', data_source: 'counts', question_type: 'what' },
      { question: 'Last one?', answer: 'no', data_source: 'counts' },
    ];
    fs.writeFileSync(data, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  }, 120_000);

  it('--help lists the options, formats and metrics', async () => {
    const help = (await import('../../lib/cli/main.js'))
      .program()
      .commands.find((c) => c.name() === 'eval')!
      .helpInformation();
    for (const flag of [
      '--model',
      '--dataset',
      '--format',
      '--metric',
      '--batch-size',
      '--max-new-tokens',
      '--output-dir',
    ])
      expect(help).toContain(flag);
    expect(help).toContain('refcoco_iou');
  });

  it('writes predictions, results.json and results.md that agree with each other', async () => {
    const run = await runCli(['eval', ...evalArgs('full', 3)]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^exact_match: \d\.\d{4} over 7 records/);
    const results = JSON.parse(fs.readFileSync(path.join(root, 'full/results.json'), 'utf8')) as EvalResults;
    const rows = fs
      .readFileSync(data, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(results.predictions.map((p) => p.id)).toEqual(rows.map((_, i) => `questions.jsonl:${i + 1}`));
    // Each score is exact match of its prediction against its row's answers, recomputed here.
    results.predictions.forEach((p, i) => {
      const answers = rows[i].answers ?? [rows[i].answer];
      expect(p.score).toBe(exactMatch(p.prediction, answers));
    });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(results.overall.count).toBe(7);
    expect(results.overall.score).toBeCloseTo(mean(results.predictions.map((p) => p.score)), 12);
    expect(Object.keys(results.by_data_source)).toEqual(['colours', 'counts']);
    expect(results.by_data_source.colours!.count).toBe(3);
    expect(results.by_question_type.what!.count).toBe(3);
    expect(results.settings).toMatchObject({ metric: 'exact_match', format: 'vqa', max_new_tokens: 5 });
    const md = fs.readFileSync(path.join(root, 'full/results.md'), 'utf8');
    expect(md).toContain('| group | count | exact_match |');
    expect(md).toContain(`| all | 7 | ${results.overall.score.toFixed(4)} |`);
    expect(md).toContain('| data_source: counts | 4 |');
  }, 120_000);

  it('a rerun of a finished run scores nothing again and writes the same bytes', async () => {
    const before = bytes('full');
    const run = await runCli(['eval', ...evalArgs('full', 2)]);
    expect(run.code, run.stderr).toBe(0);
    expect(bytes('full')).toEqual(before);
  }, 120_000);

  it.each([
    ['after a batch is written', { EVAL_KILL_AFTER_APPEND: '2' }, 4],
    ['in the middle of writing a batch', { EVAL_KILL_IN_APPEND: '2' }, 3],
  ])(
    'SIGKILL %s, then a rerun: the same files as the uninterrupted run',
    async (_, env, linesKept) => {
      const out = `killed-${linesKept}`;
      const killed = runChild(evalArgs(out, 2), env);
      expect({ status: killed.status, signal: killed.signal }, killed.output).toEqual({
        status: null,
        signal: 'SIGKILL',
      });
      const log = fs.readFileSync(path.join(root, out, 'predictions.jsonl'), 'utf8');
      const whole = log.split('\n').slice(0, -1);
      expect(whole.length).toBe(linesKept);
      for (const line of whole) JSON.parse(line);
      // Killed inside a write: a cut line follows the whole ones.
      expect(log.endsWith('\n')).toBe(!('EVAL_KILL_IN_APPEND' in env));
      expect(fs.existsSync(path.join(root, out, 'results.json'))).toBe(false);
      const resumed = await runCli(['eval', ...evalArgs(out, 3)]);
      expect(resumed.code, resumed.stderr).toBe(0);
      const full = bytes('full');
      const again = bytes(out);
      expect(again['predictions.jsonl']).toBe(full['predictions.jsonl']);
      // The settings name the output folder nowhere, so the results match byte for byte.
      expect(again['results.json']).toBe(full['results.json']);
      expect(again['results.md']).toBe(full['results.md']);
    },
    240_000,
  );

  it('refuses to resume a folder evaluated with other settings, naming what differs', async () => {
    const args = evalArgs('full', 2).map((a) => (a === '5' ? '6' : a));
    const run = await runCli(['eval', ...args]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/eval_config\.json belongs to another evaluation \(max_new_tokens: 5 there, 6 now\)/);
  });

  it('names the file and line of a bad row', async () => {
    const bad = path.join(root, 'data/bad.jsonl');
    fs.writeFileSync(bad, `${JSON.stringify({ question: 'ok?', answer: 'y' })}\n${JSON.stringify({ answer: 'n' })}\n`);
    const args = evalArgs('bad', 2).map((a) => (a === data ? bad : a));
    const run = await runCli(['eval', ...args]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${bad}:2: missing "question"`);
    const noAnswer = path.join(root, 'data/no_answer.jsonl');
    fs.writeFileSync(noAnswer, `${JSON.stringify({ question: 'ok?' })}\n`);
    const second = await runCli(['eval', ...evalArgs('no-answer', 2).map((a) => (a === data ? noAnswer : a))]);
    expect(second.stderr).toContain(`${noAnswer}:1: no reference answer`);
  }, 120_000);

  it('preference accuracy of a checkpoint against itself is 0.5', async () => {
    const pairs = path.join(root, 'data/pairs.jsonl');
    const rows = [0, 1, 2].map((i) => ({
      prompt: [{ role: 'user', content: `question ${i}` }],
      chosen: [{ role: 'assistant', content: `good answer ${i}` }],
      rejected: [{ role: 'assistant', content: `bad ${i}` }],
    }));
    fs.writeFileSync(pairs, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    const out = path.join(root, 'pref');
    const args = ['eval', '--model', model, '--ref-model', model, '--dataset', pairs, '--format', 'trl'];
    const run = await runCli([...args, '--metric', 'preference_accuracy', '--output-dir', out]);
    expect(run.code, run.stderr).toBe(0);
    const results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as EvalResults;
    expect(results.overall).toEqual({
      count: 3,
      score: 0.5,
      parts: { chosen_reward: 0, margin: 0, rejected_reward: 0 },
    });
    const missing = await runCli([
      ...args.filter((_, i) => i !== 3 && i !== 4),
      '--metric',
      'preference_accuracy',
      '--output-dir',
      out,
    ]);
    expect(missing.stderr).toMatch(/needs --ref-model/);
    const wrong = await runCli([...args, '--output-dir', path.join(root, 'pref2')]);
    expect(wrong.stderr).toMatch(/--format trl holds pairs: use --metric preference_accuracy/);
  }, 120_000);
});
