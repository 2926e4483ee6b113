#!/usr/bin/env node
// The Node side of scripts/device-check.sh: one check per call, run from dist/ (npm run build:ts),
// printing its verdict on stdout as one JSON line `RESULT {"ok":…,"detail":…}` (device-check.sh
// turns it into a `CHECK` line). Each check compares the device's result with an independent one:
// the same computation on the CPU in float64 with plain ops, a closed formula, or (for the files the
// Python peers read) the values it writes next to them.
//
//   node scripts/device-checks.mjs <check> --device cuda|cpu --work <dir>
//
// checks: fused-kernels, linear4bit, adamw, mpo-step, allreduce (starts its own 2 ranks),
// write-adapter, write-checkpoint, write-events (these three leave files for scripts/device-checks.py).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { adapters, distributed, losses, models, optim, torch, train } from '../dist/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { device: { type: 'string', default: 'cuda' }, work: { type: 'string' } },
});
const [checkName] = positionals;
const device = values.device;
const work = path.resolve(values.work ?? 'device-check-work');
fs.mkdirSync(work, { recursive: true });

const report = (ok, detail) => console.log(`RESULT ${JSON.stringify({ ok, detail })}`);
const fmt = (x) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

/** max |a - b| over all elements, both read on the CPU in float64. */
const maxDiff = (a, b) => torch.tidy(() => a.cpu().to('float64').sub(b.cpu().to('float64')).abs().max().item());

const onDevice = (t) => t.to({ device });

// The tiny Qwen2-VL that scripts/make-tiny-models.mjs writes (device-check.sh makes it first).
const tinyDir = () => {
  const dir = path.join(work, 'tiny/qwen2_vl');
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new Error(`${dir} holds no tiny model (make-tiny-models)`);
  return dir;
};

// Fused linear log-softmax: per-token log-prob and entropy, and the gradients of sum(logp), against
// the plain logits -> logSoftmax in float64 on the CPU; on CUDA also against the CPU kernel.
function fusedKernels() {
  torch.manualSeed(1);
  const [n, h, v] = [37, 24, 300];
  const x = torch.randn([n, h]);
  const w = torch.randn([v, h]).mul(0.2);
  const b = torch.randn([v]).mul(0.1);
  const targets = torch.randint(0, v, [n], { dtype: 'int64' });

  const [x64, w64, b64] = [x, w, b].map((t) => t.to('float64').requiresGrad_());
  const lsm = x64.matmul(w64.t()).add(b64).logSoftmax(1);
  const refLogp = lsm.gather(1, targets.unsqueeze(1)).squeeze(1);
  const refEntropy = lsm.exp().mul(lsm).sum(1).neg();
  refLogp.sum().backward();

  const run = (dev) => {
    const [xd, wd, bd] = [x, w, b].map((t) => t.to({ device: dev }).requiresGrad_());
    const stats = torch.linearLogprobStats(xd, wd, bd, targets.to({ device: dev }));
    const [logp] = torch.linearLogprobs(xd, wd, bd, targets.to({ device: dev }));
    logp.sum().backward();
    return { logp: stats.logp, entropy: stats.entropy, gx: xd.grad, gw: wd.grad, gb: bd.grad };
  };
  const got = run(device);
  const diffs = {
    logp: maxDiff(got.logp, refLogp),
    entropy: maxDiff(got.entropy, refEntropy),
    gradX: maxDiff(got.gx, x64.grad),
    gradW: maxDiff(got.gw, w64.grad),
    gradB: maxDiff(got.gb, b64.grad),
  };
  if (device !== 'cpu') {
    const cpu = run('cpu');
    diffs.logpVsCpuKernel = maxDiff(got.logp, cpu.logp);
    diffs.gradWVsCpuKernel = maxDiff(got.gw, cpu.gw);
  }
  const worst = Math.max(...Object.values(diffs));
  const detail = Object.entries(diffs)
    .map(([k, d]) => `${k} ${fmt(d)}`)
    .join(', ');
  report(worst < 1e-4, `max |diff| on ${device} (N=${n} H=${h} V=${v}, float32 vs float64): ${detail}`);
}

