// One MPO training step of the small Qwen2-VL, in pairs/s and peak memory: vlalign (packed pairs,
// fused loss) against Python PyTorch eager doing what TRL's DPOTrainer does
// (bench/peers/train_mpo.py), from one checkpoint and one set of inputs (issue #11).
//
//   node bench/train-mpo.mjs [--quick] [--threads 2] [--reps 3] [--warmup 1] [--rounds 2] [--seed 0]
//                            [--variant full|lora|both] [--pairs 4] [--question 30] [--completion 64]
//                            [--image 32x32] [--keep DIR]
//
// Workload: P pairs (default 4), each one 448x448 image (a 32x32 grid of 14-px patches = 1024
// patches, 256 merged image tokens) in a Qwen2-VL chat prompt with a --question-token question,
// and a chosen and a rejected completion of --completion tokens. Both sides load the peer's small
// Qwen2-VL (model_forward.py --print-config), randomly initialised here and saved with
// savePretrained, and read the same inputs file. A step is policy forward + loss + backward +
// AdamW (lr 1e-5, weight decay 0.01), the reference computed every step:
//   vlalign   packPairs (prompt and image once per pair, rejected tokens masked from chosen ones)
//             -> pairForward of the reference under noGrad (full: a second copy of the weights;
//             lora: the same model in withAdaptersDisabled) and of the policy -> PreferenceLoss
//             { ...losses.MPO } (fused LM head: no [rows, L, V] logits) -> backward -> AdamW
//   PyTorch   2P rows (chosen, then rejected), pixel values duplicated, logits [2P, L, V]
//             materialised, TRL's selective_log_softmax, the reference forward after the policy's
//             under no_grad, TRL's legacy MPO math, backward, torch.optim.AdamW
// The full variant trains every parameter (vision tower included); the LoRA variant trains a
// PEFT LoRA (r 16, alpha 32, the decoder's 7 projections; its initial factors written once here and
// loaded by both sides) and freezes the rest.
// Every measurement is a fresh process (this script with --child, or the peer) that loads the
// checkpoint and inputs, resets the peak-RSS counter, runs --warmup untimed then --reps timed
// steps; rounds alternate which side goes first. pairs/s = P / median of all rounds' reps; peak
// RSS = the process's VmHWM at its end (the largest over rounds). Agreement: the first step's loss
// of the two sides (the same weights and inputs) must agree to 1e-3 relative; later steps' losses
// are printed too (they follow each side's own updates).
// The inputs are processor-batch-shaped tensors built here, not through a processor: the small
// model's vocabulary (8192 ids, the special tokens at the top) has no tokenizer. packPairs reads only
// the pad id, the padding side and the image placeholder id of its processor argument, which a
// plain object gives.
// Prints a table, then one JSON line, last on stdout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { adapters, losses, models, optim, torch } from 'vlalign';
import { packPairs } from '../dist/data/pack_pairs.js';
import { pairForward } from '../dist/train/pair_forward.js';
import {
  intFlag,
  median,
  parseFlags,
  printJsonLine,
  procStatus,
  resetPeak,
  runNodeScript,
  runPythonPeer,
  secondsSince,
  sig,
  table,
} from './lib/report.mjs';
import { parsePatchGrid, writeSmallQwen2Vl } from './lib/small_model.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const peerScript = path.join(here, 'peers/train_mpo.py');
const flags = parseFlags();
const LOSS_TOLERANCE = 1e-3; // relative, first step
const TARGETS = { pairsPerSecond: 2.0, peakMemory: 0.6 };
const LR = 1e-5;
const WEIGHT_DECAY = 0.01;
const LORA = { r: 16, loraAlpha: 32, loraDropout: 0 };

// ---- child: vlalign training steps -------------------------------------------------------------------

// The duck-typed processor packPairs reads (see the header): right padding, pad = <|endoftext|>.
function processorOf(config) {
  const pad = config.vision_start_token_id - 9;
  return {
    source: 'bench/train-mpo',
    options: { padTokenId: pad, paddingSide: 'right' },
    tokenizer: { padTokenId: pad, paddingSide: 'right' },
    imagePad: { id: config.image_token_id, token: '<|image_pad|>' },
  };
}

