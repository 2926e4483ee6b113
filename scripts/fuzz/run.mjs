#!/usr/bin/env node
// vlalign's own fuzzer: hostile inputs on every surface a user's files and arguments reach
// (safetensors, images, op arguments, checkpoint folders, chat templates, dataset files, recipe
// YAML, CLI flags), each case a pure function of (seed, surface, index), run in a pool of child
// processes so a native crash or a hang is counted, not fatal.
//   npm run fuzz                      the long run (12,000 cases)
//   npm run fuzz -- --quick           the CI run (2,000 cases, a minute or two)
//   npm run fuzz -- --repro ops:123   one case in this process, with its input and outcome
// Options: --cases N, --seed N (default 1), --jobs N, --timeout MS (per case, default 30000),
// --surface a,b, --report FILE (every case that was not ok or clean, as JSON), --fail-on LIST
// (the outcomes that fail the run; default abort,hang,unclear,harness; CI: abort,hang,harness).
// Runs against dist/ (npm run build:ts). Exit code 1 when a case had an outcome --fail-on lists.
import { execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EXTRA_SURFACES, runCase, SURFACES } from './cases.mjs';
import { writeExtraSeeds } from './seeds.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Relative shares of the cases: cheap surfaces with many shapes of input get more.
const WEIGHTS = {
  safetensors: 2,
  images: 2,
  ops: 3,
  checkpoints: 1,
  templates: 1,
  datasets: 1,
  recipes: 1,
  cli: 1,
  selftest: 1,
};
const OUTCOMES = ['ok', 'clean', 'unclear', 'abort', 'hang', 'harness'];
const EXAMPLES = 4; // distinct messages printed per surface and outcome
const RECYCLE_AFTER = 400; // cases per worker before a fresh one (bounds any slow leak)

const { values: options } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    cases: { type: 'string' },
    seed: { type: 'string', default: '1' },
    jobs: { type: 'string', default: String(Math.max(1, Math.min(4, os.availableParallelism() - 1))) },
    timeout: { type: 'string', default: '30000' },
    surface: { type: 'string' },
    repro: { type: 'string' },
    report: { type: 'string' },
    'fail-on': { type: 'string', default: 'abort,hang,unclear,harness' },
  },
});

const seed = Number(options.seed);
const failOn = options['fail-on'].split(',').filter((o) => o !== '');
for (const o of failOn)
  if (!OUTCOMES.includes(o) || o === 'ok' || o === 'clean')
    fail(`--fail-on: '${o}' is not a failing outcome (${OUTCOMES.slice(2).join(', ')})`);
const surfaces = options.surface ? options.surface.split(',') : SURFACES;
for (const s of surfaces)
  if (!SURFACES.includes(s) && !EXTRA_SURFACES.includes(s))
    fail(`unknown surface '${s}' (known: ${SURFACES.join(', ')})`);
if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) fail('dist/ is missing: run `npm run build:ts` first');

function fail(message) {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(2);
}

/** The valid seed inputs: the recipe data generator's tiny checkpoints, pictures and data sets, and seeds.mjs's. */
function makeCorpus(work) {
  const corpus = path.join(work, 'corpus');
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'make-recipe-data.mjs'), '--out', corpus], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  writeExtraSeeds(corpus);
  return corpus;
}

/** Cases per surface: the total shared by weight, interleaved so every surface runs from the start. */
function schedule(total) {
  const weight = surfaces.reduce((sum, s) => sum + WEIGHTS[s], 0);
  const counts = Object.fromEntries(surfaces.map((s) => [s, Math.max(1, Math.round((total * WEIGHTS[s]) / weight))]));
  const queue = [];
  for (let i = 0; queue.length < Object.values(counts).reduce((a, b) => a + b, 0); i++) {
    for (const s of surfaces) if (i < counts[s]) queue.push({ surface: s, index: i });
  }
  return queue;
}

