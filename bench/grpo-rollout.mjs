// GRPO rollouts of the small Qwen2-VL in generated tokens/s, and whole GRPO steps in steps/s:
// vlalign's rollout (one prefill per prompt, the KV cache widened to G rows) and GrpoMethod's step
// against Python PyTorch eager doing what TRL's GRPOTrainer does (bench/peers/grpo_rollout.py:
// every prompt and its image repeated G times, then generate's KV-cache sampling loop;
// bench/peers/grpo_step.py: that rollout, then the training forward, loss, backward and AdamW),
// from one checkpoint and one prompts file (issue #12).
//
//   node bench/grpo-rollout.mjs [--quick] [--threads 2] [--reps 3] [--warmup 1] [--rounds 2] [--seed 0]
//                               [--prompts 4] [--generations 8] [--new-tokens 64] [--question 30]
//                               [--image 16x16] [--temperature 1] [--top-k 0] [--top-p 1] [--keep DIR]
//                               [--step false] [--peer-vision batch|per-image]
//
// Workload: B prompts (default 4), each one image (--image in 14-px patches: 16x16 = 224x224 px,
// 256 patches, 64 merged image tokens) in a Qwen2-VL chat prompt with a --question-token question;
// G completions (default 8) of exactly --new-tokens tokens (default 64) per prompt: stop tokens are
// off on both sides, so both generate B·G·T tokens. Sampling uses TRL's defaults (temperature 1,
// top-k off, top-p 1). Both sides load the peer's small Qwen2-VL (model_forward.py --print-config),
// randomly initialised here and saved with savePretrained, and read the same prompts file.
//   vlalign   rollout(model, prompts, { numGenerations: G }): the B prompts prefilled once (the
//             vision tower on B images), cache / rope deltas / mask / logits widened to B·G rows,
//             then B·G rows decode; vision special tokens and pad suppressed; per-token log-probs
//             (the old-policy log-probs) returned with the tokens
//   PyTorch   B·G rows (pixel values repeated per completion), the vision tower on B·G images, a
//             prefill of B·G rows, generate()'s loop (torch.cat cache, suppress_tokens = the same
//             vision ids, warpers, multinomial)
// GRPO step (--step false skips it): one optimizer step of TRL's defaults on the B·G completions,
// loss_type dapo, beta 0, num_iterations 1, per_device_train_batch_size 8 x
// gradient_accumulation_steps 4 = B·G (one generation per step), AdamW lr 1e-6, weight decay 0,
// max_grad_norm 1, every parameter trained; the reward on both sides is (sum of the completion's
// token ids mod 5) / 4, so groups have reward variance. The checkpoint has no eos_token_id, so
// the trainer's rollout, like the peer's, makes exactly T tokens per completion.
//   vlalign   GrpoMethod as the trainer's rollout loop drives it: rollouts.generate (prompts
//             encoded once, the shared-prefill rollout, rewards, group advantages, micro-batches of
//             packed groups: each prompt and image once per micro-batch), then per window each
//             micro-batch's loss (groupForward + GrpoLoss through the fused LM head) and backward,
//             clipGradNorm_, AdamW step. The processor is a stand-in that hands back the prompts
//             file's rows (no tokenizer for the small vocabulary).
//   PyTorch   the peer rollout above, rewards, advantages, the rows shuffled and cut into 4
//             micro-batches of 8 rows ([prompt ; completion], each row its own image); per
//             micro-batch the training forward with logits on the last C + 1 positions, / T,
//             selective_log_softmax, entropies (no grad), the dapo loss, backward; clip, AdamW.
// --peer-vision: the peer's vision tower as transformers v4.47.1's eager attention runs it (batch:
// one masked [N, N] score matrix over all N patches of the B·G images, the default, as every peer
// here) or once per image (per-image: what later transformers releases cost). The batch mask makes
// the peer's vision tower quadratic in B·G·patches, and that dominates its rollout.
// Every measurement is a fresh process (this script with --child, or the peer) that loads the
// checkpoint and prompts, resets the peak-RSS counter, runs --warmup untimed then --reps timed
// rollouts; rounds alternate which side goes first. tokens/s = B·G·T / median of all rounds' reps.
// Agreement: both sides also decode each prompt greedily for --check tokens (untimed); the token
// lists must be equal (the same weights and inputs; a random init with std 0.02 leaves margins of
// ~0.05 between the top logits, far above float32 rounding).
// The prompts are processor-batch-shaped tensors built here (the small model's vocabulary has no
// tokenizer): the same layout as bench/train-mpo.mjs.
// Each side also reports its process's CPU seconds per rollout (user + system, all threads): on a
// shared, loaded machine wall time stretches with the load, CPU time much less, so the table
// gives tokens per CPU second beside tokens/s.
// Prints a table, then one JSON line, last on stdout. The load average before and after is in the
// JSON line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { models, optim, torch } from 'vlalign';
import { rollout } from '../dist/generation/rollout.js';
import { sumCounts } from '../dist/train/methods/method.js';
import { grpoConfig } from '../dist/train/grpo/config.js';
import { GrpoMethod } from '../dist/train/grpo/method.js';
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
const peerScript = path.join(here, 'peers/grpo_rollout.py');
const stepPeerScript = path.join(here, 'peers/grpo_step.py');
const flags = parseFlags();
const TARGETS = { tokensPerSecond: 2.0, stepsPerSecond: 1.5 };
// The step's optimisation settings, TRL's GRPOConfig defaults (the peer takes the same numbers).
const VISION_ID_KEYS = [
  'image_token_id',
  'video_token_id',
  'vision_start_token_id',
  'vision_end_token_id',
  'vision_token_id',
];
const STEP = { microBatch: 8, accumulation: 4, lr: 1e-6, maxGradNorm: 1, rewardModulus: 5 };