async function loadPacked(inputsFile, config) {
  const t = await torch.loadSafetensors(inputsFile);
  const shared = { pixelValues: t.pixel_values, imageGridThw: t.image_grid_thw };
  const batch = (side) => ({
    inputIds: t[`${side}_input_ids`],
    attentionMask: torch.onesLike(t[`${side}_input_ids`]),
    labels: t[`${side}_labels`],
    ...shared,
  });
  const packed = packPairs(processorOf(config), batch('chosen'), batch('rejected'));
  return packed;
}

async function runChild() {
  const dir = flags.get('checkpoint');
  const variant = flags.get('variant');
  const reps = intFlag(flags, 'reps', 3);
  const warmup = Number(flags.get('warmup') ?? 1);
  torch.setNumThreads(intFlag(flags, 'threads', 2));
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));

  const start = process.hrtime.bigint();
  const policy = await models.fromPretrained(dir);
  policy.train();
  let reference;
  let trainable;
  if (variant === 'full') {
    const ref = await models.fromPretrained(dir);
    ref.eval().requiresGrad_(false);
    reference = (packed) => ({ ...pairForward(ref, packed), head: ref.lmHead() });
    trainable = policy.parameters().filter((p) => p.requiresGrad);
  } else {
    const lora = await adapters.loadAdapter(policy, flags.get('adapter'), { trainable: true });
    reference = (packed) => ({
      ...lora.withAdaptersDisabled(() => pairForward(policy, packed)),
      head: policy.lmHead(),
    });
    trainable = lora.trainableParameters().map(([, p]) => p);
  }
  const opt = new optim.AdamW(trainable, { lr: LR, weightDecay: WEIGHT_DECAY });
  const loss = new losses.PreferenceLoss({ ...losses.MPO });
  const buildS = secondsSince(start);
  const packed = await loadPacked(flags.get('inputs'), config);

  const step = () =>
    torch.tidy(() => {
      // The reference first: only its gathered hidden states [2P, W, D] outlive its forward.
      const ref = torch.noGrad(() => reference(packed));
      const { hidden, targets } = pairForward(policy, packed);
      const result = loss.compute({ hidden, targets, ref: { hidden: ref.hidden, head: ref.head } }, policy.lmHead());
      result.loss.backward();
      opt.step();
      opt.zeroGrad();
      return result.loss.item();
    });

  const hwmReset = resetPeak();
  const before = procStatus().VmRSS;
  const stepLosses = [];
  for (let k = 0; k < warmup; k++) stepLosses.push(step());
  const times = [];
  for (let k = 0; k < reps; k++) {
    const t0 = process.hrtime.bigint();
    stepLosses.push(step());
    times.push(secondsSince(t0));
  }
  const status = procStatus();
  const stepS = median(times);
  printJsonLine({
    peer: 'vlalign',
    variant,
    threads: torch.getNumThreads(),
    pairs: packed.pairs,
    packedSeq: packed.inputIds.shape[1],
    trainable_params: trainable.reduce((n, p) => n + p.numel(), 0),
    build_s: buildS,
    step_s: stepS,
    pairs_s: packed.pairs / stepS,
    step_s_reps: times,
    losses: stepLosses,
    peak_rss_mb: status.VmHWM,
    step_extra_mb: status.VmHWM - before,
    hwm_reset: hwmReset,
    sourceHash: torch.buildInfo().sourceHash,
  });
}

// ---- parent: checkpoint, inputs, adapter, both sides, report ---------------------------------------

/**
 * The chosen and rejected processor batches of P pairs, as Qwen2-VL's chat template lays them out:
 *   <|im_start|> user \n <|vision_start|> <|image_pad|>*(H·W/4) <|vision_end|> question*Q <|im_end|> \n
 *   <|im_start|> assistant \n | completion*C
 * (role words and text = random ordinary ids), labels -100 on the prompt; pixel values ~ N(0, 1).
 */
