#!/usr/bin/env node
// `npm run demo`: vlalign aligning a vision-language model on this machine, with a result to check.
// The shipped base model (examples/demo/base-model/, a tiny InternVL) was SFT-trained on shapes
// questions whose labels call orange "red" and purple "blue" 80% of the time. From that same flawed
// start, two alignment stages run through the public CLI (`vlalign train <recipe>`):
//   1. MPO on preference pairs (chosen = true answer, rejected = the flawed / a wrong answer);
//   2. GRPO on prompts with an exact-match reward.
// Each checkpoint is evaluated greedily on a held-out set before and after (accuracy per question
// type, on the flawed colours, and preference accuracy on the flaw's pairs). Output: demo-output/
// (data, each stage's run with its TensorBoard logs, summary.json, report.html with plots).
//
//   node examples/demo/run.mjs [--out demo-output] [--seed 0] [--mpo-steps N] [--grpo-steps N]
//                              [--heldout-per-type N] [--examples 12]
import { spawnSync } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { writeEvalData, writeGrpoData, writeMpoData } from './datasets.mjs';
import { FLAWED_COLOURS, QUESTION_TYPES } from './shapes.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

// OpenBLAS threads do the matmuls and one intra-op thread runs the rest: the fastest split on two
// cores. Set before vlalign loads (here, for the evaluation; the stages inherit it).
const THREADS = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '2' };
for (const [key, value] of Object.entries(THREADS)) process.env[key] ??= value;

/** The demo's settings: flags over these defaults (steps sized for about 3 minutes a stage on 2 cores). */
export const DEFAULTS = {
  out: 'demo-output',
  seed: 0,
  model: join(root, 'examples/demo/base-model'),
  mpoSteps: 80,
  mpoBatch: 16,
  grpoSteps: 60,
  grpoPrompts: 8,
  heldoutPerType: 100,
  examples: 12,
};

const STAGES = [
  { name: 'mpo', recipe: 'examples/recipes/shapes-mpo.yaml', format: 'mmpr' },
  { name: 'grpo', recipe: 'examples/recipes/shapes-grpo.yaml', format: 'trl_prompt' },
];

export function demoOptions(argv) {
  const flag = (type) => ({ type });
  const { values } = parseArgs({
    args: argv,
    options: {
      out: flag('string'),
      seed: flag('string'),
      model: flag('string'),
      'mpo-steps': flag('string'),
      'grpo-steps': flag('string'),
      'heldout-per-type': flag('string'),
      examples: flag('string'),
    },
  });
  const number = (key, fallback) => {
    if (values[key] === undefined) return fallback;
    const n = Number(values[key]);
    if (!Number.isInteger(n) || n < 0) throw new TypeError(`--${key}: expected a whole number, got ${values[key]}`);
    return n;
  };
  return {
    ...DEFAULTS,
    out: resolve(values.out ?? DEFAULTS.out),
    model: resolve(values.model ?? DEFAULTS.model),
    seed: number('seed', DEFAULTS.seed),
    mpoSteps: number('mpo-steps', DEFAULTS.mpoSteps),
    grpoSteps: number('grpo-steps', DEFAULTS.grpoSteps),
    heldoutPerType: number('heldout-per-type', DEFAULTS.heldoutPerType),
    examples: number('examples', DEFAULTS.examples),
  };
}

/** Parameters of a safetensors checkpoint, from its header alone. */
function parameterCount(dir) {
  const fd = openSync(join(dir, 'model.safetensors'), 'r');
  try {
    const size = Buffer.alloc(8);
    readSync(fd, size, 0, 8, 0);
    const header = Buffer.alloc(Number(size.readBigUInt64LE()));
    readSync(fd, header, 0, header.length, 8);
    const tensors = Object.entries(JSON.parse(header.toString('utf8'))).filter(([name]) => name !== '__metadata__');
    return tensors.reduce((n, [, t]) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  } finally {
    closeSync(fd);
  }
}

const seconds = (since) => (Date.now() - since) / 1000;

/** One stage through the CLI; its progress bar and log lines go to this terminal. */
function trainStage(stage, options, data, steps) {
  const dir = join(options.out, stage.name);
  rmSync(dir, { recursive: true, force: true });
  const args = [
    join(root, 'bin/vlalign.mjs'),
    'train',
    join(root, stage.recipe),
    ...['--model_name_or_path', options.model],
    ...['--dataset', JSON.stringify({ format: stage.format, path: data })],
    ...['--output_dir', dir],
    ...['--max_steps', String(steps)],
    ...['--seed', String(options.seed)],
  ];
  console.log(`\n== ${stage.name}: vlalign train ${stage.recipe} (${steps} steps)`);
  const started = Date.now();
  const run = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: process.env });
  if (run.status !== 0) throw new Error(`${stage.name}: vlalign train exited with ${run.status ?? run.signal}`);
  return { dir, seconds: seconds(started) };
}