function samplingFlags() {
  return {
    temperature: Number(flags.get('temperature') ?? 1),
    topK: Number(flags.get('top-k') ?? 0),
    topP: Number(flags.get('top-p') ?? 1),
  };
}

// ---- child: vlalign rollouts ----------------------------------------------------------------------

async function runChild() {
  const reps = intFlag(flags, 'reps', 3);
  const warmup = Number(flags.get('warmup') ?? 1);
  const generations = intFlag(flags, 'generations', 8);
  const newTokens = intFlag(flags, 'new-tokens', 64);
  const check = Number(flags.get('check') ?? 0);
  const seed = Number(flags.get('seed') ?? 0);
  torch.setNumThreads(intFlag(flags, 'threads', 2));

  const start = process.hrtime.bigint();
  const model = await models.fromPretrained(flags.get('checkpoint'));
  model.eval();
  const buildS = secondsSince(start);
  const t = await torch.loadSafetensors(flags.get('inputs'));
  const prompts = {
    inputIds: t.input_ids,
    attentionMask: t.attention_mask,
    pixelValues: t.pixel_values,
    imageGridThw: t.image_grid_thw,
  };
  const [rows, promptTokens] = prompts.inputIds.shape;
  const greedy =
    check > 0
      ? rollout(model, prompts, {
          numGenerations: 1,
          maxNewTokens: check,
          doSample: false,
          stopTokenIds: [],
          suppressTokenIds: [],
        }).tokens
      : [];
  const options = { ...samplingFlags(), numGenerations: generations, maxNewTokens: newTokens, stopTokenIds: [] };

  const hwmReset = resetPeak();
  const before = procStatus().VmRSS;
  torch.manualSeed(seed);
  let out;
  for (let k = 0; k < warmup; k++) out = rollout(model, prompts, options);
  const times = [];
  const cpu = [];
  for (let k = 0; k < reps; k++) {
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    out = rollout(model, prompts, options);
    times.push(secondsSince(t0));
    const used = process.cpuUsage(cpu0);
    cpu.push((used.user + used.system) / 1e6);
  }
  const status = procStatus();
  const generated = out.tokens.reduce((n, row) => n + row.length, 0);
  const rolloutS = median(times);
  printJsonLine({
    peer: 'vlalign',
    threads: torch.getNumThreads(),
    prompts: rows,
    rows: out.tokens.length,
    prompt_tokens: promptTokens,
    generated,
    build_s: buildS,
    rollout_s: rolloutS,
    tokens_s: generated / rolloutS,
    rollout_s_reps: times,
    cpu_s_reps: cpu,
    greedy,
    mean_logprob: out.logprobs.flat().reduce((a, b) => a + b, 0) / generated,
    peak_rss_mb: status.VmHWM,
    rollout_extra_mb: status.VmHWM - before,
    hwm_reset: hwmReset,
    sourceHash: torch.buildInfo().sourceHash,
  });
}