function buildInputs(config, { pairs, question, completion, grid, seed }) {
  torch.manualSeed(seed);
  const first = config.vision_start_token_id - 9; // <|endoftext|>, the first special id
  const [imStart, imEnd] = [first + 1, first + 2];
  const vc = config.vision_config;
  const imageTokens = (grid[0] * grid[1]) / vc.spatial_merge_size ** 2;
  const words = () =>
    Array.from(
      torch.tidy(() => torch.randint(0, first, [1]).data()),
      Number,
    )[0];
  const text = (n) =>
    Array.from(
      torch.tidy(() => torch.randint(0, first, [n]).data()),
      Number,
    );
  const rows = { chosen: [], rejected: [] };
  for (let i = 0; i < pairs; i++) {
    const newline = words();
    const prompt = [
      imStart,
      words(),
      newline,
      config.vision_start_token_id,
      ...Array(imageTokens).fill(config.image_token_id),
      config.vision_end_token_id,
      ...text(question),
      imEnd,
      newline,
      imStart,
      words(),
      newline,
    ];
    for (const side of ['chosen', 'rejected'])
      rows[side].push({ prompt, completion: [...text(completion - 1), imEnd] });
  }
  const row = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2;
  const out = {
    pixel_values: torch.randn([pairs * grid[0] * grid[1], row]),
    image_grid_thw: torch.tensor(
      Array.from({ length: pairs }, () => [1, grid[0], grid[1]]),
      { dtype: 'int64' },
    ),
  };
  for (const side of ['chosen', 'rejected']) {
    const ids = rows[side].map((r) => [...r.prompt, ...r.completion]);
    const labels = rows[side].map((r) => [...r.prompt.map(() => -100), ...r.completion]);
    out[`${side}_input_ids`] = torch.tensor(ids, { dtype: 'int64' });
    out[`${side}_labels`] = torch.tensor(labels, { dtype: 'int64' });
  }
  return { tensors: out, promptTokens: rows.chosen[0].prompt.length, imageTokens };
}

/** A fresh LoRA on the checkpoint's model, written once so both sides start from the same factors. */
async function writeAdapter(checkpoint, dir, seed) {
  torch.manualSeed(seed);
  const model = await models.fromPretrained(checkpoint);
  const lora = adapters.getPeftModel(model, { ...LORA, targetModules: adapters.languageModelTargets(model) });
  await lora.saveAdapter(dir);
  const count = lora.trainableParameters().reduce((n, [, p]) => n + p.numel(), 0);
  lora.dispose();
  return count;
}

