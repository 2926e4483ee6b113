// A whole Qwen2-VL forward, and forward + backward, in tokens/s: vlalign against the same
// architecture in Python PyTorch eager (bench/peers/model_forward.py), from one checkpoint and one
// set of inputs.
//
//   node bench/model-forward.mjs [--quick] [--threads 2] [--seq 512] [--batch 1] [--image 16x16]
//                                [--reps 5] [--warmup 1] [--rounds 3] [--seed 0] [--keep DIR] [--grad-checkpointing]
//
// The model is the peer's "small Qwen2-VL" (`model_forward.py --print-config`: LLM hidden 512,
// 4 layers, 8/2 heads, vocab 8192; vision width 256, depth 4), float32, randomly initialised here
// (nn.initWeights, std = initializer_range) and written with savePretrained to a temp dir that
// both sides load. The inputs follow the peer's recipe (seed --seed: B prompts of L tokens, chat
// markers, one image of --image 14-px patches = H·W/4 image tokens, pixel_values ~ N(0, 1), random
// labels) and are written to a safetensors file both sides read (the peer with --inputs).
//   forward  model.eval(), no grad: vision tower, M-RoPE index, decoder, lm_head logits [B, L, V]
//   fwd+bwd  model.train(), grads reset to null, forward, mean cross entropy over all B·L tokens
//            (no shift, no ignore), backward into every parameter (vision tower included); like
//            the peer, no gradient checkpointing unless --grad-checkpointing (then blocks recompute)
// Every measurement is a fresh process (this script with --child, or the peer) that loads the
// checkpoint and inputs, runs --warmup untimed then --reps timed forwards, writes one more
// forward's logits, then does the same for fwd+bwd. Rounds alternate which side goes first; times
// are medians of the reps pooled over rounds ("best rep" rows: the fastest rep, which other load
// on a shared machine disturbs less). Peak RSS is each process's VmHWM at its end (the largest
// over rounds). Agreement: max |logits difference| between the sides must be <= 1e-3.
// Prints a table, then one JSON line, last on stdout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { models, torch } from 'vlalign';
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
import { writeSmallQwen2Vl } from './lib/small_model.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const peerScript = path.join(here, 'peers/model_forward.py');
const flags = parseFlags();
const LOGITS_TOLERANCE = 1e-3;

const seconds = secondsSince;

/** As the peer's time_phase: peak counter reset, warm-up runs, timed runs; extra MB over the start. */
function timePhase(fn, warmup, reps) {
  resetPeak();
  const before = procStatus().VmRSS;
  for (let k = 0; k < warmup; k++) fn();
  const times = [];
  for (let k = 0; k < reps; k++) {
    const start = process.hrtime.bigint();
    fn();
    times.push(seconds(start));
  }
  return { times, extraMb: procStatus().VmHWM - before };
}

// ---- child: vlalign on the checkpoint and inputs ----------------------------------------------------

async function runChild() {
  const dir = flags.get('checkpoint');
  const inputsFile = flags.get('inputs');
  const reps = intFlag(flags, 'reps', 5);
  const warmup = Number(flags.get('warmup') ?? 1);
  torch.setNumThreads(intFlag(flags, 'threads', 2));

  const start = process.hrtime.bigint();
  const model = await models.fromPretrained(dir);
  // The peer keeps every activation; so does this side unless --grad-checkpointing is given.
  model.gradientCheckpointing_(flags.get('grad-checkpointing') === 'true');
  const buildS = seconds(start);
  const t = await torch.loadSafetensors(inputsFile);
  const inputs = {
    inputIds: t.input_ids,
    attentionMask: t.attention_mask,
    pixelValues: t.pixel_values,
    imageGridThw: t.image_grid_thw,
  };
  const labels = t.labels.view([-1]);
  const [B, L] = t.input_ids.shape;
  const params = model.parameters();

  const forward = () => {
    model.eval();
    torch.tidy(() => {
      torch.noGrad(() => model.forward(inputs));
    });
  };
  let lastLoss = null;
  const fwdBwd = () => {
    model.train();
    model.zeroGrad();
    lastLoss = torch.tidy(() => {
      const { logits } = model.forward(inputs);
      const loss = torch.nn.functional.crossEntropy(logits.view([-1, logits.shape[2]]), labels);
      loss.backward();
      return loss.item();
    });
  };

  const hwmReset = resetPeak();
  const fwd = timePhase(forward, warmup, reps);
  model.eval();
  const out = torch.noGrad(() => model.forward(inputs));
  const logitsSum = torch.tidy(() => out.logits.double().sum().item());
  if (flags.has('save-logits')) await torch.saveSafetensors(flags.get('save-logits'), { logits: out.logits });
  for (const x of Object.values(out)) x.dispose();
  const fb = timePhase(fwdBwd, warmup, reps);
  const peak = procStatus().VmHWM;

  const tokens = B * L;
  const forwardS = median(fwd.times);
  const fwdBwdS = median(fb.times);
  printJsonLine({
    forward_s: forwardS,
    fwd_bwd_s: fwdBwdS,
    tokens,
    forward_tok_s: tokens / forwardS,
    fwd_bwd_tok_s: tokens / fwdBwdS,
    peak_rss_mb: peak,
    peer: 'vlalign',
    torchVersion: torch.buildInfo().torchVersion,
    sourceHash: torch.buildInfo().sourceHash,
    threads: torch.getNumThreads(),
    batch: B,
    seq: L,
    params: params.reduce((n, p) => n + p.numel(), 0),
    build_s: buildS,
    forward_s_reps: fwd.times,
    fwd_bwd_s_reps: fb.times,
    hwm_reset: hwmReset,
    forward_extra_mb: fwd.extraMb,
    fwd_bwd_extra_mb: fb.extraMb,
    loss: lastLoss,
    logits_sum: logitsSum,
  });
}