// ---- child: vlalign GRPO steps ---------------------------------------------------------------------

/**
 * The deterministic reward both sides use: (sum of the completion's token ids mod k) / (k - 1), so
 * the rewards of a group vary and the advantages are not all zero.
 */
function tokenSumReward(ids, k = STEP.rewardModulus) {
  return (ids.reduce((a, b) => a + b, 0) % k) / (k - 1);
}

// The duck-typed processor GrpoMethod reads (the small model has no tokenizer): `process` hands back
// prompt i's processor batch from the prompts file (record.prompt = "prompt i"), the pad id is
// <|endoftext|> with left padding, and decode writes the ids as text (the reward reads completionIds).
function stepProcessor(config, t) {
  const pad = config.vision_start_token_id - 9;
  const patches = t.image_grid_thw.prod(1).data();
  const offsets = [0];
  for (const n of patches) offsets.push(offsets.at(-1) + Number(n));
  const tokenizer = {
    padTokenId: pad,
    paddingSide: 'left',
    findTokenId: () => null,
    decode: (ids) => ids.join(' '),
  };
  return {
    source: 'bench/grpo-rollout',
    options: { padTokenId: pad, paddingSide: 'left' },
    tokenizer,
    imagePad: { id: config.image_token_id, token: '<|image_pad|>' },
    process: async ([sample]) => {
      const i = Number(/^prompt (\d+)$/.exec(sample.prompt)?.[1]);
      return torch.tidy(() => {
        const inputIds = t.input_ids.narrow(0, i, 1).clone();
        return {
          inputIds,
          attentionMask: t.attention_mask.narrow(0, i, 1).clone(),
          labels: torch.fullLike(inputIds, -100),
          pixelValues: t.pixel_values.narrow(0, offsets[i], offsets[i + 1] - offsets[i]).clone(),
          imageGridThw: t.image_grid_thw.narrow(0, i, 1).clone(),
        };
      });
    },
  };
}