async function runParent() {
  const quick = flags.get('quick') === 'true';
  const threads = intFlag(flags, 'threads', 2);
  const reps = intFlag(flags, 'reps', quick ? 2 : 3);
  const rounds = intFlag(flags, 'rounds', quick ? 1 : 2);
  const warmup = Number(flags.get('warmup') ?? 1);
  const seed = Number(flags.get('seed') ?? 0);
  const pairs = intFlag(flags, 'pairs', 4);
  const question = intFlag(flags, 'question', 30);
  const completion = intFlag(flags, 'completion', 64);
  const grid = parsePatchGrid(flags.get('image') ?? '32x32', '32x32');
  const variantFlag = String(flags.get('variant') ?? 'both');
  if (!['full', 'lora', 'both'].includes(variantFlag))
    throw new Error(`--variant expects full, lora or both, got ${variantFlag}`);
  const variants = variantFlag === 'both' ? ['full', 'lora'] : [variantFlag];
  if (!Number.isInteger(warmup) || warmup < 1) throw new Error('--warmup must be at least 1');
  const log = (msg) => process.stderr.write(`${msg}\n`);
  if (process.env.OMP_NUM_THREADS === undefined) process.env.OMP_NUM_THREADS = String(threads);
  torch.setNumThreads(threads);

  const dir = flags.has('keep')
    ? path.resolve(flags.get('keep'))
    : fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-train-mpo-'));
  fs.mkdirSync(dir, { recursive: true });
  const checkpoint = path.join(dir, 'checkpoint');
  const inputsFile = path.join(dir, 'inputs.safetensors');
  const adapterDir = path.join(dir, 'adapter');
  const started = process.hrtime.bigint();
  const loadBefore = os.loadavg()[0];
  try {
    // ---- the shared checkpoint, inputs and adapter ----
    const { config, params } = await writeSmallQwen2Vl(checkpoint, { seed });
    const { tensors, promptTokens, imageTokens } = buildInputs(config, { pairs, question, completion, grid, seed });
    await torch.saveSafetensors(inputsFile, tensors);
    for (const t of Object.values(tensors)) t.dispose();
    const loraParams = variants.includes('lora') ? await writeAdapter(checkpoint, adapterDir, seed + 1) : 0;
    log(
      `checkpoint, inputs and adapter in ${dir} (${(params / 1e6).toFixed(2)}M params; ${pairs} pairs of a ${promptTokens}-token prompt ` +
        `with ${imageTokens} image tokens + ${completion}-token completions)`,
    );

    // ---- measurements ----
    const results = Object.fromEntries(variants.map((v) => [v, { vlalign: [], pytorch: [] }]));
    const measure = (variant, side, round) => {
      const args = [
        '--checkpoint',
        checkpoint,
        '--inputs',
        inputsFile,
        '--variant',
        variant,
        '--threads',
        String(threads),
        '--reps',
        String(reps),
        '--warmup',
        String(warmup),
        ...(variant === 'lora' ? ['--adapter', adapterDir] : []),
      ];
      const r = side === 'vlalign' ? runNodeScript(self, ['--child', ...args]) : runPythonPeer(peerScript, args);
      results[variant][side].push(r);
      log(
        `  ${variant} round ${round + 1}/${rounds} ${side.padEnd(8)} step ${r.step_s.toFixed(3)} s (${r.pairs_s.toFixed(3)} pairs/s), ` +
          `peak ${r.peak_rss_mb.toFixed(0)} MB, first loss ${r.losses[0].toPrecision(7)}  [${secondsSince(started).toFixed(0)} s]`,
      );
    };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['vlalign', 'pytorch'] : ['pytorch', 'vlalign'];
      for (const variant of variants) for (const side of order) measure(variant, side, round);
    }

    // ---- summary ----
    const summary = (rs) => {
      const reps = rs.flatMap((r) => r.step_s_reps);
      const stepS = median(reps);
      return {
        stepS,
        pairsS: pairs / stepS,
        bestPairsS: pairs / Math.min(...reps),
        peakRssMb: Math.max(...rs.map((r) => r.peak_rss_mb)),
        stepExtraMb: Math.max(...rs.map((r) => r.step_extra_mb)),
        losses: rs[0].losses,
        trainableParams: rs[0].trainable_params,
        stepSReps: reps,
      };
    };
    const report = {};
    for (const variant of variants) {
      const ours = summary(results[variant].vlalign);
      const peer = summary(results[variant].pytorch);
      const lossRelDiff = Math.abs(ours.losses[0] - peer.losses[0]) / Math.abs(peer.losses[0]);
      const stepDiffs = ours.losses.map((l, k) => Math.abs(l - peer.losses[k]) / Math.abs(peer.losses[k]));
      report[variant] = {
        ours,
        peer,
        pairsRatio: ours.pairsS / peer.pairsS,
        bestPairsRatio: ours.bestPairsS / peer.bestPairsS,
        memRatio: ours.peakRssMb / peer.peakRssMb,
        lossRelDiff,
        maxStepLossRelDiff: Math.max(...stepDiffs),
        lossOk: lossRelDiff <= LOSS_TOLERANCE,
      };
    }

    console.log(
      `train-mpo: small Qwen2-VL (${(params / 1e6).toFixed(1)}M params, float32), ${pairs} pairs x (${promptTokens}-token prompt ` +
        `with a ${grid[0] * 14}x${grid[1] * 14} image = ${imageTokens} image tokens + ${completion}-token chosen/rejected), ` +
        `MPO (sigmoid 0.8 + bco_pair 0.2 + sft 1.0, legacy), AdamW, ${threads} threads, ${rounds} round(s) x ${reps} reps`,
    );
    const rows = [];
    for (const variant of variants) {
      const r = report[variant];
      const name = variant === 'full' ? 'full' : `LoRA r${LORA.r} (${(loraParams / 1e6).toFixed(2)}M)`;
      rows.push(
        [
          `${name} pairs/s`,
          r.ours.pairsS,
          r.peer.pairsS,
          `${r.pairsRatio.toFixed(2)}x`,
          `>= ${TARGETS.pairsPerSecond}x`,
          r.pairsRatio >= TARGETS.pairsPerSecond ? 'met' : 'MISSED',
        ],
        [`${name} pairs/s, best rep`, r.ours.bestPairsS, r.peer.bestPairsS, `${r.bestPairsRatio.toFixed(2)}x`, '', ''],
        [
          `${name} peak RSS MB`,
          r.ours.peakRssMb,
          r.peer.peakRssMb,
          `${r.memRatio.toFixed(2)}x`,
          `<= ${TARGETS.peakMemory}x`,
          r.memRatio <= TARGETS.peakMemory ? 'met' : 'MISSED',
        ],
        [`${name} step extra MB`, r.ours.stepExtraMb, r.peer.stepExtraMb, '', '', ''],
      );
    }
    console.log(table(['', 'vlalign', 'PyTorch eager (TRL)', 'ratio', 'target', ''], rows));
    const range = (xs) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
    for (const variant of variants) {
      const r = report[variant];
      console.log(
        `${variant}: step s ranges vlalign ${range(r.ours.stepSReps)}, PyTorch ${range(r.peer.stepSReps)}; ` +
          `first-step loss ${r.ours.losses[0].toFixed(6)} vs ${r.peer.losses[0].toFixed(6)} ` +
          `(relative ${r.lossRelDiff.toExponential(2)}, ${r.lossOk ? 'ok' : 'FAILED'}, tolerance ${LOSS_TOLERANCE}); ` +
          `losses by step vlalign [${r.ours.losses.map((l) => l.toFixed(5))}], PyTorch [${r.peer.losses.map((l) => l.toFixed(5))}]`,
      );
    }
    console.log(
      'ratios are vlalign / PyTorch (pairs/s: higher is better; peak RSS: lower is better); pairs/s rows are medians of all reps unless marked best',
    );

    const compact = (o) =>
      Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Array.isArray(v) ? v.map((x) => sig(x, 6)) : sig(v)]));
    printJsonLine({
      bench: 'train-mpo',
      ...Object.fromEntries(
        variants.flatMap((v) => [
          [`${v}PairsRatio`, sig(report[v].pairsRatio)],
          [`${v}MemRatio`, sig(report[v].memRatio)],
          [`${v}LossOk`, report[v].lossOk],
        ]),
      ),
      targets: TARGETS,
      variants: Object.fromEntries(
        variants.map((v) => [
          v,
          {
            pairsRatio: sig(report[v].pairsRatio),
            bestPairsRatio: sig(report[v].bestPairsRatio),
            memRatio: sig(report[v].memRatio),
            lossRelDiff: sig(report[v].lossRelDiff, 3),
            maxStepLossRelDiff: sig(report[v].maxStepLossRelDiff, 3),
            vlalign: compact(report[v].ours),
            pytorch: compact(report[v].peer),
          },
        ]),
      ),
      pairs,
      promptTokens,
      imageTokens,
      completion,
      image: grid,
      params,
      loraParams,
      threads,
      rounds,
      reps,
      warmup,
      torchVersion: torch.buildInfo().torchVersion,
      sourceHash: torch.buildInfo().sourceHash,
      loadAvg: [sig(loadBefore, 3), sig(os.loadavg()[0], 3)],
      seconds: sig(secondsSince(started), 3),
    });
    if (variants.some((v) => !report[v].lossOk)) process.exitCode = 1;
  } finally {
    if (!flags.has('keep')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (flags.has('child')) await runChild();
else await runParent();