async function repro(spec) {
  const [surface, index] = spec.split(':');
  if (![...SURFACES, ...EXTRA_SURFACES].includes(surface) || !/^\d+$/.test(index ?? ''))
    fail('--repro takes SURFACE:INDEX, e.g. ops:123');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-fuzz-'));
  const dir = path.join(work, 'case');
  const report = await runCase({ seed, surface, index: Number(index), corpus: makeCorpus(work), dir }, (what) =>
    process.stdout.write(`case ${surface}:${index} (seed ${seed}): ${what}\ninputs in ${dir}\n`),
  );
  process.stdout.write(`outcome: ${report.outcome}${report.message ? `\nmessage: ${report.message}` : ''}\n`);
  process.exitCode = report.outcome === 'ok' || report.outcome === 'clean' ? 0 : 1;
}

/** One child process running cases; `onDone` gets each case's report, aborts and hangs included. */
class Worker {
  constructor(id, corpus, work, timeoutMs, onDone) {
    Object.assign(this, { id, corpus, work, timeoutMs, onDone, current: null, runs: 0, stderr: '' });
  }

  start() {
    this.runs = 0;
    this.stderr = '';
    this.stray = undefined;
    this.previous = undefined;
    return new Promise((resolve) => {
      const scratch = path.join(this.work, `worker-${this.id}`);
      fs.rmSync(scratch, { recursive: true, force: true });
      this.child = fork(fileURLToPath(new URL('./worker.mjs', import.meta.url)), {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        env: {
          ...process.env,
          OMP_NUM_THREADS: '1',
          VLALIGN_FUZZ_WORKER: JSON.stringify({ corpus: this.corpus, scratch, surfaces }),
        },
      });
      this.child.stderr.on('data', (chunk) => {
        this.stderr = (this.stderr + chunk).slice(-2000);
      });
      let started = false;
      this.child.on('message', (m) => {
        if (!m.ready) return this.message(m);
        started = true;
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        // A worker that cannot start would stall the run: stop it with the worker's own error.
        if (!started) fail(`a worker exited while starting (${signal ?? `exit ${code}`}): ${this.stderr.trim()}`);
        this.exited(code, signal);
      });
    });
  }

  run(job) {
    this.current = { ...job, what: '(not started)', t0: performance.now() };
    this.timer = setTimeout(() => this.hang(), this.timeoutMs);
    this.child.send({ id: job.id, seed, surface: job.surface, index: job.index });
  }

  message(m) {
    if (m.stray) this.stray = m.stray;
    if (!this.current || m.id !== this.current.id) return;
    if (m.started) {
      this.current.what = m.started;
      return;
    }
    this.finish({ outcome: m.outcome, what: m.what, message: m.message });
  }

  finish(report) {
    clearTimeout(this.timer);
    const job = this.current;
    this.current = null;
    this.previous = job;
    this.runs++;
    this.onDone(this, job, { ms: performance.now() - job.t0, ...report });
  }

  hang() {
    const job = this.current;
    this.child.removeAllListeners('exit');
    this.child.kill('SIGKILL');
    this.finish({ outcome: 'hang', what: job.what, message: `no result within ${this.timeoutMs} ms` });
  }

  exited(code, signal) {
    if (!this.current) return;
    const cause = this.stray ?? this.stderr.trim().split('\n').slice(-6).join(' | ');
    const after = this.previous ? ` (after ${this.previous.surface}:${this.previous.index})` : '';
    this.finish({
      outcome: 'abort',
      what: this.current.what,
      message: `worker died (${signal ?? `exit ${code}`})${after}: ${cause}`,
    });
  }

  stop() {
    this.child.removeAllListeners('exit');
    this.child.kill('SIGKILL');
  }
}

function table(stats, seconds) {
  const header = ['surface', 'cases', ...OUTCOMES, 'ms/case'];
  const rows = Object.entries(stats).map(([s, t]) => [
    s,
    t.cases,
    ...OUTCOMES.map((o) => t[o]),
    t.cases ? (t.ms / t.cases).toFixed(1) : '-',
  ]);
  const total = ['total', ...header.slice(1, -1).map((h) => rows.reduce((sum, r) => sum + r[header.indexOf(h)], 0))];
  total.push(`${seconds.toFixed(0)} s`);
  const all = [header, ...rows, total];
  const width = header.map((_, k) => Math.max(...all.map((r) => String(r[k]).length)));
  const line = (r) => r.map((v, k) => (k === 0 ? String(v).padEnd(width[k]) : String(v).padStart(width[k]))).join('  ');
  return [line(header), ...rows.map(line), line(total)].join('\n');
}