// 4-bit linear (NF4, double quantisation) on the device against x @ dequantize(W)^T + b in float64.
function linear4bitCheck() {
  torch.manualSeed(2);
  const w = torch.randn([96, 128]).mul(0.1);
  const bias = torch.randn([96]).mul(0.1);
  const state = torch.quantize4bit(w, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
  const x = torch.randn([5, 128]);
  const deq = torch.dequantize4bit(state).to('float64');
  const ref = x.to('float64').matmul(deq.t()).add(bias.to('float64'));
  const moved = { ...state };
  for (const key of ['packed', 'absmax', 'nestedAbsmax', 'nestedCode', 'offset', 'code']) {
    if (state[key] !== null) moved[key] = onDevice(state[key]);
  }
  const y = torch.linear4bit(onDevice(x), moved, onDevice(bias));
  const diff = maxDiff(y, ref);
  const quantErr = maxDiff(deq, w);
  report(
    y.device.startsWith(device) && diff < 1e-4,
    `linear4bit on ${y.device} vs x @ dequantize4bit(W)^T + b (float64): max |diff| ${fmt(diff)} (NF4 error of W itself ${fmt(quantErr)})`,
  );
}

// lib/optim's AdamW (the fused adamwStep_) on the device: three steps against the update formula
// evaluated in float64 in JavaScript.
function adamwCheck() {
  const opts = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
  const n = 1000;
  const p0 = Float64Array.from({ length: n }, (_, i) => Math.sin(i));
  const grads = [1, 2, 3].map((s) => Float64Array.from({ length: n }, (_, i) => Math.cos(i * s) * 0.5));
  const p = onDevice(torch.tensor(Float32Array.from(p0))).requiresGrad_();
  const opt = new optim.AdamW([p], opts);
  for (const g of grads) {
    p.grad = onDevice(torch.tensor(Float32Array.from(g)));
    opt.step();
  }
  const want = Float64Array.from(p0, (x) => Math.fround(x));
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  grads.forEach((gs, k) => {
    const t = k + 1;
    for (let i = 0; i < n; i++) {
      const g = Math.fround(gs[i]);
      want[i] *= 1 - opts.lr * opts.weightDecay;
      m[i] = opts.beta1 * m[i] + (1 - opts.beta1) * g;
      v[i] = opts.beta2 * v[i] + (1 - opts.beta2) * g * g;
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - opts.beta2 ** t) + opts.eps;
      want[i] -= (opts.lr / (1 - opts.beta1 ** t)) * (m[i] / denom);
    }
  });
  const diff = maxDiff(p.detach(), torch.tensor(want, { dtype: 'float64' }));
  report(
    p.device.startsWith(device) && diff < 1e-5,
    `AdamW, 3 steps of ${n} params on ${p.device} vs the formula in float64: max |diff| ${fmt(diff)}`,
  );
}

// One MPO step (sigmoid + bco_pair + sft, weights 0.8 / 0.2 / 1) of the tiny Qwen2-VL: forward,
// fused loss, backward, AdamW. Returns the loss before and after the step on the same batch.
async function mpoStep(dev) {
  torch.manualSeed(3);
  const model = await models.fromPretrained(tinyDir(), { device: dev });
  const loss = new losses.PreferenceLoss({
    lossType: ['sigmoid', 'bco_pair', 'sft'],
    lossWeights: [0.8, 0.2, 1.0],
    beta: 0.1,
  });
  // 2 pairs: prompt tokens 0..5, completion 6..11 (chosen rows, then rejected rows).
  const [rows, len, prompt] = [4, 12, 6];
  const ids = Array.from({ length: rows }, (_, r) =>
    Array.from({ length: len }, (_, t) => 1 + ((r * 37 + t * 11) % 400)),
  );
  for (let t = 0; t < prompt; t++) {
    ids[2][t] = ids[0][t];
    ids[3][t] = ids[1][t];
  }
  const targets = ids.map((row) => row.map((_, t) => (t + 1 >= prompt && t + 1 < len ? row[t + 1] : -100)));
  const inputIds = torch.tensor(ids, { dtype: 'int64', device: dev });
  const batch = {
    targets: torch.tensor(targets, { dtype: 'int64', device: dev }),
    refChosenLogps: torch.tensor([-30, -31], { dtype: 'float32', device: dev }),
    refRejectedLogps: torch.tensor([-32, -29], { dtype: 'float32', device: dev }),
  };
  const lossOf = () =>
    loss.compute({ ...batch, hidden: model.forward({ inputIds }, { logits: false }).hidden }, model.lmHead());
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const before = lossOf();
  before.loss.backward();
  opt.step();
  const after = torch.noGrad(() => lossOf().loss.item());
  return { model, before: before.loss.item(), after, lossDevice: before.loss.device };
}