/** The stage's logged steps (metrics.jsonl): loss, GRPO's reward mean, MPO's rewards/accuracies. */
function stageHistory(dir) {
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  const value = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return lines
    .map((line) => JSON.parse(line))
    .filter((entry) => entry.loss !== undefined)
    .map((entry) => ({
      step: entry.step,
      loss: value(entry.loss),
      reward: value(entry.reward),
      accuracy: value(entry['rewards/accuracies']),
    }));
}

/** Held-out examples for the report: flawed-colour questions first, then each other type. */
function pickExamples(rows, count) {
  const indices = rows.map((_, i) => i);
  const flawed = indices.filter((i) => rows[i].flawed);
  const others = QUESTION_TYPES.map((type) => indices.filter((i) => !rows[i].flawed && rows[i].type === type));
  const picked = flawed.slice(0, Math.ceil(count / 2));
  for (let k = 0; picked.length < count && k < rows.length; k++) {
    const list = others[k % others.length];
    const next = list[Math.floor(k / others.length)];
    if (next !== undefined) picked.push(next);
  }
  return picked.slice(0, count);
}

function formatScores(s) {
  const types = QUESTION_TYPES.map((t) => `${t} ${s.byType[t].toFixed(2)}`).join(', ');
  return `${types}; flawed colours ${s.flawed.toFixed(2)}; preference ${s.preference.toFixed(2)}`;
}

export async function runDemo(options) {
  const started = Date.now();
  const { evaluateCheckpoint, openHeldout } = await import('./evaluate.mjs');
  const dataDir = join(options.out, 'data');
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  console.log(`vlalign demo: data and runs in ${options.out}`);
  const heldoutFiles = await writeEvalData(join(dataDir, 'heldout'), {
    seed: options.seed,
    perType: options.heldoutPerType,
  });
  const stageData = {
    mpo: await writeMpoData(join(dataDir, 'mpo'), { seed: options.seed, size: options.mpoSteps * options.mpoBatch }),
    grpo: await writeGrpoData(join(dataDir, 'grpo'), {
      seed: options.seed,
      size: options.grpoSteps * options.grpoPrompts,
    }),
  };
  const heldout = await openHeldout(heldoutFiles);
  console.log(`held-out: ${heldoutFiles.rows.length} questions (${seconds(started).toFixed(0)} s)`);

  const before = await evaluateCheckpoint(options.model, heldout, options.model);
  console.log(`before: ${formatScores(before.scores)}`);
  const stages = [];
  const afterAnswers = {};
  for (const stage of STAGES) {
    const steps = stage.name === 'mpo' ? options.mpoSteps : options.grpoSteps;
    const run = trainStage(stage, options, stageData[stage.name], steps);
    const after = await evaluateCheckpoint(run.dir, heldout, options.model);
    console.log(`${stage.name} after ${run.seconds.toFixed(0)} s: ${formatScores(after.scores)}`);
    afterAnswers[stage.name] = after.answers;
    stages.push({
      name: stage.name,
      seconds: run.seconds,
      steps,
      history: stageHistory(run.dir),
      before: before.scores,
      after: after.scores,
    });
  }

  const rows = heldoutFiles.rows;
  const examples = pickExamples(rows, options.examples).map((i) => ({
    image: relative(options.out, join(dataDir, 'heldout', rows[i].image)),
    question: rows[i].question,
    answer: rows[i].answer,
    before: before.answers[i],
    after: Object.fromEntries(STAGES.map((s) => [s.name, afterAnswers[s.name][i]])),
  }));
  const summary = {
    seed: options.seed,
    totalSeconds: seconds(started),
    model: {
      family: 'internvl_chat',
      parameters: parameterCount(options.model),
      path: relative(root, options.model) || '.',
    },
    questionTypes: QUESTION_TYPES,
    flawedColours: FLAWED_COLOURS,
    stages,
    examples,
  };
  writeFileSync(join(options.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  const report = await import('./report/index.mjs');
  report.printTable(summary);
  const written = await report.renderReport(options.out, summary);
  console.log(`report: ${written[written.length - 1]} (total ${summary.totalSeconds.toFixed(0)} s)`);
  return summary;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runDemo(demoOptions(process.argv.slice(2))).catch((error) => {
    console.error(`demo: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  });
}