// ---- parent: checkpoint, inputs, both sides, report ---------------------------------------------------

function parseGrid(s) {
  if (['', 'none', '0', '0x0'].includes(s)) return null;
  const [h, w] = s.toLowerCase().split('x').map(Number);
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0) throw new Error(`--image expects HxW, got ${s}`);
  return h === 0 || w === 0 ? null : [h, w];
}

/** The peer's build_inputs (bench/peers/model_forward.py), same draws in the same order. */
function buildInputs(cfg, B, L, grid, seed) {
  torch.manualSeed(seed);
  const V = cfg.vocab_size;
  const firstSpecial = cfg.vision_start_token_id - 9; // <|endoftext|>
  const imStart = firstSpecial + 1;
  const imEnd = firstSpecial + 2;
  const vc = cfg.vision_config;
  const nImg = grid === null ? 0 : (grid[0] * grid[1]) / vc.spatial_merge_size ** 2;
  const media =
    grid === null ? [] : [cfg.vision_start_token_id, ...Array(nImg).fill(cfg.image_token_id), cfg.vision_end_token_id];
  const layout = [imStart, null, null, null, imEnd, null, imStart, null, null, ...media];
  if (layout.length > L)
    throw new Error(`--seq ${L} is too short for the prompt head + ${nImg} image tokens (${layout.length})`);
  const text = torch.randint(0, Math.min(V, firstSpecial), [B, L]);
  const ids = text.data();
  text.dispose();
  for (let b = 0; b < B; b++)
    layout.forEach((tok, i) => {
      if (tok !== null) ids[b * L + i] = BigInt(tok);
    });
  const out = {
    input_ids: torch.tensor(ids, { shape: [B, L] }),
    attention_mask: torch.ones([B, L], { dtype: 'int64' }),
  };
  if (grid !== null) {
    const row = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2;
    out.pixel_values = torch.randn([B * grid[0] * grid[1], row], { dtype: 'float32' });
    out.image_grid_thw = torch.tensor(
      Array.from({ length: B }, () => [1, grid[0], grid[1]]),
      { dtype: 'int64' },
    );
  }
  out.labels = torch.randint(0, V, [B, L]);
  return { ...out, imageTokens: B * nImg };
}

const runNodeChild = (args) => runNodeScript(self, args);

async function maxAbsDiff(fileA, fileB) {
  const [a, b] = [await torch.loadSafetensors(fileA), await torch.loadSafetensors(fileB)];
  try {
    if (a.logits.shape.join() !== b.logits.shape.join())
      throw new Error(`logits shapes differ: [${a.logits.shape}] vs [${b.logits.shape}]`);
    return torch.tidy(() => a.logits.sub(b.logits).abs().max().item());
  } finally {
    a.logits.dispose();
    b.logits.dispose();
  }
}

