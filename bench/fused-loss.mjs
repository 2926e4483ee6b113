// The fused MPO loss against materialised logits: vlalign's fused chunked kernels, vlalign's eager
// path, and Python PyTorch running TRL's eager formulation, on one preference batch.
//
//   node bench/fused-loss.mjs [--quick] [--threads 2] [--rounds 2] [--reps 5] [--toy-reps 10]
//                             [--sweep 256,512,1024,2048] [--sweep-rounds 1] [--chunk 256]
//                             [--vocab 32000] [--pairs 8] [--tokens 128] [--hidden 896] [--toy-hidden 64]
//                             [--grad-filter auto|<number>]   (default: the library's)
//                             [--logit-scale 1]  logits' standard deviation: 1 is a flat softmax (a
//                             freshly initialised head); ~16 a peaked one, as a trained model's
//
// Workload: P pairs (2P rows of T completion tokens, all labels valid: N = 2PT tokens), hidden
// states [2P, T, H] and an LM head W [V, H] in float32, precomputed reference log-probs [P];
// loss = TRL's MPO mix 0.8 sigmoid + 0.2 bco_pair + 1.0 sft (beta 0.1); one step is forward +
// backward to hidden and W. Every measurement runs in a fresh child process (this script with
// --child for vlalign, bench/peers/fused_loss.py for PyTorch), which builds the inputs from the
// same seed (bit-identical on both sides: same libtorch generator), resets the peak-RSS counter
// (/proc/self/clear_refs), reads VmRSS, runs one step (also the warm-up), reads VmHWM
// (extra memory = VmHWM - that VmRSS), then times --reps steps. Rounds alternate the order of
// the variants; times are medians of the reps pooled over rounds, memory the largest extra seen.
// Prints a table, then one JSON line, last on stdout.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { losses, torch } from 'vlalign';
import { native } from 'vlalign/internal';
import {
  intFlag,
  median,
  parseFlags,
  printJsonLine,
  runPythonPeer,
  runNodeScript,
  sig,
  table,
  procStatus,
  resetPeak,
  secondsSince,
} from './lib/report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const flags = parseFlags();

const seconds = secondsSince;

// ---- child: one vlalign variant, one shape ----------------------------------------------------------