async function runStepChild() {
  const reps = intFlag(flags, 'reps', 3);
  const warmup = Number(flags.get('warmup') ?? 1);
  const generations = intFlag(flags, 'generations', 8);
  const newTokens = intFlag(flags, 'new-tokens', 64);
  const seed = Number(flags.get('seed') ?? 0);
  torch.setNumThreads(intFlag(flags, 'threads', 2));
  const dir = flags.get('checkpoint');
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));

  const start = process.hrtime.bigint();
  const model = await models.fromPretrained(dir);
  model.train();
  const t = await torch.loadSafetensors(flags.get('inputs'));
  const prompts = t.input_ids.shape[0];
  const grpo = grpoConfig({
    outputDir: path.join(dir, 'unused-output'),
    numGenerations: generations,
    maxCompletionLength: newTokens,
    perDeviceTrainBatchSize: STEP.microBatch,
    gradientAccumulationSteps: STEP.accumulation,
    learningRate: STEP.lr,
    maxGradNorm: STEP.maxGradNorm,
    ...samplingFlags(),
  });
  if (grpo.generationBatchSize !== prompts * generations)
    throw new Error(
      `one generation per step needs ${prompts} prompts x ${generations} completions = ${STEP.microBatch} x ${STEP.accumulation}`,
    );
  const method = new GrpoMethod({
    model,
    processor: stepProcessor(config, t),
    config: grpo,
    rewards: [{ name: 'token_sum_mod', fn: (batch) => batch.completionIds.map((ids) => tokenSumReward(ids)) }],
    reference: null,
    ignoreIndex: -100,
  });
  const params = model.parameters().filter((p) => p.requiresGrad);
  const opt = new optim.AdamW(params, { lr: grpo.learningRate, weightDecay: grpo.weightDecay });
  const records = Array.from({ length: prompts }, (_, i) => ({
    index: i,
    record: {
      kind: 'prompt',
      id: `prompt-${i}`,
      prompt: `prompt ${i}`,
      columns: {},
      images: [],
      source: { file: 'bench' },
    },
    pixels: [],
  }));
  const buildS = secondsSince(start);

  // The trainer's rollout loop for one generation: generate, then each window's micro-batches
  // (loss + backward), clipping, AdamW.
  let stepIndex = 0;
  const step = async () => {
    const generation = await method.rollouts.generate(records, stepIndex++);
    try {
      const losses = [];
      let microBatches = 0;
      for (const window of generation.windows) {
        const normalisers = sumCounts(window);
        let loss = 0;
        for (const batch of window) {
          const result = method.loss(batch, normalisers, 'train');
          result.loss.backward();
          loss += result.loss.item();
          result.loss.dispose();
          microBatches++;
        }
        optim.clipGradNorm_(params, grpo.maxGradNorm);
        opt.step();
        opt.zeroGrad();
        losses.push(loss);
      }
      return { losses, microBatches, windows: generation.windows.length, metrics: generation.metrics };
    } finally {
      generation.release();
    }
  };

  const hwmReset = resetPeak();
  const before = procStatus().VmRSS;
  torch.manualSeed(seed);
  const steps = [];
  for (let k = 0; k < warmup; k++) steps.push(await step());
  const times = [];
  const cpu = [];
  for (let k = 0; k < reps; k++) {
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    steps.push(await step());
    times.push(secondsSince(t0));
    const used = process.cpuUsage(cpu0);
    cpu.push((used.user + used.system) / 1e6);
  }
  const status = procStatus();
  const last = steps.at(-1);
  const stepS = median(times);
  printJsonLine({
    peer: 'vlalign',
    threads: torch.getNumThreads(),
    prompts,
    completions: prompts * generations,
    mean_length: last.metrics['completions/mean_length'],
    optimizer_steps: last.windows,
    micro_batches: last.microBatches,
    build_s: buildS,
    step_s: stepS,
    steps_s: 1 / stepS,
    step_s_reps: times,
    cpu_s_reps: cpu,
    losses: steps.map((s) => s.losses[0]),
    reward_mean: steps.map((s) => s.metrics.reward),
    reward_std: steps.map((s) => s.metrics.reward_std),
    peak_rss_mb: status.VmHWM,
    step_extra_mb: status.VmHWM - before,
    hwm_reset: hwmReset,
    sourceHash: torch.buildInfo().sourceHash,
  });
}

// ---- parent: checkpoint, prompts, both sides, report ------------------------------------------------

/**
 * B prompts as Qwen2-VL's chat template lays them out (all the same length, so no padding):
 *   <|im_start|> user \n <|vision_start|> <|image_pad|>*(H·W/4) <|vision_end|> question*Q <|im_end|> \n
 *   <|im_start|> assistant \n
 * (role words and text = random ordinary ids); pixel values ~ N(0, 1).
 */
function buildPrompts(config, { prompts, question, grid, seed }) {
  torch.manualSeed(seed);
  const first = config.vision_start_token_id - 9; // <|endoftext|>, the first special id
  const [imStart, imEnd] = [first + 1, first + 2];
  const vc = config.vision_config;
  const imageTokens = (grid[0] * grid[1]) / vc.spatial_merge_size ** 2;
  const text = (n) =>
    Array.from(
      torch.tidy(() => torch.randint(0, first, [n]).data()),
      Number,
    );
  const rows = [];
  for (let i = 0; i < prompts; i++) {
    const [user, newline, assistant] = text(3);
    rows.push([
      imStart,
      user,
      newline,
      config.vision_start_token_id,
      ...Array(imageTokens).fill(config.image_token_id),
      config.vision_end_token_id,
      ...text(question),
      imEnd,
      newline,
      imStart,
      assistant,
      newline,
    ]);
  }
  const row = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2;
  const tensors = {
    input_ids: torch.tensor(rows, { dtype: 'int64' }),
    attention_mask: torch.ones([prompts, rows[0].length], { dtype: 'int64' }),
    pixel_values: torch.randn([prompts * grid[0] * grid[1], row]),
    image_grid_thw: torch.tensor(
      Array.from({ length: prompts }, () => [1, grid[0], grid[1]]),
      { dtype: 'int64' },
    ),
  };
  return { tensors, promptTokens: rows[0].length, imageTokens };
}