async function fuzz() {
  const total = Number(options.cases ?? (options.quick ? 2000 : 12000));
  const jobs = Math.max(1, Number(options.jobs));
  const timeoutMs = Number(options.timeout);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-fuzz-'));
  const t0 = performance.now();
  const corpus = makeCorpus(work);
  const queue = schedule(total).map((job, id) => ({ ...job, id }));
  const stats = Object.fromEntries(
    surfaces.map((s) => [s, { cases: 0, ms: 0, ...Object.fromEntries(OUTCOMES.map((o) => [o, 0])) }]),
  );
  const findings = [];
  process.stdout.write(`fuzz: ${queue.length} cases, seed ${seed}, ${jobs} workers, ${timeoutMs} ms per case\n`);
  let done = 0;
  let workers = [];
  await new Promise((resolve) => {
    const next = async (worker) => {
      if (worker.runs >= RECYCLE_AFTER || worker.child.exitCode !== null || worker.child.signalCode !== null) {
        worker.stop();
        await worker.start();
      }
      const job = queue.shift();
      if (job) worker.run(job);
      else if (workers.every((w) => !w.current)) resolve();
    };
    const onDone = (worker, job, report) => {
      const s = stats[job.surface];
      s.cases++;
      s.ms += report.ms;
      s[report.outcome]++;
      if (report.outcome !== 'ok' && report.outcome !== 'clean')
        findings.push({ surface: job.surface, index: job.index, ...report });
      if (++done % 500 === 0)
        process.stdout.write(`fuzz: ${done} cases, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
      if (report.outcome === 'abort' || report.outcome === 'hang') worker.start().then(() => next(worker));
      else next(worker);
    };
    workers = Array.from({ length: jobs }, (_, k) => new Worker(k, corpus, work, timeoutMs, onDone));
    for (const w of workers) w.start().then(() => next(w));
  });
  for (const w of workers) w.stop();
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(`\n${table(stats, seconds)}\n`);
  printFindings(findings);
  const count = (o) => findings.filter((f) => f.outcome === o).length;
  const summary = {
    seed,
    cases: done,
    seconds: Math.round(seconds),
    aborts: count('abort'),
    hangs: count('hang'),
    unclear: count('unclear'),
    harness: count('harness'),
    surfaces: Object.fromEntries(Object.entries(stats).map(([s, t]) => [s, { ...t, ms: Math.round(t.ms) }])),
  };
  if (options.report) fs.writeFileSync(options.report, `${JSON.stringify({ summary, findings }, null, 1)}\n`);
  process.stdout.write(`FUZZ_SUMMARY ${JSON.stringify(summary)}\n`);
  fs.rmSync(work, { recursive: true, force: true });
  const failed = failOn.filter((o) => count(o) > 0);
  if (failed.length > 0) process.stdout.write(`fuzz: FAILED (${failed.map((o) => `${count(o)} ${o}`).join(', ')})\n`);
  process.exitCode = failed.length > 0 ? 1 : 0;
  process.exit();
}

function printFindings(findings) {
  const groups = new Map();
  for (const f of findings) {
    const key = `${f.surface} ${f.outcome}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(f);
  }
  for (const [key, list] of groups) {
    // Cases whose messages differ only in paths and numbers are one kind of problem.
    const kinds = new Map();
    for (const f of list) {
      const kind = String(f.message ?? '')
        .replace(/\/[^\s'":,)]+/g, 'PATH')
        .replace(/\d+/g, 'N')
        .slice(0, 120);
      if (!kinds.has(kind)) kinds.set(kind, []);
      kinds.get(kind).push(f);
    }
    process.stdout.write(`\n${key}: ${list.length} case(s) of ${kinds.size} kind(s)\n`);
    for (const cases of [...kinds.values()].slice(0, EXAMPLES)) {
      const f = cases[0];
      const message = String(f.message ?? '')
        .split('\n')[0]
        .slice(0, 300);
      process.stdout.write(
        `  ${cases.length}x, e.g. --repro ${f.surface}:${f.index}: ${f.what.slice(0, 200)}\n    => ${message}\n`,
      );
    }
  }
}

await (options.repro ? repro(options.repro) : fuzz());
