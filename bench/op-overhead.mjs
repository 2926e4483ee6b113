// Per-op overhead of vlalign against Python PyTorch on the same libtorch and thread count.
//
//   node bench/op-overhead.mjs [--threads 2] [--rounds 4] [--reps 5] [--small-iters 200000]
//                              [--matmul-size 1024] [--matmul-iters 4] [--autograd-iters 5000]
//
// Measures, in this process and in bench/peers/op_overhead.py (run with $PYTHON, default
// /usr/bin/python3 = Debian's python3-torch, same environment): a small op (8-element float32 add)
// disposed at once and inside tidy, 1024^3 float32 matmul throughput, a tiny autograd step, and
// peak RSS. Each round times every measurement as a warm-up loop then --reps timed loops; figures
// are medians over all rounds' reps. Prints a table, then one JSON line, last on stdout.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { torch } from 'vlalign';
import { intFlag, median, parseFlags, printJsonLine, runPythonPeer, sig, table, timeReps } from './lib/report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const flags = parseFlags();
const threads = intFlag(flags, 'threads', 2);
const reps = intFlag(flags, 'reps', 5);
const smallIters = intFlag(flags, 'small-iters', 200_000);
const matmulSize = intFlag(flags, 'matmul-size', 1024);
const matmulIters = intFlag(flags, 'matmul-iters', 4);
const autogradIters = intFlag(flags, 'autograd-iters', 5_000);
const rounds = intFlag(flags, 'rounds', 4);
const TIDY_BATCH = 1000;
if (reps < 5) throw new Error('--reps must be at least 5');
if (smallIters % TIDY_BATCH !== 0) throw new Error(`--small-iters must be a multiple of ${TIDY_BATCH}`);

torch.setNumThreads(threads);
torch.manualSeed(0);

// ---- vlalign ----------------------------------------------------------------------------------

const a = torch.rand(8, { dtype: 'float32' });
const b = torch.rand(8, { dtype: 'float32' });
const A = torch.randn(matmulSize, matmulSize, { dtype: 'float32' });
const B = torch.randn(matmulSize, matmulSize, { dtype: 'float32' });
const x = torch.randn(8, 16, { dtype: 'float32', requiresGrad: true });
const w = torch.randn(16, 16, { dtype: 'float32', requiresGrad: true });
const matmulFlops = 2 * matmulSize ** 3 * matmulIters;
const perOpUs = (seconds, iters) => seconds.map((s) => (s / iters) * 1e6);

/** One round of every measurement in this process: per-rep figures, as the peer reports them. */
function measureVlalign() {
  // 1. small op, each result disposed at once.
  const small = timeReps(
    () => {
      for (let k = 0; k < smallIters; k++) {
        const c = a.add(b);
        c.dispose();
      }
    },
    { reps },
  );

  // 2. the same inside tidy scopes of 1000 ops each.
  const tidy = timeReps(
    () => {
      for (let k = 0; k < smallIters; k += TIDY_BATCH) {
        torch.tidy(() => {
          for (let j = 0; j < TIDY_BATCH; j++) a.add(b);
        });
      }
    },
    { reps },
  );

  // 4. matmul n x n x n float32.
  const matmul = timeReps(
    () => {
      for (let k = 0; k < matmulIters; k++) A.matmul(B).dispose();
    },
    { reps },
  );

  // 5. autograd step: forward, backward, grads zeroed by setting them to null; tidy frees the graph.
  const autograd = timeReps(
    () => {
      for (let k = 0; k < autogradIters; k++) {
        torch.tidy(() => {
          const loss = x.matmul(w).tanh().sum();
          loss.backward();
        });
        w.grad = null;
        x.grad = null;
      }
    },
    { reps },
  );

  return {
    smallOpUsReps: perOpUs(small, smallIters),
    smallOpTidyUsReps: perOpUs(tidy, smallIters),
    matmulGflopsReps: matmul.map((s) => matmulFlops / s / 1e9),
    autogradStepUsReps: perOpUs(autograd, autogradIters),
  };
}

// ---- PyTorch peer ---------------------------------------------------------------------------------

const peerArgs = [
  '--threads',
  String(threads),
  '--reps',
  String(reps),
  '--small-iters',
  String(smallIters),
  '--matmul-size',
  String(matmulSize),
  '--matmul-iters',
  String(matmulIters),
  '--autograd-iters',
  String(autogradIters),
];
const measurePyTorch = () => runPythonPeer(path.join(here, 'peers/op_overhead.py'), peerArgs);

// The two sides run one after the other (never competing for the cores), alternating which goes
// first, for --rounds rounds; each figure is the median of the reps pooled over the rounds, so a
// burst of load from another process hits both sides rather than one.
const KEYS = ['smallOpUsReps', 'smallOpTidyUsReps', 'matmulGflopsReps', 'autogradStepUsReps'];
const pool = (results) =>
  Object.fromEntries(KEYS.filter((k) => k in results[0]).map((k) => [k, results.flatMap((r) => r[k])]));
