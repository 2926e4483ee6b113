// Soak: does memory stay flat over long runs? RSS and live native tensors (torch.memory()) over three
// phases, each in a fresh process (issue #17):
//   ops       1,000,000 small ops (8-element adds disposed at once, and tidy blocks of
//             add / mul / matmul / softmax / cat / sum / indexSelect on [8, 8] tensors)
//   generate  1,000 generate calls on the tiny Qwen2.5-VL (scripts/make-recipe-data.mjs): the
//             processor's batch of two image prompts (left padded), then 16 sampled tokens each
//   train     1,000 optimizer steps of the tiny SFT recipe (examples/recipes/sft.yaml as written,
//             but --max_steps 1000, no checkpoints, no TensorBoard) through the CLI's loadRecipe +
//             buildTrainer + Trainer.train
//
//   node bench/soak.mjs [--quick] [--phase ops,generate,train] [--threads 1] [--samples 20]
//                       [--ops 1000000] [--generations 1000] [--steps 1000] [--keep DIR] [--gc]
// --gc runs a full V8 GC before each reading, so V8 used is the live JS heap.
//
// Each phase's first 10% is its warm-up (allocator pools, V8 code, optimizer state, caches); then
// --samples readings of VmRSS, V8's heapUsed and torch.memory() are taken at even intervals.
// growth = (RSS at the end - RSS after warm-up) / RSS after warm-up; peak growth uses the largest
// reading instead of the last; trend is the least-squares line through the readings after warm-up,
// its rise over the phase / RSS after warm-up (a leak shows in all three; the allocator's sawtooth,
// memory kept and later handed back, moves growth and peak but hardly the trend). Target: growth < 5% per phase, and the live tensor count at the end
// equal to the count after warm-up. --quick runs a tenth of each phase (100,000 ops, 100 calls,
// 100 steps). Prints a table, then one JSON line, last on stdout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { generation, models, processing, torch } from 'vlalign';
import { loadRecipe } from '../dist/cli/recipe.js';
import { buildTrainer } from '../dist/cli/build.js';
import { intFlag, parseFlags, printJsonLine, procStatus, runNodeScript, sig, table } from './lib/report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const flags = parseFlags();
const quick = flags.has('quick');
const PHASES = ['ops', 'generate', 'train'];
const TARGET_GROWTH = 0.05;
const WARMUP_FRACTION = 0.1;
const MAX_NEW_TOKENS = 16;
const TIDY_OPS = 1000; // ops per tidy block in the ops phase

const counts = {
  ops: intFlag(flags, 'ops', quick ? 100_000 : 1_000_000),
  generate: intFlag(flags, 'generations', quick ? 100 : 1000),
  train: intFlag(flags, 'steps', quick ? 100 : 1000),
};
const samples = intFlag(flags, 'samples', 20);
const threads = intFlag(flags, 'threads', 1);

/** One reading of this process's memory. */
function reading(done) {
  if (flags.has('gc')) globalThis.gc(); // --gc: the child runs with --expose-gc
  const live = torch.memory();
  const v8 = process.memoryUsage();
  return {
    done,
    rssMb: procStatus().VmRSS,
    heapMb: v8.heapUsed / 2 ** 20,
    heapTotalMb: v8.heapTotal / 2 ** 20,
    externalMb: v8.external / 2 ** 20,
    tensors: live.numTensors,
    tensorMb: live.numBytes / 2 ** 20,
  };
}

/**
 * Calls `unit()` (which does some amount of the phase's work and returns how much) until `total`
 * is done; one reading at the end of warm-up, then `samples` more at even intervals.
 */
