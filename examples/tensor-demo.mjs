// A short tour of the tensor API: fit y = 3x - 2 by gradient descent with autograd, save the
// parameters as safetensors, load them back, and show that the loop left no tensors behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { torch } from 'vlalign';

torch.manualSeed(0);
const x = torch.randn([256, 1]);
const y = torch.tidy(() =>
  x
    .mul(3)
    .sub(2)
    .add(torch.randn([256, 1]).mul(0.1)),
);
const w = torch.zeros([1, 1], { requiresGrad: true });
const b = torch.zeros([1], { requiresGrad: true });
const baseline = torch.memory().numTensors;

for (let step = 0; step <= 200; step++) {
  const loss = torch.tidy(() => {
    const prediction = torch.nn.functional.linear(x, w, b);
    const l = torch.nn.functional.mseLoss(prediction, y);
    l.backward();
    torch.noGrad(() => {
      for (const p of [w, b]) {
        p.sub_(p.grad, 0.1); // the grad handle is freed with the tidy scope
        p.grad = null;
      }
    });
    return l.item();
  });
  if (step % 50 === 0) console.log(`step ${String(step).padStart(3)}  loss ${loss.toFixed(5)}`);
}
console.log(`w = ${w.toString()}\nb = ${b.toString()}`);
console.log(`live tensors before / after the loop: ${baseline} / ${torch.memory().numTensors}`);

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-demo-')), 'linear.safetensors');
await torch.saveSafetensors(file, { weight: w.detach(), bias: b.detach() }, { format: 'pt' });
const loaded = await torch.loadSafetensors(file);
console.log(`saved and reloaded ${file}: weight ${loaded.weight.toString()}`);
console.log(
  `threads ${torch.getNumThreads()}, libtorch ${torch.buildInfo().torchVersion}, cuda ${torch.cuda.isAvailable()}`,
);