const jsRounds = [];
const pyRounds = [];
for (let round = 0; round < rounds; round++) {
  if (round % 2 === 0) {
    jsRounds.push(measureVlalign());
    pyRounds.push(measurePyTorch());
  } else {
    pyRounds.push(measurePyTorch());
    jsRounds.push(measureVlalign());
  }
}
for (const t of [a, b, A, B, x, w]) t.dispose();
const rssMb = process.resourceUsage().maxRSS / 1024; // KiB -> MiB, this process only (not the peer)

const js = pool(jsRounds);
js.smallOpUs = median(js.smallOpUsReps);
js.smallOpTidyUs = median(js.smallOpTidyUsReps);
js.matmulGflops = median(js.matmulGflopsReps);
js.autogradStepUs = median(js.autogradStepUsReps);
const py = pool(pyRounds);
py.smallOpUs = median(py.smallOpUsReps);
py.matmulGflops = median(py.matmulGflopsReps);
py.autogradStepUs = median(py.autogradStepUsReps);
py.rssMb = Math.max(...pyRounds.map((r) => r.rssMb));
py.torchVersion = pyRounds[0].torchVersion;
py.threads = pyRounds[0].threads;
if (py.threads !== threads) console.warn(`warning: PyTorch reports ${py.threads} threads, asked for ${threads}`);
if (torch.getNumThreads() !== threads)
  console.warn(`warning: vlalign reports ${torch.getNumThreads()} threads, asked for ${threads}`);

// ---- report -------------------------------------------------------------------------------------

const ratio = (ours, theirs) => ours / theirs;
const smallOpRatio = ratio(js.smallOpUs, py.smallOpUs);
const smallOpTidyRatio = ratio(js.smallOpTidyUs, py.smallOpUs);
const matmulRatio = ratio(js.matmulGflops, py.matmulGflops);
const autogradRatio = ratio(js.autogradStepUs, py.autogradStepUs);
const verdict = (ok) => (ok ? 'ok' : 'MISS');

const envVars = Object.entries(process.env)
  .filter(([k]) => /^(OPENBLAS_|OMP_|MKL_|GOMP_|KMP_)/.test(k))
  .map(([k, v]) => `${k}=${v}`);
const info = torch.buildInfo();
console.log(
  `op-overhead: ${os.cpus()[0]?.model ?? 'cpu'} x${os.availableParallelism()}, node ${process.version}, ` +
    `vlalign libtorch ${info.torchVersion}, PyTorch ${py.torchVersion}, ${threads} intra-op threads` +
    (envVars.length ? `, ${envVars.join(' ')}` : ''),
);
console.log(
  `median of ${rounds} rounds x ${reps} reps (each after a warm-up rep); small op ${smallIters} adds/rep, matmul ${matmulIters}x ` +
    `${matmulSize}^3/rep, autograd ${autogradIters} steps/rep`,
);
const range = (values) => `${Math.min(...values).toFixed(2)}..${Math.max(...values).toFixed(2)}`;
console.log(
  `rep min..max: small op ${range(js.smallOpUsReps)} us (PyTorch ${range(py.smallOpUsReps)}), ` +
    `in tidy ${range(js.smallOpTidyUsReps)} us`,
);
console.log(
  `              matmul ${range(js.matmulGflopsReps)} GFLOP/s (PyTorch ${range(py.matmulGflopsReps)}), ` +
    `autograd ${range(js.autogradStepUsReps)} us (PyTorch ${range(py.autogradStepUsReps)})`,
);
console.log();
console.log(
  table(
    ['metric', 'vlalign', 'PyTorch', 'ratio', 'target', ''],
    [
      [
        'small op, disposed (us/op)',
        js.smallOpUs,
        py.smallOpUs,
        smallOpRatio,
        '<= 1.0 (aim 0.8)',
        verdict(smallOpRatio <= 1),
      ],
      [
        'small op, in tidy (us/op)',
        js.smallOpTidyUs,
        py.smallOpUs,
        smallOpTidyRatio,
        '<= 1.0 (aim 0.8)',
        verdict(smallOpTidyRatio <= 1),
      ],
      [
        `matmul ${matmulSize}^3 fp32 (GFLOP/s)`,
        js.matmulGflops,
        py.matmulGflops,
        matmulRatio,
        '>= 0.95',
        verdict(matmulRatio >= 0.95),
      ],
      ['autograd step (us)', js.autogradStepUs, py.autogradStepUs, autogradRatio, '-', ''],
      ['peak RSS (MB)', rssMb, py.rssMb, ratio(rssMb, py.rssMb), '-', ''],
    ],
  ),
);
console.log('(ratio = vlalign / PyTorch; for times lower is better, for GFLOP/s higher is better)');

printJsonLine({
  bench: 'op-overhead',
  threads,
  smallOpUs: sig(js.smallOpUs),
  smallOpTidyUs: sig(js.smallOpTidyUs),
  pySmallOpUs: sig(py.smallOpUs),
  smallOpRatio: sig(smallOpRatio),
  smallOpTidyRatio: sig(smallOpTidyRatio),
  matmulGflops: sig(js.matmulGflops),
  pyMatmulGflops: sig(py.matmulGflops),
  matmulRatio: sig(matmulRatio),
  autogradStepUs: sig(js.autogradStepUs),
  pyAutogradStepUs: sig(py.autogradStepUs),
  autogradRatio: sig(autogradRatio),
  rssMb: sig(rssMb),
  pyRssMb: sig(py.rssMb),
});