async function soak(total, unit) {
  const warmup = Math.max(1, Math.round(total * WARMUP_FRACTION));
  const marks = [warmup, ...Array.from({ length: samples }, (_, k) => warmup + ((total - warmup) * (k + 1)) / samples)];
  const readings = [];
  const started = process.hrtime.bigint();
  let done = 0;
  while (done < total) {
    done += await unit(done);
    while (readings.length < marks.length && done >= marks[readings.length]) readings.push(reading(done));
  }
  return { readings, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

// ---- phases (each the body of a child process) ----------------------------------------------------

async function opsPhase(total) {
  const a = torch.rand([8]);
  const b = torch.rand([8]);
  const m = torch.rand([8, 8]);
  const index = torch.tensor([0, 2, 4, 6], { dtype: 'int64' });
  // Half the ops one at a time, disposed at once; half in tidy blocks, freed when the block ends.
  const disposed = () => {
    for (let k = 0; k < TIDY_OPS; k++) a.add(b).dispose();
    return TIDY_OPS;
  };
  const tidied = () => {
    torch.tidy(() => {
      for (let k = 0; k < TIDY_OPS / 10; k++) {
        const x = m.add(m).mul(m).matmul(m).softmax(-1);
        torch.cat([x, m], 0).sum().add(x.indexSelect(0, index).sum()).add(a.sum());
      }
    });
    return TIDY_OPS;
  };
  return soak(total, (done) => (done % (2 * TIDY_OPS) === 0 ? disposed() : tidied()));
}

async function generatePhase(total, dataDir) {
  const checkpoint = path.join(dataDir, 'qwen2_5_vl');
  const processor = await processing.fromPretrained(checkpoint, { paddingSide: 'left' });
  const model = await models.fromPretrained(checkpoint);
  model.eval();
  const images = path.join(dataDir, 'sft', 'images');
  const pictures = fs.readdirSync(images).sort();
  const prompt = (k) => ({
    messages: [
      {
        role: 'user',
        content: [{ type: 'image' }, { type: 'text', text: k % 2 ? 'What colour is it?' : 'Describe the picture.' }],
      },
    ],
    images: [path.join(images, pictures[k % pictures.length])],
  });
  return soak(total, async (done) => {
    const batch = await processor.process([prompt(done), prompt(done + 1)]);
    try {
      generation.generate(
        model,
        {
          inputIds: batch.inputIds,
          attentionMask: batch.attentionMask,
          pixelValues: batch.pixelValues,
          imageGridThw: batch.imageGridThw,
        },
        { maxNewTokens: MAX_NEW_TOKENS, temperature: 1, seed: done },
      );
    } finally {
      for (const t of Object.values(batch)) if (t instanceof torch.Tensor) t.dispose();
    }
    return 1;
  });
}

async function trainPhase(total, dataDir, outDir) {
  const recipeFile = path.join(dataDir, '..', 'sft.yaml');
  fs.copyFileSync(path.join(here, '..', 'examples', 'recipes', 'sft.yaml'), recipeFile);
  const overrides = ['--max_steps', String(total), '--save_strategy', 'no', '--report_to', 'none'];
  const recipe = loadRecipe(recipeFile, [...overrides, '--logging_steps', '50', '--output_dir', outDir]);
  const trainer = await buildTrainer(recipe);
  // A reading after each optimizer step: the trainer's loop calls optimizer.step() once per step.
  const { optimizer } = trainer.parts;
  const step = optimizer.step.bind(optimizer);
  let steps = 0;
  let resume = () => {};
  optimizer.step = () => {
    step();
    steps++;
    resume();
  };
  // soak() drives the work one step at a time: each unit waits for the trainer's next step.
  const training = trainer.train();
  training.then(
    () => resume(),
    () => resume(),
  );
  const result = await soak(total, async () => {
    const before = steps;
    await new Promise((r) => (resume = r));
    resume = () => {};
    if (steps > before) return steps - before;
    await training; // it ended: throws its error, if any
    throw new Error(`training ended after ${steps} of ${total} steps`);
  });
  await training;
  return result;
}

async function child(phase, dataDir, outDir) {
  torch.setNumThreads(threads);
  torch.manualSeed(0);
  const total = counts[phase];
  const run =
    phase === 'ops'
      ? opsPhase(total)
      : phase === 'generate'
        ? generatePhase(total, dataDir)
        : trainPhase(total, dataDir, outDir);
  const { readings, seconds } = await run;
  printJsonLine({ phase, total, seconds, readings });
}

// ---- parent: data, one child per phase, the report -------------------------------------------------

/** Least-squares RSS slope over the readings after warm-up, times their span: growth a leak would show. */
function trendMb(readings) {
  const n = readings.length;
  if (n < 2) return 0;
  const mx = readings.reduce((a, r) => a + r.done, 0) / n;
  const my = readings.reduce((a, r) => a + r.rssMb, 0) / n;
  const sxy = readings.reduce((a, r) => a + (r.done - mx) * (r.rssMb - my), 0);
  const sxx = readings.reduce((a, r) => a + (r.done - mx) ** 2, 0);
  return (sxy / sxx) * (readings[n - 1].done - readings[0].done);
}

function summarise({ phase, total, seconds, readings }) {
  const [warm, ...rest] = readings;
  const last = rest[rest.length - 1] ?? warm;
  const peak = Math.max(...rest.map((r) => r.rssMb), warm.rssMb);
  return {
    phase,
    work: total,
    seconds: sig(seconds),
    rssWarmMb: sig(warm.rssMb),
    rssEndMb: sig(last.rssMb),
    rssPeakMb: sig(peak),
    growth: sig((last.rssMb - warm.rssMb) / warm.rssMb),
    peakGrowth: sig((peak - warm.rssMb) / warm.rssMb),
    trend: sig(trendMb(readings) / warm.rssMb),
    heapWarmMb: sig(warm.heapMb),
    heapEndMb: sig(last.heapMb),
    heapTotalWarmMb: sig(warm.heapTotalMb),
    heapTotalEndMb: sig(last.heapTotalMb),
    tensorsWarm: warm.tensors,
    tensorsEnd: last.tensors,
    tensorsMax: Math.max(...readings.map((r) => r.tensors)),
    tensorMbEnd: sig(last.tensorMb),
    pass: (last.rssMb - warm.rssMb) / warm.rssMb < TARGET_GROWTH && last.tensors === warm.tensors,
    rss: readings.map((r) => sig(r.rssMb)),
  };
}

function parent() {
  const phases = flags.has('phase') ? flags.get('phase').split(',') : PHASES;
  for (const p of phases)
    if (!PHASES.includes(p)) throw new Error(`--phase: unknown phase '${p}' (${PHASES.join(', ')})`);
  const work = flags.has('keep')
    ? path.resolve(flags.get('keep'))
    : fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-soak-'));
  const dataDir = path.join(work, '.data');
  if (!fs.existsSync(path.join(dataDir, 'qwen2_5_vl'))) {
    execFileSync(process.execPath, [path.join(here, '..', 'scripts', 'make-recipe-data.mjs'), '--out', dataDir], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  const passOn = [...flags].flatMap(([k, v]) =>
    k === 'phase' || k === 'keep' ? [] : v === 'true' ? [`--${k}`] : [`--${k}`, v],
  );
  const results = [];
  for (const phase of phases) {
    process.stderr.write(`soak: ${phase} (${counts[phase]})...\n`);
    const [first, ...rest] = flags.has('gc') ? ['--expose-gc', self] : [self];
    const out = runNodeScript(first, [
      ...rest,
      '--child',
      phase,
      '--data',
      dataDir,
      '--out',
      path.join(work, 'runs', phase),
      ...passOn,
    ]);
    results.push(summarise(out));
  }
  if (!flags.has('keep')) fs.rmSync(work, { recursive: true, force: true });
  const columns = [
    'phase',
    'work',
    's',
    'RSS warm MB',
    'RSS end MB',
    'RSS peak MB',
    'growth %',
    'peak %',
    'trend %',
    'V8 used MB',
    'V8 total MB',
    'tensors warm→end (max)',
    'pass',
  ];
  const rows = results.map((r) => [
    r.phase,
    String(r.work),
    r.seconds,
    r.rssWarmMb,
    r.rssEndMb,
    r.rssPeakMb,
    (100 * r.growth).toFixed(2),
    (100 * r.peakGrowth).toFixed(2),
    (100 * r.trend).toFixed(2),
    `${r.heapWarmMb.toFixed(1)}→${r.heapEndMb.toFixed(1)}`,
    `${r.heapTotalWarmMb.toFixed(1)}→${r.heapTotalEndMb.toFixed(1)}`,
    `${r.tensorsWarm}→${r.tensorsEnd} (${r.tensorsMax})`,
    r.pass ? 'yes' : 'NO',
  ]);
  process.stdout.write(`${table(columns, rows)}\n`);
  process.stdout.write(
    `target: RSS growth < ${100 * TARGET_GROWTH}% per phase after warm-up, live tensors back to the warm-up count\n`,
  );
  printJsonLine({
    bench: 'soak',
    quick,
    threads,
    targetGrowth: TARGET_GROWTH,
    phases: results,
    pass: results.every((r) => r.pass),
  });
}

if (flags.has('child')) await child(flags.get('child'), flags.get('data'), flags.get('out'));
else parent();
