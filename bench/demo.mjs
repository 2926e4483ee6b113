// The demo (examples/demo/run.mjs) as a benchmark: both alignment stages from the shipped flawed
// base model, timed, with the held-out gains each buys. Takes run.mjs's flags (--mpo-steps,
// --grpo-steps, --heldout-per-type, --seed, --out; default out: a temporary folder).
//
//   node bench/demo.mjs [run.mjs flags]
//
// Prints one row per stage (seconds, steps, flawed colours' accuracy before -> after, the largest
// drop of another question type, held-out preference accuracy after), the load average around the
// run (the machine may be shared), then the JSON line {"bench":"demo", ...} as the last line.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { demoOptions, runDemo } from '../examples/demo/run.mjs';

const argv = process.argv.slice(2);
const tmp = argv.includes('--out') ? null : mkdtempSync(join(os.tmpdir(), 'vlalign-bench-demo-'));
const options = demoOptions(tmp === null ? argv : [...argv, '--out', tmp]);
const loadBefore = os.loadavg()[0];
try {
  const summary = await runDemo(options);
  const loadAfter = os.loadavg()[0];
  const points = (x) => Math.round(x * 1000) / 10;
  const stages = summary.stages.map((stage) => {
    const drops = summary.questionTypes.map((t) => stage.after.byType[t] - stage.before.byType[t]);
    return {
      name: stage.name,
      seconds: Math.round(stage.seconds * 10) / 10,
      steps: stage.steps,
      flawedBefore: stage.before.flawed,
      flawedAfter: stage.after.flawed,
      flawedGainPoints: points(stage.after.flawed - stage.before.flawed),
      worstTypeChangePoints: points(Math.min(...drops)),
      preferenceAfter: stage.after.preference,
    };
  });
  const pad = (s, n) => String(s).padStart(n);
  console.log(`\nstage  seconds  steps  flawed before -> after  gain pts  worst type pts  preference`);
  for (const s of stages) {
    console.log(
      `${s.name.padEnd(5)}${pad(s.seconds.toFixed(1), 9)}${pad(s.steps, 7)}${pad(s.flawedBefore.toFixed(2), 15)} -> ${s.flawedAfter.toFixed(2)}` +
        `${pad(s.flawedGainPoints.toFixed(1), 10)}${pad(s.worstTypeChangePoints.toFixed(1), 16)}${pad(s.preferenceAfter.toFixed(2), 12)}`,
    );
  }
  console.log(
    `total ${summary.totalSeconds.toFixed(1)} s; load average ${loadBefore.toFixed(2)} -> ${loadAfter.toFixed(2)} on ${os.availableParallelism()} cores`,
  );
  const line = {
    bench: 'demo',
    seed: summary.seed,
    totalSeconds: Math.round(summary.totalSeconds * 10) / 10,
    cores: os.availableParallelism(),
    loadAverage: [loadBefore, loadAfter].map((l) => Math.round(l * 100) / 100),
    stages,
  };
  console.log(JSON.stringify(line));
} finally {
  if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
}