function runChild() {
  const variant = flags.get('child'); // 'fused' | 'eager'
  if (variant !== 'fused' && variant !== 'eager') throw new Error(`--child expects fused or eager, got ${variant}`);
  const H = intFlag(flags, 'hidden', 896);
  const V = intFlag(flags, 'vocab', 32000);
  const P = intFlag(flags, 'pairs', 8);
  const T = intFlag(flags, 'tokens', 128);
  const reps = intFlag(flags, 'reps', 5);
  const chunkSize = intFlag(flags, 'chunk', 256);
  torch.setNumThreads(intFlag(flags, 'threads', 2));
  torch.manualSeed(Number(flags.get('seed') ?? 0));

  // Inputs, in the same order and with the same in-place scaling as bench/peers/fused_loss.py.
  const hidden = torch.randn([2 * P, T, H], { dtype: 'float32' });
  const weight = torch.randn([V, H], { dtype: 'float32' });
  weight.mul_(Number(flags.get('logit-scale') ?? 1) / Math.sqrt(H));
  const labels = torch.randint(0, V, [2 * P, T]);
  const refChosenLogps = torch
    .randn([P], { dtype: 'float32' })
    .mul_(10)
    .sub_(T * Math.log(V));
  const refRejectedLogps = torch
    .randn([P], { dtype: 'float32' })
    .mul_(10)
    .sub_(T * Math.log(V));
  hidden.requiresGrad_(true);
  weight.requiresGrad_(true);
  const inputs = torch.tidy(() => ({
    hiddenSum: hidden.sum().item(),
    weightSum: weight.sum().item(),
    labelSum: Number(labels.sum().item()),
    refSum: refChosenLogps.sum().add(refRejectedLogps.sum()).item(),
  }));

  // --grad-filter (a number or 'auto') is passed on only when given: the library default otherwise.
  const filter = flags.get('grad-filter');
  const gradFilter = filter === undefined ? {} : { gradFilter: filter === 'auto' ? 'auto' : Number(filter) };
  // Current TRL's mix (no running-mean shift), as the peer computes it.
  const loss = new losses.PreferenceLoss({
    ...losses.MPO,
    trlVersion: 'current',
    beta: 0.1,
    implementation: variant,
    chunkSize,
    ...gradFilter,
  });
  const batch = { hidden, targets: labels, refChosenLogps, refRejectedLogps };
  const head = { weight };
  const step = () => {
    hidden.grad = null;
    weight.grad = null;
    const result = loss.compute(batch, head);
    result.loss.backward();
    const value = result.loss.item();
    result.loss.dispose();
    return value;
  };

  const hwmReset = resetPeak();
  const before = procStatus();
  let start = process.hrtime.bigint();
  const lossValue = step();
  const cold = seconds(start);
  const after = procStatus();

  const grads = torch.tidy(() => ({
    gradWAbsSum: weight.grad.abs().sum().item(),
    gradWSum: weight.grad.sum().item(),
    gradXAbsSum: hidden.grad.abs().sum().item(),
  }));

  const times = [];
  for (let k = 0; k < reps; k++) {
    start = process.hrtime.bigint();
    step();
    times.push(seconds(start));
  }

  // Steady state: the same probe around one more step, grads released first (as the step does).
  hidden.grad = null;
  weight.grad = null;
  resetPeak();
  const warmBefore = procStatus();
  step();
  const warmAfter = procStatus();

  printJsonLine({
    variant: `vlalign-${variant}`,
    torchVersion: torch.buildInfo().torchVersion,
    sourceHash: torch.buildInfo().sourceHash,
    rowKernelIsa: native.rowKernelIsa(),
    threads: torch.getNumThreads(),
    hidden: H,
    vocab: V,
    tokens: 2 * P * T,
    chunkSize: variant === 'fused' ? chunkSize : null,
    gradFilter: loss.config.gradFilter ?? null,
    hwmReset,
    baselineRssMb: before.VmRSS,
    hwmBeforeMb: before.VmHWM,
    peakMb: after.VmHWM,
    extraMb: after.VmHWM - before.VmRSS,
    warmBaselineRssMb: warmBefore.VmRSS,
    warmExtraMb: warmAfter.VmHWM - warmBefore.VmRSS,
    coldStepS: cold,
    stepS: median(times),
    stepSReps: times,
    loss: lossValue,
    ...grads,
    inputs,
  });
}

// ---- parent: every variant in its own process -------------------------------------------------------

const runNodeChild = (args) => runNodeScript(self, args);

