// QLoRA's frozen 4-bit linear layer against the plain linear layer it replaces (issue #5's target:
// forward + backward within 1.5x of the fp32 linear).
//
//   node bench/linear4bit.mjs [--threads 2] [--rounds 5] [--reps 3] [--out 4096] [--in 4096]
//                             [--tokens 512] [--dtypes float32,bfloat16] [--tiles 4,16]  (MiB)
//
// Workload: W [out, in] quantised to NF4 with double quantisation (blocksize 64); one step is
// y = linear(x, W) then y.backward(dy) with x requiring grad and W frozen (forward + dx, no dW).
// The reference is F.linear on the dequantised W in the same dtype; linear4bit runs once per tile
// size. Rounds alternate the order of the variants (the machine may be shared); times are medians
// of the reps pooled over rounds, ratios linear4bit / reference. Prints a table, then one JSON line.
import { torch } from 'vlalign';
import { intFlag, median, parseFlags, printJsonLine, sig, table } from './lib/report.mjs';

const flags = parseFlags();
const threads = intFlag(flags, 'threads', 2);
const rounds = intFlag(flags, 'rounds', 5);
const reps = intFlag(flags, 'reps', 3);
const out = intFlag(flags, 'out', 4096);
const inF = intFlag(flags, 'in', 4096);
const tokens = intFlag(flags, 'tokens', 512);
const dtypes = (flags.get('dtypes') ?? 'float32,bfloat16').split(',');
const tiles = (flags.get('tiles') ?? '4,16').split(',').map(Number);
torch.setNumThreads(threads);
torch.manualSeed(0);

const state = torch.quantize4bit(torch.randn(out, inF).mul(0.02), { doubleQuant: true });
const rows = [];
const results = [];
for (const dtype of dtypes) {
  const w = torch.dequantize4bit(state, { dtype });
  const x0 = torch.randn(tokens, inF).to(dtype);
  const dy = torch.randn(tokens, out).to(dtype);
  const step = (layer) => () =>
    torch.tidy(() => {
      const x = x0.detach().requiresGrad_(true);
      layer(x).backward(dy);
    });
  const variants = [['linear', step((x) => torch.nn.functional.linear(x, w))]];
  for (const mib of tiles) {
    variants.push([`linear4bit ${mib} MiB`, step((x) => torch.linear4bit(x, state, null, { tileBytes: mib << 20 }))]);
  }
  const times = new Map(variants.map(([name]) => [name, []]));
  for (const [, run] of variants) run();
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of r % 2 === 0 ? variants : [...variants].reverse()) {
      for (let k = 0; k < reps; k++) {
        const start = performance.now();
        run();
        times.get(name).push(performance.now() - start);
      }
    }
  }
  const ref = median(times.get('linear'));
  for (const [name, ms] of times) {
    rows.push([dtype, name, median(ms), Math.min(...ms), median(ms) / ref]);
    results.push({
      dtype,
      variant: name,
      medianMs: sig(median(ms)),
      minMs: sig(Math.min(...ms)),
      ratio: sig(median(ms) / ref),
    });
  }
  for (const t of [w, x0, dy]) t.dispose();
}
console.log(`forward + dx, W [${out}, ${inF}] NF4 double-quantised, ${tokens} tokens, ${threads} threads`);
console.log(table(['dtype', 'variant', 'median ms', 'min ms', 'ratio'], rows));
printJsonLine({ bench: 'linear4bit', threads, out, in: inF, tokens, results });