async function runParent() {
  const quick = flags.get('quick') === 'true';
  const threads = intFlag(flags, 'threads', 2);
  const reps = intFlag(flags, 'reps', quick ? 2 : 3);
  const rounds = intFlag(flags, 'rounds', quick ? 1 : 2);
  const warmup = Number(flags.get('warmup') ?? 1);
  const seed = Number(flags.get('seed') ?? 0);
  const prompts = intFlag(flags, 'prompts', 4);
  const generations = intFlag(flags, 'generations', 8);
  const newTokens = intFlag(flags, 'new-tokens', 64);
  const question = intFlag(flags, 'question', 30);
  const check = intFlag(flags, 'check', 8);
  const grid = parsePatchGrid(flags.get('image') ?? '16x16', '16x16');
  const { temperature, topK, topP } = samplingFlags();
  const withStep = flags.get('step') !== 'false';
  const peerVision = String(flags.get('peer-vision') ?? 'batch');
  if (!['batch', 'per-image'].includes(peerVision))
    throw new Error(`--peer-vision expects batch or per-image, got ${peerVision}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a non-negative integer');
  const log = (msg) => process.stderr.write(`${msg}\n`);
  if (process.env.OMP_NUM_THREADS === undefined) process.env.OMP_NUM_THREADS = String(threads);
  torch.setNumThreads(threads);

  const dir = flags.has('keep')
    ? path.resolve(flags.get('keep'))
    : fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-grpo-rollout-'));
  fs.mkdirSync(dir, { recursive: true });
  const checkpoint = path.join(dir, 'checkpoint');
  const inputsFile = path.join(dir, 'prompts.safetensors');
  const started = process.hrtime.bigint();
  const loadBefore = os.loadavg()[0];
  try {
    const { config, params } = await writeSmallQwen2Vl(checkpoint, { seed, withoutStopTokens: true });
    const { tensors, promptTokens, imageTokens } = buildPrompts(config, { prompts, question, grid, seed });
    await torch.saveSafetensors(inputsFile, tensors);
    for (const t of Object.values(tensors)) t.dispose();
    log(
      `checkpoint and prompts in ${dir} (${(params / 1e6).toFixed(2)}M params; ${prompts} prompts of ${promptTokens} tokens ` +
        `with ${imageTokens} image tokens, ${generations} completions x ${newTokens} tokens each)`,
    );

    const results = { vlalign: [], pytorch: [] };
    const stepResults = { vlalign: [], pytorch: [] };
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
      '--seed',
      String(seed),
      '--generations',
      String(generations),
      '--new-tokens',
      String(newTokens),
      '--temperature',
      String(temperature),
      '--top-k',
      String(topK),
      '--top-p',
      String(topP),
    ];
    // What the vlalign side never samples (nonSampledTokenIds): the rollout measurement the config's
    // vision ids, the step also the pad id its processor names.
    const visionIds = VISION_ID_KEYS.map((k) => config[k]).filter(Number.isInteger);
    const padId = config.vision_start_token_id - 9;
    const stepCommon = [
      ...common,
      '--micro-batch',
      String(STEP.microBatch),
      '--accumulation',
      String(STEP.accumulation),
      '--lr',
      String(STEP.lr),
      '--max-grad-norm',
      String(STEP.maxGradNorm),
      '--reward-modulus',
      String(STEP.rewardModulus),
    ];
    const measure = (side, round) => {
      const r =
        side === 'vlalign'
          ? runNodeScript(self, ['--child', ...common, '--check', String(check)])
          : runPythonPeer(peerScript, [
              ...common,
              '--greedy',
              String(check),
              '--vision-attention',
              peerVision,
              '--suppress',
              visionIds.join(','),
            ]);
      results[side].push(r);
      log(
        `  round ${round + 1}/${rounds} ${side.padEnd(8)} rollout ${r.rollout_s.toFixed(3)} s (${r.tokens_s.toFixed(1)} tokens/s), ` +
          `peak ${r.peak_rss_mb.toFixed(0)} MB  [${secondsSince(started).toFixed(0)} s]`,
      );
      if (!withStep) return;
      const s =
        side === 'vlalign'
          ? runNodeScript(self, ['--child', 'step', ...common])
          : runPythonPeer(stepPeerScript, [
              ...stepCommon,
              '--vision-attention',
              peerVision,
              '--suppress',
              [...visionIds, padId].join(','),
            ]);
      stepResults[side].push(s);
      log(
        `  round ${round + 1}/${rounds} ${side.padEnd(8)} GRPO step ${s.step_s.toFixed(3)} s, losses ${s.losses.map((x) => x.toExponential(2)).join(' ')}, ` +
          `reward std ${s.reward_std.map((x) => x.toFixed(3)).join(' ')}, peak ${s.peak_rss_mb.toFixed(0)} MB  [${secondsSince(started).toFixed(0)} s]`,
      );
    };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['vlalign', 'pytorch'] : ['pytorch', 'vlalign'];
      for (const side of order) measure(side, round);
    }

    const generated = prompts * generations * newTokens;
    const summary = (rs) => {
      const reps = rs.flatMap((r) => r.rollout_s_reps);
      const rolloutS = median(reps);
      if (rs.some((r) => r.generated !== generated))
        throw new Error(`a side generated ${rs.map((r) => r.generated)} tokens, expected ${generated}`);
      const cpuS = median(rs.flatMap((r) => r.cpu_s_reps));
      return {
        rolloutS,
        tokensS: generated / rolloutS,
        cpuS,
        tokensPerCpuS: generated / cpuS,
        bestTokensS: generated / Math.min(...reps),
        peakRssMb: Math.max(...rs.map((r) => r.peak_rss_mb)),
        rolloutExtraMb: Math.max(...rs.map((r) => r.rollout_extra_mb)),
        rolloutSReps: reps,
      };
    };
    const ours = summary(results.vlalign);
    const peer = summary(results.pytorch);
    const ratio = ours.tokensS / peer.tokensS;
    const stepSummary = (rs) => {
      if (rs.length === 0) return null;
      const shape = (r) => `${r.completions}x${r.mean_length}/${r.micro_batches}/${r.optimizer_steps}`;
      const expected = `${prompts * generations}x${newTokens}/${STEP.accumulation}/1`;
      if (rs.some((r) => shape(r) !== expected))
        throw new Error(
          `a GRPO step ran ${rs.map(shape)} (completions x tokens / micro-batches / optimizer steps), expected ${expected}`,
        );
      const reps = rs.flatMap((r) => r.step_s_reps);
      const stepS = median(reps);
      const cpuS = median(rs.flatMap((r) => r.cpu_s_reps));
      return {
        stepS,
        stepsS: 1 / stepS,
        cpuS,
        stepsPerCpuS: 1 / cpuS,
        peakRssMb: Math.max(...rs.map((r) => r.peak_rss_mb)),
        stepExtraMb: Math.max(...rs.map((r) => r.step_extra_mb)),
        stepSReps: reps.map((x) => sig(x, 6)),
        losses: rs.map((r) => r.losses.map((x) => sig(x, 4))),
        rewardStd: rs.map((r) => r.reward_std.map((x) => sig(x, 4))),
      };
    };
    const ourStep = stepSummary(stepResults.vlalign);
    const peerStep = stepSummary(stepResults.pytorch);
    const stepRatio = ourStep === null ? null : ourStep.stepsS / peerStep.stepsS;
    const stepRows =
      ourStep === null
        ? []
        : [
            [
              'GRPO steps/s',
              ourStep.stepsS,
              peerStep.stepsS,
              `${stepRatio.toFixed(2)}x`,
              `>= ${TARGETS.stepsPerSecond}x`,
              stepRatio >= TARGETS.stepsPerSecond ? 'met' : 'MISSED',
            ],
            [
              'GRPO steps per CPU second',
              ourStep.stepsPerCpuS,
              peerStep.stepsPerCpuS,
              `${(ourStep.stepsPerCpuS / peerStep.stepsPerCpuS).toFixed(2)}x`,
              '',
              '',
            ],
            ['GRPO step s (median)', ourStep.stepS, peerStep.stepS, '', '', ''],
            [
              'GRPO step peak RSS MB',
              ourStep.peakRssMb,
              peerStep.peakRssMb,
              `${(ourStep.peakRssMb / peerStep.peakRssMb).toFixed(2)}x`,
              '',
              '',
            ],
            ['GRPO step extra MB', ourStep.stepExtraMb, peerStep.stepExtraMb, '', '', ''],
          ];
    const greedyOk = JSON.stringify(results.vlalign[0].greedy) === JSON.stringify(results.pytorch[0].greedy);

    console.log(
      `grpo-rollout: small Qwen2-VL (${(params / 1e6).toFixed(1)}M params, float32), ${prompts} prompts x ${generations} completions ` +
        `x ${newTokens} tokens (${promptTokens}-token prompts with a ${grid[0] * 14}x${grid[1] * 14} image = ${imageTokens} image tokens), ` +
        `temperature ${temperature}, top-k ${topK}, top-p ${topP}, ${threads} threads, ${rounds} round(s) x ${reps} reps, ` +
        `peer vision attention ${peerVision}` +
        (withStep
          ? `; GRPO step: ${STEP.microBatch} x ${STEP.accumulation} completions, dapo, beta 0, AdamW lr ${STEP.lr}, clip ${STEP.maxGradNorm}`
          : ''),
    );
    console.log(
      table(
        ['', 'vlalign', 'PyTorch eager (TRL)', 'ratio', 'target', ''],
        [
          [
            'tokens/s',
            ours.tokensS,
            peer.tokensS,
            `${ratio.toFixed(2)}x`,
            `>= ${TARGETS.tokensPerSecond}x`,
            ratio >= TARGETS.tokensPerSecond ? 'met' : 'MISSED',
          ],
          [
            'tokens/s, best rep',
            ours.bestTokensS,
            peer.bestTokensS,
            `${(ours.bestTokensS / peer.bestTokensS).toFixed(2)}x`,
            '',
            '',
          ],
          [
            'tokens per CPU second',
            ours.tokensPerCpuS,
            peer.tokensPerCpuS,
            `${(ours.tokensPerCpuS / peer.tokensPerCpuS).toFixed(2)}x`,
            '',
            '',
          ],
          ['rollout s (median)', ours.rolloutS, peer.rolloutS, '', '', ''],
          ['rollout CPU s (median)', ours.cpuS, peer.cpuS, '', '', ''],
          ['peak RSS MB', ours.peakRssMb, peer.peakRssMb, `${(ours.peakRssMb / peer.peakRssMb).toFixed(2)}x`, '', ''],
          ['rollout extra MB', ours.rolloutExtraMb, peer.rolloutExtraMb, '', '', ''],
          ...stepRows,
        ],
      ),
    );
    console.log(
      `greedy check (${check} tokens per prompt): ${greedyOk ? 'ok, the same tokens' : 'FAILED, the tokens differ'}; ` +
        'ratios are vlalign / PyTorch (tokens/s: higher is better; peak RSS: lower is better)',
    );

    printJsonLine({
      bench: 'grpo-rollout',
      tokensRatio: sig(ratio),
      bestTokensRatio: sig(ours.bestTokensS / peer.bestTokensS),
      cpuTokensRatio: sig(ours.tokensPerCpuS / peer.tokensPerCpuS),
      memRatio: sig(ours.peakRssMb / peer.peakRssMb),
      stepRatio: stepRatio === null ? null : sig(stepRatio),
      cpuStepRatio: ourStep === null ? null : sig(ourStep.stepsPerCpuS / peerStep.stepsPerCpuS),
      stepMemRatio: ourStep === null ? null : sig(ourStep.peakRssMb / peerStep.peakRssMb),
      greedyOk,
      targets: TARGETS,
      vlalign: { ...ours, rolloutSReps: ours.rolloutSReps.map((x) => sig(x, 6)) },
      pytorch: { ...peer, rolloutSReps: peer.rolloutSReps.map((x) => sig(x, 6)) },
      step: ourStep === null ? null : { vlalign: ourStep, pytorch: peerStep, ...STEP, lossType: 'dapo', beta: 0 },
      prompts,
      generations,
      newTokens,
      promptTokens,
      imageTokens,
      image: grid,
      sampling: { temperature, topK, topP },
      peerVision,
      params,
      threads,
      rounds,
      reps,
      warmup,
      torchVersion: torch.buildInfo().torchVersion,
      sourceHash: torch.buildInfo().sourceHash,
      loadAvg: [sig(loadBefore, 3), sig(os.loadavg()[0], 3)],
      seconds: sig(secondsSince(started), 3),
    });
    if (!greedyOk) process.exitCode = 1;
  } finally {
    if (!flags.has('keep')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (flags.get('child') === 'step') await runStepChild();
else if (flags.has('child')) await runChild();
else await runParent();
