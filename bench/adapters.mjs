// Adapters and optimisation, side by side with what users run today (Python PyTorch 1.13 from
// python3-torch, bench/peers/adapters.py), in one run:
//   (a) bytes per parameter of an NF4 + double-quant 4096x4096 layer (packed nibbles, 8-bit absmax,
//       nested absmax, code tables) — bitsandbytes' layout, target <= 0.52;
//   (b) forward + backward of a 4096x4096 QLoRA linear (NF4 base, LoRA r 16 in fp32) on 512 tokens
//       against the same LoRA linear over the fp32 weight (ours and PEFT-style PyTorch), target <= 1.5x;
//   (c) peak memory of one training step of a small decoder with and without gradient checkpointing
//       (fresh child process each, VmHWM above the step's starting RSS);
//   (d) one AdamW step over ~50M parameters shaped like a decoder: our fused kernel against
//       torch.optim.AdamW(foreach=True), target <= 1.0x.
//
//   node bench/adapters.mjs [--quick] [--threads 2] [--reps 5] [--adamw-params 50]
//
// Prints a table, then one JSON line (nf4BytesPerParam, qloraTimeRatio, adamwTimeRatio, ...).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { torch, optim, models, nn } from 'vlalign';
import {
  intFlag,
  median,
  parseFlags,
  printJsonLine,
  procStatus,
  resetPeak,
  runPythonPeer,
  sig,
  table,
  timeOnce,
} from './lib/report.mjs';

const flags = parseFlags();
const quick = flags.get('quick') === 'true';
const threads = intFlag(flags, 'threads', 2);
const reps = intFlag(flags, 'reps', quick ? 3 : 5);
const adamwMillions = Number(flags.get('adamw-params') ?? (quick ? 20 : 50));
const DIM = 4096,
  TOKENS = 512,
  RANK = 16,
  ALPHA = 32;

torch.setNumThreads(threads);

// (a) ---------------------------------------------------------------------------------------------
function nf4Bytes(doubleQuant) {
  return torch.tidy(() => {
    const state = torch.quantize4bit(torch.randn([DIM, DIM]).mul(DIM ** -0.5), {
      quantType: 'nf4',
      blocksize: 64,
      doubleQuant,
    });
    const parts = [state.packed, state.absmax, state.nestedAbsmax, state.nestedCode, state.offset, state.code].filter(
      (t) => t,
    );
    const bytes = parts.reduce((n, t) => n + t.numel() * { uint8: 1, float32: 4 }[t.dtype], 0);
    return bytes / (DIM * DIM);
  });
}

// (b) ---------------------------------------------------------------------------------------------
// The LoRA linear of PEFT: y = base(x) + s·B(A x); base frozen, A, B and x (from the layer below) train.
function loraStep(base) {
  torch.manualSeed(0);
  const a = torch
    .rand([RANK, DIM])
    .mul(2)
    .sub(1)
    .mul(DIM ** -0.5)
    .requiresGrad_(true)
    .keep();
  const b = torch.randn([DIM, RANK]).mul(0.01).requiresGrad_(true).keep();
  const x = torch.randn([TOKENS, DIM]).requiresGrad_(true).keep();
  const F = torch.nn.functional;
  return () =>
    torch.tidy(() => {
      for (const t of [x, a, b]) t.grad = null;
      const y = base(x).add(F.linear(F.linear(x, a), b).mul(ALPHA / RANK));
      y.sum().backward();
    });
}