function runParent() {
  const quick = flags.get('quick') === 'true';
  const threads = intFlag(flags, 'threads', 2);
  const rounds = intFlag(flags, 'rounds', quick ? 1 : 2);
  const reps = intFlag(flags, 'reps', 5);
  const toyReps = intFlag(flags, 'toy-reps', quick ? 5 : 10);
  const sweepRounds = intFlag(flags, 'sweep-rounds', 1);
  const chunk = intFlag(flags, 'chunk', 256);
  const V = intFlag(flags, 'vocab', 32000);
  const P = intFlag(flags, 'pairs', 8);
  const T = intFlag(flags, 'tokens', 128);
  const bigH = intFlag(flags, 'hidden', 896);
  const toyH = intFlag(flags, 'toy-hidden', 64);
  const sweep = String(flags.get('sweep') ?? '256,512,1024,2048')
    .split(',')
    .map(Number);
  if (reps < 5 || toyReps < 5) throw new Error('--reps and --toy-reps must be at least 5');
  if (sweep.some((c) => !Number.isInteger(c) || c <= 0))
    throw new Error(`--sweep expects positive integers, got ${flags.get('sweep')}`);
  const N = 2 * P * T;
  const logitScale = Number(flags.get('logit-scale') ?? 1);
  const common = ['--vocab', V, '--pairs', P, '--tokens', T, '--threads', threads, '--logit-scale', logitScale].map(
    String,
  );

  const measure = (kind, hidden, chunkSize, repCount) => {
    const args = [...common, '--hidden', String(hidden), '--reps', String(repCount)];
    if (kind === 'python') return runPythonPeer(path.join(here, 'peers/fused_loss.py'), args);
    const filter = flags.has('grad-filter') ? ['--grad-filter', flags.get('grad-filter')] : [];
    return runNodeChild(['--child', kind, ...args, '--chunk', String(chunkSize), ...filter]);
  };
  const log = (msg) => process.stderr.write(`${msg}\n`);
  const started = process.hrtime.bigint();
  const loadBefore = os.loadavg()[0];

  // results[key] = list of per-process results; key = kind@hidden[/chunk]
  const results = new Map();
  const record = (key, r) => {
    if (!results.has(key)) results.set(key, []);
    results.get(key).push(r);
    log(
      `  ${key.padEnd(22)} step ${r.stepS.toFixed(3)} s (cold ${r.coldStepS.toFixed(2)} s), extra ${r.extraMb.toFixed(0)} MB, ` +
        `loss ${r.loss.toPrecision(8)}  [${seconds(started).toFixed(0)} s]`,
    );
  };
  const kinds = ['fused', 'eager', 'python'];
  const keyOf = (kind, hidden, chunkSize) => (kind === 'fused' ? `fused@${hidden}/${chunkSize}` : `${kind}@${hidden}`);
  for (const [hidden, repCount] of [
    [bigH, reps],
    [toyH, toyReps],
  ]) {
    for (let round = 0; round < rounds; round++) {
      log(`H=${hidden} round ${round + 1}/${rounds}`);
      const order = round % 2 === 0 ? kinds : [...kinds].reverse();
      for (const kind of order) record(keyOf(kind, hidden, chunk), measure(kind, hidden, chunk, repCount));
    }
  }
  for (let round = 0; round < sweepRounds; round++) {
    log(`chunk sweep at H=${bigH} round ${round + 1}/${sweepRounds}`);
    const order = round % 2 === 0 ? sweep : [...sweep].reverse();
    for (const c of order) {
      if (c === chunk) continue; // measured by the main rounds
      record(keyOf('fused', bigH, c), measure('fused', bigH, c, reps));
    }
  }

  // ---- summarise ----
  const summary = (key) => {
    const rs = results.get(key);
    const reps = rs.flatMap((r) => r.stepSReps);
    return {
      ...rs[0],
      stepS: median(reps),
      stepSReps: reps,
      extraMb: Math.max(...rs.map((r) => r.extraMb)),
      extraMbRounds: rs.map((r) => r.extraMb),
      warmExtraMb: Math.max(...rs.map((r) => r.warmExtraMb)),
      baselineRssMb: median(rs.map((r) => r.baselineRssMb)),
      coldStepS: median(rs.map((r) => r.coldStepS)),
      processes: rs.length,
    };
  };
  const byShape = {};
  for (const hidden of [bigH, toyH]) {
    byShape[hidden] = {
      fused: summary(keyOf('fused', hidden, chunk)),
      eager: summary(keyOf('eager', hidden)),
      python: summary(keyOf('python', hidden)),
    };
  }
  const sweepRows = sweep.map((c) => ({ chunkSize: c, ...summary(keyOf('fused', bigH, c)) }));

  // Agreement with the PyTorch peer: identical inputs, loss, gradient checksums.
  const rel = (a, b) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
  const checks = [];
  const checkAgainst = (label, r, py) => {
    const inputsEqual = ['hiddenSum', 'weightSum', 'labelSum', 'refSum'].every(
      (k) => rel(r.inputs[k], py.inputs[k]) < 1e-6,
    );
    const c = {
      label,
      inputsEqual,
      lossRel: rel(r.loss, py.loss),
      gradWRel: rel(r.gradWAbsSum, py.gradWAbsSum),
      gradXRel: rel(r.gradXAbsSum, py.gradXAbsSum),
    };
    c.ok = inputsEqual && c.lossRel < 1e-4 && c.gradWRel < 1e-3 && c.gradXRel < 1e-3;
    checks.push(c);
  };
  for (const hidden of [bigH, toyH]) {
    const s = byShape[hidden];
    for (const key of results.keys()) {
      if (!key.endsWith(`@${hidden}`) && !key.includes(`@${hidden}/`)) continue;
      if (key.startsWith('python')) continue;
      for (const r of results.get(key)) checkAgainst(`${key}`, r, s.python);
    }
  }
  const agree = checks.every((c) => c.ok);

  const big = byShape[bigH];
  const toy = byShape[toyH];
  const timeRatio = big.fused.stepS / big.python.stepS;
  const memRatio = big.fused.extraMb / big.python.extraMb;
  const toySpeedup = toy.python.stepS / toy.fused.stepS;
  const eagerTimeRatio = big.eager.stepS / big.python.stepS;
  const eagerMemRatio = big.eager.extraMb / big.python.extraMb;
  const toyMemRatio = toy.fused.extraMb / toy.python.extraMb;
  const targets = { memRatio: 0.2, timeRatio: 1.0, timeRatioAim: 0.7, toySpeedup: 2 };
  const met = {
    memRatio: memRatio <= targets.memRatio,
    timeRatio: timeRatio <= targets.timeRatio,
    toySpeedup: toySpeedup >= targets.toySpeedup,
  };

  // ---- report ----
  const envVars = Object.entries(process.env)
    .filter(([k]) => /^(OPENBLAS_|OMP_|MKL_|GOMP_|KMP_|VLALIGN_CPU_CAPABILITY|ATEN_CPU_CAPABILITY)/.test(k))
    .map(([k, v]) => `${k}=${v}`);
  console.log(
    `fused-loss: ${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}, node ${process.version}, ` +
      `vlalign ${big.fused.sourceHash} libtorch ${big.fused.torchVersion} (row kernels ${big.fused.rowKernelIsa}, gradFilter ${big.fused.gradFilter ?? 'n/a'}), ` +
      `PyTorch ${big.python.torchVersion}, ` +
      `${threads} intra-op threads` +
      (envVars.length ? `, ${envVars.join(' ')}` : ''),
  );
  console.log(
    `MPO (0.8 sigmoid + 0.2 bco_pair + 1.0 sft, beta 0.1), forward + backward to hidden and W, float32; ` +
      `N = ${N} tokens (${P} pairs x 2 rows x ${T}), V = ${V}, H = ${bigH} and ${toyH}`,
  );
  console.log(
    `time: median of ${rounds} process(es) x reps (${reps} at H=${bigH}, ${toyReps} at H=${toyH}) after a warm-up step; ` +
      `extra MB: VmHWM during the first step - VmRSS before it (largest over processes); warm MB: the same around a later step`,
  );
  const unreset = [...results.values()].flat().filter((r) => !r.hwmReset || r.hwmBeforeMb > r.baselineRssMb + 1);
  if (unreset.length > 0)
    console.log(
      `warning: ${unreset.length} process(es) could not reset VmHWM; their extra MB may include earlier peaks`,
    );
  console.log(
    `load average (1 min) ${loadBefore.toFixed(2)} at start (above ~0.5: other work is sharing the ` +
      `${os.availableParallelism()} cores and the times are unreliable), ${os.loadavg()[0].toFixed(2)} at end (includes this ` +
      `benchmark's own ${threads} threads)`,
  );
  console.log(
    `PyTorch peer: TRL eager formulation, logits [${2 * P}, ${T}, V] materialised, sft from ${big.python.sftFrom}`,
  );
  const range = (values) => `${Math.min(...values).toFixed(2)}..${Math.max(...values).toFixed(2)}`;
  console.log(
    'rep min..max (s): ' +
      [bigH, toyH]
        .map(
          (h) =>
            `H=${h}: fused ${range(byShape[h].fused.stepSReps)}, eager ${range(byShape[h].eager.stepSReps)}, python ${range(byShape[h].python.stepSReps)}`,
        )
        .join('; '),
  );
  console.log();

  const row = (name, h, r, py) => [
    name,
    `H=${h}`,
    String(r.chunkSize ?? '-'),
    r.stepS,
    r.extraMb,
    r.stepS / py.stepS,
    r.extraMb / py.extraMb,
    r.warmExtraMb,
    r.loss.toPrecision(8),
    r.gradWAbsSum.toPrecision(7),
  ];
  const columns = [
    'variant',
    'shape',
    'chunk',
    'time s',
    'extra MB',
    'time/py',
    'mem/py',
    'warm MB',
    'loss',
    'sum|dW|',
  ];
  const rows = [];
  for (const h of [bigH, toyH]) {
    const s = byShape[h];
    rows.push(row('vlalign fused', h, s.fused, s.python));
    rows.push(row('vlalign eager', h, s.eager, s.python));
    rows.push(row('PyTorch eager (TRL)', h, s.python, s.python));
  }
  console.log(table(columns, rows));
  console.log();
  console.log(`chunk sweep, vlalign fused at H=${bigH}:`);
  console.log(
    table(
      ['chunk', 'pairs/chunk', 'time s', 'extra MB', 'time/py', 'mem/py', 'warm MB', 'rep min..max', 'loss'],
      sweepRows.map((r) => [
        String(r.chunkSize),
        String(Math.max(1, Math.floor(r.chunkSize / (2 * T)))),
        r.stepS,
        r.extraMb,
        r.stepS / big.python.stepS,
        r.extraMb / big.python.extraMb,
        r.warmExtraMb,
        range(r.stepSReps),
        r.loss.toPrecision(8),
      ]),
    ),
  );
  console.log();
  console.log('agreement with PyTorch (same inputs; loss rel < 1e-4, sum|dW| and sum|dX| rel < 1e-3):');
  const worst = (list) => list.reduce((a, b) => Math.max(a, b), 0);
  const grouped = new Map();
  for (const c of checks) {
    if (!grouped.has(c.label)) grouped.set(c.label, []);
    grouped.get(c.label).push(c);
  }
  console.log(
    table(
      ['variant', 'inputs equal', 'loss rel', 'dW rel', 'dX rel', ''],
      [...grouped].map(([label, cs]) => [
        label,
        String(cs.every((c) => c.inputsEqual)),
        worst(cs.map((c) => c.lossRel)).toExponential(2),
        worst(cs.map((c) => c.gradWRel)).toExponential(2),
        worst(cs.map((c) => c.gradXRel)).toExponential(2),
        cs.every((c) => c.ok) ? 'ok' : 'MISMATCH',
      ]),
    ),
  );
  console.log();
  const verdict = (ok) => (ok ? 'ok' : 'MISS');
  console.log('targets:');
  console.log(
    table(
      ['metric', 'value', 'target', ''],
      [
        [`memRatio (fused / PyTorch extra MB, H=${bigH})`, memRatio, '<= 0.2', verdict(met.memRatio)],
        [`timeRatio (fused / PyTorch time, H=${bigH})`, timeRatio, '<= 1.0 (aim 0.7)', verdict(met.timeRatio)],
        [`toySpeedup (PyTorch / fused time, H=${toyH})`, toySpeedup, '>= 2', verdict(met.toySpeedup)],
        [`eagerTimeRatio (vlalign eager / PyTorch, H=${bigH})`, eagerTimeRatio, '-', ''],
      ],
    ),
  );
  console.log(`(total ${seconds(started).toFixed(0)} s)`);

  const brief = (r) => ({
    variant: r.variant,
    hidden: r.hidden,
    chunkSize: r.chunkSize ?? null,
    stepS: sig(r.stepS),
    extraMb: sig(r.extraMb),
    warmExtraMb: sig(r.warmExtraMb),
    baselineRssMb: sig(r.baselineRssMb),
    coldStepS: sig(r.coldStepS),
    loss: r.loss,
    gradWAbsSum: r.gradWAbsSum,
    gradXAbsSum: r.gradXAbsSum,
    processes: r.processes,
  });
  printJsonLine({
    bench: 'fused-loss',
    threads,
    tokens: N,
    vocab: V,
    hidden: bigH,
    toyHidden: toyH,
    chunkSize: chunk,
    rowKernelIsa: big.fused.rowKernelIsa,
    gradFilter: big.fused.gradFilter ?? null,
    timeRatio: sig(timeRatio),
    memRatio: sig(memRatio),
    toySpeedup: sig(toySpeedup),
    eagerTimeRatio: sig(eagerTimeRatio),
    eagerMemRatio: sig(eagerMemRatio),
    toyMemRatio: sig(toyMemRatio),
    warmMemRatio: sig(big.fused.warmExtraMb / big.python.warmExtraMb),
    sourceHash: big.fused.sourceHash,
    loadAvg: [sig(loadBefore, 3), sig(os.loadavg()[0], 3)],
    targets,
    met,
    agree,
    variants: [bigH, toyH].flatMap((h) => ['fused', 'eager', 'python'].map((k) => brief(byShape[h][k]))),
    sweep: sweepRows.map((r) => ({
      chunkSize: r.chunkSize,
      stepS: sig(r.stepS),
      extraMb: sig(r.extraMb),
      warmExtraMb: sig(r.warmExtraMb),
      timeRatio: sig(r.stepS / big.python.stepS),
      memRatio: sig(r.extraMb / big.python.extraMb),
    })),
  });
}

if (flags.has('child')) runChild();
else runParent();