async function mpoCheck() {
  const got = await mpoStep(device);
  const parts = [`loss ${got.before.toFixed(6)} -> ${got.after.toFixed(6)} on ${got.lossDevice}`];
  let ok = Number.isFinite(got.before) && got.after < got.before && got.lossDevice.startsWith(device);
  if (device !== 'cpu') {
    const cpu = await mpoStep('cpu');
    const rel = Math.max(Math.abs(got.before - cpu.before), Math.abs(got.after - cpu.after)) / Math.abs(cpu.before);
    parts.push(`CPU ${cpu.before.toFixed(6)} -> ${cpu.after.toFixed(6)} (rel. diff ${fmt(rel)})`);
    ok &&= rel < 1e-3;
  }
  report(ok, parts.join('; '));
}

// All-reduce (sum) of [rank + 1] * 4 over 2 ranks: 'nccl' on cuda:<rank>, 'gloo' on the CPU.
async function allReduceRank() {
  const backend = device === 'cpu' ? 'gloo' : 'nccl';
  const info = await distributed.initProcessGroup({ backend, timeoutMs: 60_000 });
  const dev = device === 'cpu' ? 'cpu' : `cuda:${info.localRank}`;
  const t = torch.full([4], info.rank + 1, { dtype: 'float32', device: dev });
  const out = await distributed.allReduce(t);
  console.log(`RANK ${JSON.stringify({ rank: info.rank, device: out.device, values: Array.from(out.cpu().data()) })}`);
  distributed.destroyProcessGroup();
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

async function allReduceCheck() {
  const worldSize = 2;
  if (device !== 'cpu' && torch.cuda.deviceCount() < worldSize) {
    report(null, `${torch.cuda.deviceCount()} GPU(s) visible; NCCL needs one GPU per rank, so 2 ranks need 2 GPUs`);
    return;
  }
  const port = await freePort();
  const runs = await Promise.all(
    Array.from({ length: worldSize }, (_, rank) => {
      const child = spawn(process.execPath, [process.argv[1], 'allreduce-rank', '--device', device, '--work', work], {
        env: {
          ...process.env,
          RANK: String(rank),
          LOCAL_RANK: String(rank),
          WORLD_SIZE: String(worldSize),
          LOCAL_WORLD_SIZE: String(worldSize),
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: String(port),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        out += d;
      });
      return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
    }),
  );
  const ranks = runs.map((r) => r.out.split('\n').find((l) => l.startsWith('RANK ')));
  if (ranks.some((l) => l === undefined)) {
    const bad = runs[ranks.indexOf(undefined)];
    report(false, `a rank printed no result (exit ${bad.code}): ${bad.out.trim().split('\n').slice(-3).join(' | ')}`);
    return;
  }
  const results = ranks.map((l) => JSON.parse(l.slice('RANK '.length)));
  const ok = results.every((r) => r.values.length === 4 && r.values.every((x) => x === 3));
  report(
    ok,
    `${device === 'cpu' ? 'gloo' : 'nccl'} all-reduce over 2 ranks: ${results.map((r) => `rank ${r.rank} on ${r.device} [${r.values}]`).join('; ')} (want 3 everywhere)`,
  );
}

// Token ids both sides feed the model (text only, ids clear of the tiny vocab's special tokens).
const PROBE_IDS = [[5, 17, 42, 99, 150, 230, 301, 7, 64, 12]];

async function logitsOf(model) {
  return torch.noGrad(() => {
    const inputIds = torch.tensor(PROBE_IDS, { dtype: 'int64', device });
    const attentionMask = torch.ones([1, PROBE_IDS[0].length], { dtype: 'int64', device });
    return model.forward({ inputIds, attentionMask }).logits.cpu();
  });
}

const writeExpected = (dir, logits, extra = {}) =>
  fs.writeFileSync(
    path.join(dir, 'expected.json'),
    JSON.stringify({ input_ids: PROBE_IDS, shape: logits.shape, logits: Array.from(logits.data()), ...extra }),
  );

// A LoRA adapter on the tiny model (q/v projections, random non-zero A and B), saved in PEFT's
// format with the logits it gives: device-checks.py loads it with PeftModel.from_pretrained.
async function writeAdapter() {
  const model = await models.fromPretrained(tinyDir(), { device });
  const peft = adapters.getPeftModel(model, {
    targetModules: String.raw`model\.layers\.\d+\.self_attn\.(q|v)_proj`,
    r: 4,
    loraAlpha: 8,
  });
  torch.manualSeed(9);
  torch.noGrad(() => {
    for (const t of peft.adapterStateDict().values()) t.add_(torch.randnLike(t).mul(0.05));
  });
  const dir = path.join(work, 'adapter');
  fs.rmSync(dir, { recursive: true, force: true });
  await peft.saveAdapter(dir);
  const logits = await logitsOf(model);
  writeExpected(dir, logits, { base: tinyDir() });
  report(true, `adapter and ${logits.shape.join('x')} logits (${device}) in ${dir}`);
}

// The tiny model after one MPO step, saved with savePretrained, and the logits it gives:
// device-checks.py loads it with transformers.
async function writeCheckpoint() {
  const { model, before, after } = await mpoStep(device);
  const dir = path.join(work, 'checkpoint');
  fs.rmSync(dir, { recursive: true, force: true });
  await models.savePretrained(model, dir);
  const logits = await logitsOf(model);
  writeExpected(dir, logits);
  report(true, `trained checkpoint (loss ${before.toFixed(4)} -> ${after.toFixed(4)} on ${device}) in ${dir}`);
}

// A TensorBoard event file with three steps of two scalars and a text; device-checks.py reads it
// with TensorBoard's EventAccumulator.
function writeEvents() {
  const dir = path.join(work, 'tensorboard');
  fs.rmSync(dir, { recursive: true, force: true });
  const writer = new train.TensorBoardWriter(dir);
  const scalars = {};
  for (const step of [1, 2, 3]) {
    const values = { 'train/loss': 1 / step + 0.125, 'train/learning_rate': 1e-4 * step };
    writer.logScalars(step, values);
    for (const [tag, v] of Object.entries(values)) {
      scalars[tag] = [...(scalars[tag] ?? []), [step, v]];
    }
  }
  writer.logText(0, 'config', 'trainer: mpo');
  writer.close();
  fs.writeFileSync(path.join(dir, 'expected.json'), JSON.stringify({ scalars, text: { config: 'trainer: mpo' } }));
  report(true, `${path.basename(writer.file)} in ${dir}`);
}

const CHECKS = {
  'fused-kernels': fusedKernels,
  linear4bit: linear4bitCheck,
  adamw: adamwCheck,
  'mpo-step': mpoCheck,
  allreduce: allReduceCheck,
  'allreduce-rank': allReduceRank,
  'write-adapter': writeAdapter,
  'write-checkpoint': writeCheckpoint,
  'write-events': writeEvents,
};

if (!(checkName in CHECKS)) {
  console.error(
    `usage: node scripts/device-checks.mjs <${Object.keys(CHECKS).join('|')}> --device cuda|cpu --work <dir>`,
  );
  process.exit(2);
}
try {
  await CHECKS[checkName]();
} catch (error) {
  report(false, `${error?.message ?? error}`.split('\n')[0]);
}
// The tiny model, the tokenizer and the thread pools must not keep a check alive.
process.exit(0);
