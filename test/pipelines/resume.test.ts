// Resume after a kill: `vlalign data sample` and `vlalign data dropout-ntp` on a tiny Qwen2-VL in a
// child process (fixtures/data_child.ts) SIGKILLed after a whole write, or in the middle of a
// write (a torn last line), then run again with the same command: the finished output is byte for
// byte the file of an uninterrupted run, and the rerun says how many rows it kept. sample writes a
// batch at a time; dropout-ntp (continuous batching) writes rows as they complete in input order.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const repo = path.resolve(import.meta.dirname, '../..');
const runTs = path.join(repo, 'test/train/fixtures/run_ts.mjs');
const child = path.join(import.meta.dirname, 'fixtures/data_child.ts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-data-resume-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const model = path.join(root, 'tiny');
const input = path.join(root, 'questions.jsonl');

beforeAll(async () => {
  await writeTinyCheckpoint(model, 'qwen2_vl', { seed: 2 });
  fs.copyFileSync(path.join(repo, 'test/fixtures/images/img_140x140.png'), path.join(root, 'pic.png'));
  const rows = [...Array(5).keys()].map((i) => ({
    ...(i % 2 === 0 ? { image: 'pic.png' } : {}),
    question: `<image>\nQuestion number ${i}?`.replace(i % 2 === 0 ? '' : '<image>\n', ''),
    answer: String(i),
    chosen: `The answer to question ${i} is ${i} and that is all there is to it.`,
  }));
  fs.writeFileSync(input, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
}, 60_000);

interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

function data(args: string[], env: Record<string, string> = {}): ChildRun {
  const run = spawnSync(process.execPath, [runTs, child, ...args], {
    cwd: repo,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return { status: run.status, signal: run.signal, output: `${run.stdout}\n${run.stderr}` };
}

const expectCompleted = (run: ChildRun) =>
  expect({ status: run.status, signal: run.signal }, run.output).toEqual({ status: 0, signal: null });
const expectKilled = (run: ChildRun) =>
  expect({ status: run.status, signal: run.signal }, run.output).toEqual({ status: null, signal: 'SIGKILL' });

const common = ['--model', model, '--input', input, '--batch-size', '2', '--max-new-tokens', '5', '--seed', '3'];
const sample = (output: string) => [
  'sample',
  ...common,
  '--output',
  output,
  '--prompt-version',
  'en_v2',
  '--num-return-sequences',
  '2',
];
const dropout = (output: string) => ['dropout-ntp', ...common, '--output', output, '--num-return-sequences', '2'];

describe('vlalign data resumes after SIGKILL', () => {
  it('sample: killed after its second batch, rerun: the same file as an uninterrupted run', () => {
    const whole = path.join(root, 'sample_whole.jsonl');
    expectCompleted(data(sample(whole)));
    const reference = fs.readFileSync(whole, 'utf8');
    expect(reference.split('\n').filter(Boolean)).toHaveLength(10);

    const killed = path.join(root, 'sample_killed.jsonl');
    expectKilled(data(sample(killed), { PIPELINE_KILL_AFTER_BATCH: '2' }));
    expect(fs.readFileSync(killed, 'utf8').split('\n').filter(Boolean)).toHaveLength(8);
    const resumed = data(sample(killed));
    expectCompleted(resumed);
    expect(resumed.output).toContain('5 rows (4 resumed)');
    expect(fs.readFileSync(killed, 'utf8')).toBe(reference);
  }, 480_000);

  it('dropout-ntp: a torn write mid-batch is cut back, the rerun completes it and writes meta.json', () => {
    const whole = path.join(root, 'out_whole/open.jsonl');
    const torn = path.join(root, 'out_torn/open.jsonl');
    fs.mkdirSync(path.dirname(whole));
    fs.mkdirSync(path.dirname(torn));
    expectCompleted(data(dropout(whole)));
    expectKilled(data(dropout(torn), { PIPELINE_TEAR_BATCH: '2' }));
    const cut = fs.readFileSync(torn, 'utf8');
    expect(cut.endsWith('\n')).toBe(false);
    expect(fs.existsSync(path.join(root, 'out_torn/meta.json'))).toBe(false);
    // Continuous batching writes rows as they complete in order, and a rerun keeps every whole
    // row (2 lines each) before the torn line: at least the first write's rows.
    const wholeRows = Math.floor((cut.split('\n').length - 1) / 2);
    expect(wholeRows).toBeGreaterThanOrEqual(1);
    const resumed = data(dropout(torn));
    expectCompleted(resumed);
    expect(resumed.output).toContain(`5 rows (${wholeRows} resumed)`);
    expect(fs.readFileSync(torn, 'utf8')).toBe(fs.readFileSync(whole, 'utf8'));
    expect(fs.readFileSync(path.join(root, 'out_torn/meta.json'), 'utf8')).toBe(
      fs.readFileSync(path.join(root, 'out_whole/meta.json'), 'utf8'),
    );
  }, 480_000);

  it('dropout-ntp: killed after its first write, rerun: the same file as an uninterrupted run', () => {
    const whole = path.join(root, 'out_whole/open.jsonl');
    const killed = path.join(root, 'out_killed/open.jsonl');
    fs.mkdirSync(path.dirname(killed));
    if (!fs.existsSync(whole)) expectCompleted(data(dropout(whole)));
    expectKilled(data(dropout(killed), { PIPELINE_KILL_AFTER_BATCH: '1' }));
    const kept = fs.readFileSync(killed, 'utf8').split('\n').filter(Boolean).length / 2;
    expect(kept >= 1 && kept < 5).toBe(true);
    const resumed = data(dropout(killed));
    expectCompleted(resumed);
    expect(resumed.output).toContain(`5 rows (${kept} resumed)`);
    expect(fs.readFileSync(killed, 'utf8')).toBe(fs.readFileSync(whole, 'utf8'));
  }, 480_000);

  it('refuses to resume into an output written from another input, naming its line', () => {
    const other = path.join(root, 'other.jsonl');
    fs.writeFileSync(
      other,
      `${JSON.stringify({ question: 'something else', answer: '1', question_orig: 'x', response: 'r' })}\n`,
    );
    const run = data(sample(other));
    expect(run.status, run.output).toBe(1);
    expect(run.output).toContain(`${other}:1: belongs to another row`);
  }, 120_000);
});
