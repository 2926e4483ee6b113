// The fused MPO step on a peaked softmax (logit standard deviation 16, as a trained model's head)
// against the exact fused path and PyTorch eager (TRL's formulation), same shapes as fused-loss.
// PyTorch's logit gradients turn subnormal here, so its run is capped by --python-timeout seconds.
//
//   node bench/peaked-softmax.mjs [--python-timeout 300]
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { losses, torch } from 'vlalign';
import { intFlag, parseFlags, printJsonLine, table } from './lib/report.mjs';

const flags = parseFlags();
const timeout = intFlag(flags, 'python-timeout', 300);
torch.setNumThreads(2);
torch.manualSeed(0);
const [P, T, H, V] = [8, 128, 896, 32000];
const hidden = torch.randn([2 * P, T, H], { requiresGrad: true });
const weight = torch
  .randn([V, H])
  .mul_(16 / Math.sqrt(H))
  .requiresGrad_();
const labels = torch.randint(0, V, [2 * P, T]);
const ref = { refChosenLogps: torch.randn([P]), refRejectedLogps: torch.randn([P]) };

const step = (config) => {
  const loss = new losses.PreferenceLoss({ ...losses.MPO, trlVersion: 'current', ...config }); // the peer's mix: no shift
  const start = process.hrtime.bigint();
  torch.tidy(() => loss.compute({ hidden, targets: labels, ...ref }, { weight }).loss.backward());
  hidden.grad = null;
  weight.grad = null;
  return Number(process.hrtime.bigint() - start) / 1e9;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const filtered = median(Array.from({ length: 5 }, () => step({})));
const exact = median(Array.from({ length: 5 }, () => step({ gradFilter: 0 })));

const peer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peers/peaked_softmax.py');
const python = spawnSync(process.env.PYTHON ?? '/usr/bin/python3', [peer], {
  encoding: 'utf8',
  timeout: timeout * 1000,
});
const pythonS = python.status === 0 ? Number(/pythonEagerS': ([\d.]+)/.exec(python.stdout)?.[1]) : null;

console.log(
  table(
    ['variant', 'time s', 'time / fused filtered'],
    [
      ['vlalign fused, gradFilter auto', filtered.toFixed(3), '1.000'],
      ['vlalign fused, exact (gradFilter 0)', exact.toFixed(3), (exact / filtered).toFixed(3)],
      [
        'PyTorch eager (TRL)',
        pythonS === null ? `> ${timeout} for 3 steps` : pythonS.toFixed(3),
        pythonS === null ? '-' : (pythonS / filtered).toFixed(3),
      ],
    ],
  ),
);
printJsonLine({
  bench: 'peaked-softmax',
  logitStd: 16,
  fusedFilteredS: filtered,
  fusedExactS: exact,
  pythonEagerS: pythonS,
  pythonTimeoutS: timeout,
});