function loraTimes() {
  const weight = torch
    .randn([DIM, DIM])
    .mul(DIM ** -0.5)
    .keep();
  const state = torch.quantize4bit(weight, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
  // Interleaved reps, so load from elsewhere falls on both variants alike.
  const steps = [loraStep((x) => torch.nn.functional.linear(x, weight)), loraStep((x) => torch.linear4bit(x, state))];
  const times = [[], []];
  for (let k = 0; k <= 2 * reps; k++) steps.forEach((step, v) => times[v].push(timeOnce(step)));
  return { fp32: median(times[0].slice(1)), qlora: median(times[1].slice(1)) };
}

// (c) ---------------------------------------------------------------------------------------------
const SMALL = {
  model_type: 'qwen2',
  vocab_size: 8192,
  hidden_size: 512,
  intermediate_size: 1408,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  num_key_value_heads: 2,
};
const BATCH = 4,
  SEQ = 512;

function trainingStepMemory(checkpointing) {
  torch.manualSeed(0);
  const model = new models.Qwen2ForCausalLM(models.parseTextConfig(SMALL, 'bench'), SMALL);
  nn.initWeights(model);
  model.train().gradientCheckpointing_(checkpointing);
  const ids = torch.randint(0, SMALL.vocab_size, [BATCH, SEQ]).keep();
  const step = () =>
    torch.tidy(() => {
      model.zeroGrad();
      const logits = model.forward({ inputIds: ids }).logits;
      torch.nn.functional.crossEntropy(logits.view([-1, SMALL.vocab_size]), ids.view([-1])).backward();
    });
  step(); // warm-up: allocator, BLAS, gradients allocated
  model.zeroGrad();
  const before = procStatus();
  const reset = resetPeak();
  const start = process.hrtime.bigint();
  step();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { extraMb: procStatus().VmHWM - before.VmRSS, seconds, reset };
}

function childMemory(mode) {
  const child = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--child', mode, '--threads', String(threads)],
    { encoding: 'utf8' },
  );
  if (child.status !== 0) throw new Error(`child ${mode} failed:\n${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop());
}

// (d) ---------------------------------------------------------------------------------------------
function decoderShapes(total) {
  const [h, i] = [1024, 2816];
  const layer = [[h, h], [h / 4, h], [h / 4, h], [h, h], [i, h], [i, h], [h, i], [h], [h]];
  const shapes = [];
  let n = 0;
  while (n < total) {
    for (const s of layer) {
      shapes.push(s);
      n += s.reduce((a, b) => a * b, 1);
    }
  }
  return shapes;
}

function adamwStepTimes() {
  const params = decoderShapes(adamwMillions * 1e6).map((s) => torch.randn(s).requiresGrad_(true).keep());
  const count = params.reduce((n, p) => n + p.numel(), 0);
  const opt = new optim.AdamW(params, { lr: 1e-3, weightDecay: 0.01 });
  const times = [];
  for (let k = 0; k < reps + 1; k++) {
    for (const p of params) p.grad = torch.randnLike(p);
    const start = process.hrtime.bigint();
    opt.step();
    if (k > 0) times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  return { count, seconds: median(times) };
}

if (flags.has('child')) {
  console.log(JSON.stringify(trainingStepMemory(flags.get('child') === 'checkpointing')));
  process.exit(0);
}
torch.setNumThreads(threads);

// ---- run ------------------------------------------------------------------------------------------
const started = Date.now();
const bytesNf4 = nf4Bytes(true);
const bytesNf4Plain = nf4Bytes(false);
const lora = loraTimes();
const plain = childMemory('plain');
const ckpt = childMemory('checkpointing');
const adamw = adamwStepTimes();
const peer = runPythonPeer(fileURLToPath(new URL('./peers/adapters.py', import.meta.url)), [
  '--threads',
  String(threads),
  '--reps',
  String(reps),
  '--adamw-params',
  String(adamwMillions),
]);

const qloraTimeRatio = lora.qlora / lora.fp32;
const adamwTimeRatio = adamw.seconds / peer.adamw_s;
const checkpointMemoryRatio = ckpt.extraMb / plain.extraMb;
console.log(
  table(
    ['measure', 'vlalign', 'PyTorch', 'ratio', 'target'],
    [
      ['(a) NF4 + double quant, bytes / param', sig(bytesNf4), '-', '-', '<= 0.52'],
      ['    NF4 without double quant', sig(bytesNf4Plain), '-', '-', '-'],
      [
        '(b) LoRA linear 4096² x 512, fp32 base, fwd+bwd s',
        sig(lora.fp32),
        sig(peer.lora_fp32_s),
        `${sig(lora.fp32 / peer.lora_fp32_s)}x`,
        '-',
      ],
      ['    QLoRA (NF4 base), fwd+bwd s', sig(lora.qlora), '-', `${sig(qloraTimeRatio)}x of fp32`, '<= 1.5x'],
      ['(c) training step extra MB, plain', sig(plain.extraMb), '-', '-', '-'],
      ['    with gradient checkpointing', sig(ckpt.extraMb), '-', `${sig(checkpointMemoryRatio)}x of plain`, '-'],
      [
        '    step s plain / checkpointed',
        `${sig(plain.seconds)} / ${sig(ckpt.seconds)}`,
        '-',
        `${sig(ckpt.seconds / plain.seconds)}x`,
        '-',
      ],
      [
        `(d) AdamW step, ${(adamw.count / 1e6).toFixed(1)}M params, s`,
        sig(adamw.seconds),
        sig(peer.adamw_s),
        `${sig(adamwTimeRatio)}x`,
        '<= 1.0x',
      ],
    ],
  ),
);
console.log(
  `(${threads} threads; small decoder: hidden 512, 8 layers, batch ${BATCH}x${SEQ}; total ${((Date.now() - started) / 1000).toFixed(0)} s)`,
);
printJsonLine({
  bench: 'adapters',
  threads,
  nf4BytesPerParam: bytesNf4,
  nf4BytesPerParamNoDoubleQuant: bytesNf4Plain,
  qloraSeconds: lora.qlora,
  loraFp32Seconds: lora.fp32,
  peerLoraFp32Seconds: peer.lora_fp32_s,
  qloraTimeRatio,
  plainStepExtraMb: plain.extraMb,
  checkpointStepExtraMb: ckpt.extraMb,
  checkpointMemoryRatio,
  adamwSeconds: adamw.seconds,
  peerAdamwSeconds: peer.adamw_s,
  adamwParams: adamw.count,
  adamwTimeRatio,
});