async function runParent() {
  const quick = flags.get('quick') === 'true';
  const threads = intFlag(flags, 'threads', 2);
  const seq = intFlag(flags, 'seq', 512);
  const batch = intFlag(flags, 'batch', 1);
  const reps = intFlag(flags, 'reps', 5);
  const rounds = intFlag(flags, 'rounds', quick ? 1 : 3);
  const warmup = Number(flags.get('warmup') ?? 1);
  const seed = Number(flags.get('seed') ?? 0);
  const image = String(flags.get('image') ?? '16x16');
  const grid = parseGrid(image);
  if (reps < 5) throw new Error('--reps must be at least 5');
  if (!Number.isInteger(warmup) || warmup < 1) throw new Error('--warmup must be at least 1');
  const log = (msg) => process.stderr.write(`${msg}\n`);
  // Both sides get the same intra-op thread count; OMP_NUM_THREADS (when unset) too, for OpenBLAS.
  if (process.env.OMP_NUM_THREADS === undefined) process.env.OMP_NUM_THREADS = String(threads);
  torch.setNumThreads(threads);

  const dir = flags.has('keep')
    ? path.resolve(flags.get('keep'))
    : fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-model-forward-'));
  fs.mkdirSync(dir, { recursive: true });
  const checkpoint = path.join(dir, 'checkpoint');
  const inputsFile = path.join(dir, 'inputs.safetensors');
  const started = process.hrtime.bigint();
  const loadBefore = os.loadavg()[0];
  try {
    // ---- the shared checkpoint and inputs ----
    const { config, params, visionParams } = await writeSmallQwen2Vl(checkpoint, { seed });
    const { imageTokens, ...tensors } = buildInputs(config, batch, seq, grid, seed);
    await torch.saveSafetensors(inputsFile, tensors);
    for (const t of Object.values(tensors)) t.dispose();
    log(
      `checkpoint and inputs in ${dir} (${(params / 1e6).toFixed(2)}M params, ${batch}x${seq} tokens, ${imageTokens} image tokens)`,
    );

    // ---- measurements ----
    const common = [
      '--checkpoint',
      checkpoint,
      '--inputs',
      inputsFile,
      '--threads',
      String(threads),
      '--reps',
      String(reps),
      '--warmup',
      String(warmup),
    ];
    const results = { vlalign: [], pytorch: [] };
    const logitsOf = (side, round) => path.join(dir, `logits-${side}-${round}.safetensors`);
    const measure = (side, round) => {
      const args = [...common, '--save-logits', logitsOf(side, round)];
      const mine = [
        '--child',
        ...args,
        ...(flags.get('grad-checkpointing') === 'true' ? ['--grad-checkpointing'] : []),
      ];
      const r = side === 'vlalign' ? runNodeChild(mine) : runPythonPeer(peerScript, args);
      results[side].push(r);
      log(
        `  round ${round + 1}/${rounds} ${side.padEnd(8)} forward ${r.forward_s.toFixed(3)} s, fwd+bwd ${r.fwd_bwd_s.toFixed(3)} s, ` +
          `peak ${r.peak_rss_mb.toFixed(0)} MB, loss ${r.loss.toPrecision(7)}  [${seconds(started).toFixed(0)} s]`,
      );
    };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['vlalign', 'pytorch'] : ['pytorch', 'vlalign'];
      for (const side of order) measure(side, round);
    }
    const logitsMaxDiff = await maxAbsDiff(logitsOf('vlalign', 0), logitsOf('pytorch', 0));

    // ---- summary ----
    const tokens = batch * seq;
    const summary = (side) => {
      const rs = results[side];
      const forwardReps = rs.flatMap((r) => r.forward_s_reps);
      const fwdBwdReps = rs.flatMap((r) => r.fwd_bwd_s_reps);
      const forwardS = median(forwardReps);
      const fwdBwdS = median(fwdBwdReps);
      return {
        forwardS,
        fwdBwdS,
        forwardTokS: tokens / forwardS,
        fwdBwdTokS: tokens / fwdBwdS,
        // Best rep: less sensitive than the median to other load on a shared machine.
        forwardBestTokS: tokens / Math.min(...forwardReps),
        fwdBwdBestTokS: tokens / Math.min(...fwdBwdReps),
        peakRssMb: Math.max(...rs.map((r) => r.peak_rss_mb)),
        forwardExtraMb: Math.max(...rs.map((r) => r.forward_extra_mb)),
        fwdBwdExtraMb: Math.max(...rs.map((r) => r.fwd_bwd_extra_mb)),
        loss: rs[0].loss,
        logitsSum: rs[0].logits_sum,
        forwardSReps: forwardReps,
        fwdBwdSReps: fwdBwdReps,
      };
    };
    const ours = summary('vlalign');
    const peer = summary('pytorch');
    const forwardRatio = ours.forwardTokS / peer.forwardTokS;
    const fwdBwdRatio = ours.fwdBwdTokS / peer.fwdBwdTokS;
    const forwardBestRatio = ours.forwardBestTokS / peer.forwardBestTokS;
    const fwdBwdBestRatio = ours.fwdBwdBestTokS / peer.fwdBwdBestTokS;
    const logitsOk = logitsMaxDiff <= LOGITS_TOLERANCE;
    const lossDiff = Math.abs(ours.loss - peer.loss);

    const range = (xs) => `${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)}`;
    console.log(
      `model-forward: small Qwen2-VL (${(params / 1e6).toFixed(1)}M params, ${(visionParams / 1e6).toFixed(1)}M vision), float32, ` +
        `batch ${batch} x seq ${seq} (${imageTokens} image tokens from ${grid ? `${grid[0]}x${grid[1]}` : 'no'} patches), ${threads} threads, ` +
        `${rounds} round(s) x ${reps} reps`,
    );
    console.log(
      table(
        ['', 'vlalign', 'PyTorch eager', 'ratio'],
        [
          ['forward tok/s', ours.forwardTokS, peer.forwardTokS, `${forwardRatio.toFixed(2)}x`],
          ['fwd+bwd tok/s', ours.fwdBwdTokS, peer.fwdBwdTokS, `${fwdBwdRatio.toFixed(2)}x`],
          ['forward tok/s, best rep', ours.forwardBestTokS, peer.forwardBestTokS, `${forwardBestRatio.toFixed(2)}x`],
          ['fwd+bwd tok/s, best rep', ours.fwdBwdBestTokS, peer.fwdBwdBestTokS, `${fwdBwdBestRatio.toFixed(2)}x`],
          ['forward s (median)', ours.forwardS, peer.forwardS, ''],
          ['fwd+bwd s (median)', ours.fwdBwdS, peer.fwdBwdS, ''],
          ['peak RSS MB', ours.peakRssMb, peer.peakRssMb, `${(ours.peakRssMb / peer.peakRssMb).toFixed(2)}x`],
          ['fwd+bwd extra MB', ours.fwdBwdExtraMb, peer.fwdBwdExtraMb, ''],
        ],
      ),
    );
    console.log(
      `rep ranges (s): forward vlalign ${range(ours.forwardSReps)}, PyTorch ${range(peer.forwardSReps)}; ` +
        `fwd+bwd vlalign ${range(ours.fwdBwdSReps)}, PyTorch ${range(peer.fwdBwdSReps)}`,
    );
    console.log(
      `agreement: max |logits diff| ${logitsMaxDiff.toExponential(2)} (${logitsOk ? 'ok' : 'FAILED'}, tolerance ${LOGITS_TOLERANCE}), ` +
        `loss ${ours.loss.toFixed(6)} vs ${peer.loss.toFixed(6)}`,
    );
    console.log(
      'ratios are vlalign / PyTorch throughput (target >= 1.0); tok/s rows are medians of all reps unless marked best',
    );

    const round4 = (o) =>
      Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Array.isArray(v) ? v.map((x) => sig(x)) : sig(v)]));
    printJsonLine({
      bench: 'model-forward',
      forwardRatio: sig(forwardRatio),
      fwdBwdRatio: sig(fwdBwdRatio),
      forwardBestRatio: sig(forwardBestRatio),
      fwdBwdBestRatio: sig(fwdBwdBestRatio),
      vlalignForwardTokS: sig(ours.forwardTokS),
      pytorchForwardTokS: sig(peer.forwardTokS),
      vlalignFwdBwdTokS: sig(ours.fwdBwdTokS),
      pytorchFwdBwdTokS: sig(peer.fwdBwdTokS),
      vlalignPeakRssMb: sig(ours.peakRssMb),
      pytorchPeakRssMb: sig(peer.peakRssMb),
      logitsMaxDiff: sig(logitsMaxDiff, 3),
      logitsOk,
      lossDiff: sig(lossDiff, 3),
      batch,
      seq,
      image: grid,
      imageTokens,
      params,
      threads,
      rounds,
      reps,
      vlalign: round4(ours),
      pytorch: round4(peer),
      torchVersion: torch.buildInfo().torchVersion,
      sourceHash: torch.buildInfo().sourceHash,
      loadAvg: [sig(loadBefore, 3), sig(os.loadavg()[0], 3)],
      seconds: sig(seconds(started), 3),
    });
    if (!logitsOk) process.exitCode = 1;
  } finally {
    if (!flags.has('keep')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (flags.has('child')) await runChild();
else await runParent();
