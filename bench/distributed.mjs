// Distributed training on Gloo over loopback (issue #13): all-reduce throughput of vlalign's
// distributed.allReduce against Python's torch.distributed.all_reduce (bench/peers/distributed.py),
// and per-rank memory and bytes sent per training step of the small Qwen2-VL under DDP and ZeRO
// stages 1-3 for world sizes 1, 2 and 4.
//
//   node bench/distributed.mjs [--quick] [--part all|allreduce|memory] [--worlds 2,4]
//                              [--sizes 1024,...] [--budget-mib 128] [--max-iters 1000] [--reps 5]
//                              [--warmup 1] [--rounds 3] [--memory-worlds 1,2,4] [--strategies ddp]
//                              [--zero-stage 1,2,3|none] [--seq 64] [--image 4x4] [--steps 2]
//                              [--seed 0] [--timeout-s 300]
//
// Every rank is its own process (this script with --rank allreduce|memory, or the peer), started
// together with torchrun's variables on 127.0.0.1 and a fresh port; 1 intra-op thread per rank
// (OMP_NUM_THREADS=1), Gloo's 2 worker threads per rank on both sides. The peer gets
// GLOO_SOCKET_IFNAME=lo so its Gloo device binds loopback, as ours does for a loopback master.
//
// All-reduce: per size (bytes of float32), a zero tensor (0 + 0 stays 0: no overflow, no
// subnormals) all-reduced with op sum --warmup x iters times untimed, then --reps times: a barrier,
// then `iters` all-reduces back to back, each awaited (Python: blocking all_reduce). iters =
// --budget-mib / size, clamped to [2, --max-iters], the same for both sides. A first all-reduce of
// rank + 1 checks the sum n(n + 1)/2. Rounds alternate which side's job runs first; seconds per
// all-reduce are rank 0's, medians over every rep of every round. Bandwidths in GB/s (1e9 bytes):
// algorithm bandwidth = size / time, bus bandwidth = algbw x 2(n - 1)/n (what a ring moves per
// rank). "sent/op" is the bytes each rank wrote to its sockets per all-reduce (wchar of
// /proc/self/io) over size: 2(n - 1)/n for a ring. Ratio = vlalign / PyTorch bandwidth (target >= 0.95).
//
// Memory: per strategy (DDP, then ZeRO stage k for each --zero-stage k) and world size, one job
// whose ranks each build the small Qwen2-VL (float32, the peer's config from
// bench/peers/model_forward.py --print-config, seed --seed), wrap it, and run --steps training
// steps on their own batch (1 sequence of --seq tokens with one --image image, random labels, mean
// cross entropy; AdamW lr 1e-5, every parameter trained). Each rank measures through
// torch.memory() (the bytes of the distinct storages behind live handles):
//   kept         after the last step: every live tensor made since before the model, plus every
//                parameter's .grad (which autograd holds: a handle to it makes it count), i.e. the
//                parameters + gradients + optimizer state the rank keeps between steps
//   after bwd    the same right after the last backward, before any gradient reduction (ZeRO-2/3
//                free their full gradients, ZeRO-3 its full parameters, only after it)
//   split        DDP: parameters = what the model's construction added, gradients = what handles to
//                every .grad add, optimizer = what AdamW's first step added (its two moments); the
//                three add up to `kept`. ZeRO: ZeroRedundancy.bytes() (its element counts).
//   comm buffers held beyond `kept`: DDP's bucket buffers (the reducer copies the gradients in and
//                all-reduces them: as large as the gradients); none for ZeRO
// and the bytes it wrote to its sockets during the last step, against the strategy's theory (DDP:
// one ring all-reduce of the gradients, 2(n - 1)/n x G; ZeRO here: a reduce-scatter of the
// gradients and one all-gather of the parameters, (n - 1)/n x (P + G)) and, for reference, ZeRO-3's
// 3 x P x (n - 1)/n (all-gather in forward and again in backward, reduce-scatter of the gradients).
// "vs world 1" is over DDP's world-size-1 `kept` (plain training: P + G + 2P); ZeRO-3's target at
// 4 ranks is <= 0.3x. A new strategy is one more entry of STRATEGIES (create, step, measure, theory).
//
// --quick: 2 rounds x 3 reps of 5 sizes (1 KiB .. 64 MiB) with a 32 MiB budget per rep, and the
// memory rows of DDP and ZeRO-3 only (--zero-stage 3); ~5-7 minutes on the shared 2-core machine.
// Prints tables, then one JSON line, last on stdout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { distributed, models, nn, optim, torch } from 'vlalign';
import { intFlag, median, parseFlags, printJsonLine, secondsSince, sig, table } from './lib/report.mjs';
import { runRanks, writtenBytes } from './lib/ranks.mjs';
import { PYTHON, parsePatchGrid, smallQwen2VlConfig } from './lib/small_model.mjs';

const self = fileURLToPath(import.meta.url);
const peerScript = path.join(path.dirname(self), 'peers/distributed.py');
const flags = parseFlags();
const MIB = 1024 * 1024;
const GB = 1e9;
const log = (msg) => process.stderr.write(`${msg}\n`);

const list = (name, fallback) => String(flags.get(name) ?? fallback).split(',');
const intList = (name, fallback) =>
  list(name, fallback).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} expects positive integers, got ${s}`);
    return n;
  });
const timeoutMs = () => intFlag(flags, 'timeout-s', 300) * 1000;

/** What a ring all-reduce sends per rank, as a multiple of the tensor's bytes: 2(n - 1)/n. */
const ringFactor = (n) => (2 * (n - 1)) / n;

// ---- rank: vlalign's all-reduce --------------------------------------------------------------------

async function checkSum(rank, worldSize) {
  const t = torch.full([4], rank + 1, { dtype: 'float32' });
  await distributed.allReduce(t);
  const got = t.toArray();
  t.dispose();
  const expected = (worldSize * (worldSize + 1)) / 2;
  if (!got.every((v) => v === expected))
    throw new Error(`allReduce check: expected ${expected} everywhere, got ${got}`);
}

async function timeSize(bytes, iters, warmup, reps) {
  const t = torch.zeros([bytes / 4], { dtype: 'float32' });
  for (let k = 0; k < warmup * iters; k++) await distributed.allReduce(t);
  const seconds = [];
  const written = [];
  for (let r = 0; r < reps; r++) {
    await distributed.barrier();
    const w0 = writtenBytes();
    const start = process.hrtime.bigint();
    for (let k = 0; k < iters; k++) await distributed.allReduce(t);
    seconds.push(secondsSince(start) / iters);
    written.push((writtenBytes() - w0) / iters);
  }
  t.dispose();
  return { bytes, iters, seconds, written };
}

async function allReduceRank() {
  const sizes = intList('sizes', '');
  const iters = intList('iters', '');
  torch.setNumThreads(intFlag(flags, 'threads', 1));
  const group = await distributed.initProcessGroup({ backend: 'gloo', timeoutMs: timeoutMs() });
  await checkSum(group.rank, group.worldSize);
  const results = [];
  for (let k = 0; k < sizes.length; k++) {
    results.push(await timeSize(sizes[k], iters[k], intFlag(flags, 'warmup', 1), intFlag(flags, 'reps', 5)));
  }
  await distributed.barrier();
  printJsonLine({ peer: 'vlalign', rank: group.rank, world_size: group.worldSize, sizes: results });
  distributed.destroyProcessGroup();
}

// ---- rank: training steps and what they keep -------------------------------------------------------

const liveBytes = () => torch.memory().numBytes;

/** The bytes that handles made by `make` add to torch.memory() (storages nothing else holds). */
function bytesHeldBy(make) {
  const before = liveBytes();
  const handles = make();
  const bytes = liveBytes() - before;
  for (const h of handles) h.dispose();
  return bytes;
}

/** One sequence of `seq` tokens: a chat-like head, one image of `grid` patches, random labels. */
function trainingBatch(config, seq, grid, seed) {
  torch.manualSeed(seed);
  const vc = config.vision_config;
  const imageTokens = (grid[0] * grid[1]) / vc.spatial_merge_size ** 2;
  const media = [
    config.vision_start_token_id,
    ...Array(imageTokens).fill(config.image_token_id),
    config.vision_end_token_id,
  ];
  if (media.length + 2 > seq) throw new Error(`--seq ${seq} is too short for ${imageTokens} image tokens`);
  // Ordinary ids lie below the 31 special ones at the top of the vocabulary (<|endoftext|> first).
  const ordinary = config.vision_start_token_id - 9;
  const text = torch.randint(0, ordinary, [1, seq]);
  const ids = text.data();
  text.dispose();
  media.forEach((tok, i) => {
    ids[2 + i] = BigInt(tok);
  });
  const patchRow = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2;
  return {
    inputIds: torch.tensor(ids, { shape: [1, seq] }),
    attentionMask: torch.ones([1, seq], { dtype: 'int64' }),
    pixelValues: torch.randn([grid[0] * grid[1], patchRow], { dtype: 'float32' }),
    imageGridThw: torch.tensor([[1, grid[0], grid[1]]], { dtype: 'int64' }),
    labels: torch.randint(0, config.vocab_size, [seq]),
  };
}

function lossOf(model, batch) {
  const { labels, ...inputs } = batch;
  const { logits } = model.forward(inputs);
  return torch.nn.functional.crossEntropy(logits.view([-1, logits.shape[2]]), labels);
}

/** The bytes of every parameter's accumulated .grad (autograd holds them; a handle makes them count). */
const gradientBytes = (model) => bytesHeldBy(() => model.parameters().flatMap((p) => p.grad ?? []));

/**
 * ZeRO stage 1, 2 or 3 (lib/distributed/zero.ts): the units are the decoder layers, the vision
 * blocks and the rest; AdamW over this rank's flat shards. The split is ZeroRedundancy.bytes() (its
 * own element counts; `kept` checks it through torch.memory()). Wire theory of this implementation:
 * a reduce-scatter of the gradients, (n-1)/n x G, and one all-gather of the parameters, (n-1)/n x P
 * (after the step in stages 1 and 2; before the forward in stage 3, which holds them through the
 * backward instead of gathering again, so it sends 2/3 of ZeRO-3's theory).
 */
function zeroStrategy(stage) {
  return {
    label: `ZeRO-${stage}`,
    async create({ group, model }) {
      const units = distributed.zeroUnits(model);
      const zero = await distributed.ZeroRedundancy.create(group, units, { stage, adamw: { lr: 1e-5 } });
      return {
        async step(batch, afterBackward) {
          zero.zeroGrad();
          await zero.gatherParameters();
          torch.tidy(() => lossOf(model, batch).backward());
          afterBackward();
          await zero.reduceGradients();
          await zero.step();
        },
        measure: () => ({ ...zero.bytes(), commBuffers: 0 }),
        dispose: () => zero.dispose(),
      };
    },
    theory: ({ n, paramBytes, gradBytes }) => ((n - 1) / n) * (paramBytes + gradBytes),
  };
}

const STRATEGIES = {
  ddp: {
    label: 'DDP',
    async create({ group, model, modelBytes }) {
      const params = model.parameters();
      const ddp = await distributed.DataParallel.create(group, params);
      const optimizer = new optim.AdamW(params, { lr: 1e-5 });
      let optimizerBytes = null;
      return {
        step(batch, afterBackward) {
          model.zeroGrad();
          ddp.prepareForBackward();
          torch.tidy(() => lossOf(model, batch).backward());
          afterBackward();
          const before = liveBytes();
          optimizer.step();
          // AdamW makes its two moments at its first step; nothing else outlives a step.
          optimizerBytes ??= liveBytes() - before;
        },
        measure: () => ({
          parameters: modelBytes,
          gradients: gradientBytes(model),
          optimizer: optimizerBytes,
          commBuffers: bytesHeldBy(() => ddp.buckets().map((b) => b.buffer)),
        }),
        dispose: () => ddp.dispose(),
      };
    },
    theory: ({ n, gradBytes }) => ringFactor(n) * gradBytes,
  },
  zero1: zeroStrategy(1),
  zero2: zeroStrategy(2),
  zero3: zeroStrategy(3),
};

async function memoryRank() {
  const config = JSON.parse(fs.readFileSync(flags.get('config'), 'utf8'));
  const strategy = STRATEGIES[flags.get('strategy')];
  const seed = Number(flags.get('seed') ?? 0);
  torch.setNumThreads(1);
  const group = await distributed.initProcessGroup({ backend: 'gloo', timeoutMs: timeoutMs() });
  const batch = trainingBatch(
    config,
    intFlag(flags, 'seq', 64),
    parsePatchGrid(flags.get('image'), '4x4'),
    seed + group.rank,
  );

  const beforeModel = liveBytes();
  torch.manualSeed(seed);
  const model = new models.QwenVLForConditionalGeneration(config, { dtype: 'float32', device: 'cpu' });
  nn.initWeights(model, config.initializer_range ?? 0.02);
  model.train();
  const modelBytes = liveBytes() - beforeModel;
  const paramElements = model.parameters().reduce((n, p) => n + p.numel(), 0);

  const runner = await strategy.create({ group, model, modelBytes });
  const steps = intFlag(flags, 'steps', 2);
  let sent = 0;
  let stepSeconds = 0;
  let inStep = 0;
  const afterBackward = () => {
    inStep = liveBytes() - beforeModel + gradientBytes(model);
  };
  for (let s = 0; s < steps; s++) {
    await distributed.barrier();
    const w0 = writtenBytes();
    const start = process.hrtime.bigint();
    await runner.step(batch, afterBackward);
    stepSeconds = secondsSince(start);
    sent = writtenBytes() - w0;
  }
  const kept = liveBytes() - beforeModel + gradientBytes(model);
  const split = await runner.measure();
  await distributed.barrier();
  printJsonLine({
    rank: group.rank,
    world_size: group.worldSize,
    strategy: flags.get('strategy'),
    param_elements: paramElements,
    kept,
    kept_after_backward: inStep,
    ...split,
    sent_last_step: sent,
    step_seconds: stepSeconds,
  });
  await runner.dispose();
  distributed.destroyProcessGroup();
}

// ---- parent: all-reduce jobs -----------------------------------------------------------------------

const QUICK_SIZES = [1024, 32 * 1024, MIB, 16 * MIB, 64 * MIB];
const FULL_SIZES = [1024, 4096, 16384, 65536, 262144, MIB, 4 * MIB, 16 * MIB, 64 * MIB];

function itersFor(bytes, budgetBytes, maxIters) {
  return Math.min(maxIters, Math.max(2, Math.round(budgetBytes / bytes)));
}

let peerTorchVersion = null;

async function runAllReduceJob(side, worldSize, sizes, iters, reps, warmup) {
  const args = [
    '--sizes',
    sizes.join(','),
    '--iters',
    iters.join(','),
    '--reps',
    String(reps),
    '--warmup',
    String(warmup),
  ];
  const timeout = ['--timeout-s', String(timeoutMs() / 1000)];
  const env = { OMP_NUM_THREADS: '1' };
  const ranks =
    side === 'vlalign'
      ? await runRanks(process.execPath, [self, '--rank', 'allreduce', ...args, ...timeout], worldSize, { env })
      : await runRanks(PYTHON, [peerScript, ...args, '--timeout', String(timeoutMs() / 1000)], worldSize, {
          env: { ...env, GLOO_SOCKET_IFNAME: 'lo' },
        });
  if (side === 'pytorch') peerTorchVersion = ranks[0].torch_version;
  return ranks[0].sizes;
}

function sideSummary(runs, k, worldSize) {
  const seconds = runs.flatMap((sizes) => sizes[k].seconds);
  const bytes = runs[0][k].bytes;
  const s = median(seconds);
  const best = Math.min(...seconds);
  return {
    seconds: s,
    bestSeconds: best,
    algbw: bytes / s / GB,
    busbw: (bytes / s / GB) * ringFactor(worldSize),
    bestAlgbw: bytes / best / GB,
    sentPerByte: median(runs.flatMap((sizes) => sizes[k].written)) / bytes,
    secondsReps: seconds,
  };
}

async function measureAllReduce(quick, started) {
  const worlds = intList('worlds', '2,4');
  const sizes = flags.has('sizes') ? intList('sizes', '') : quick ? QUICK_SIZES : FULL_SIZES;
  if (sizes.some((s) => s % 4 !== 0)) throw new Error('--sizes must be multiples of 4 bytes (float32)');
  const budget = intFlag(flags, 'budget-mib', quick ? 32 : 128) * MIB;
  const iters = sizes.map((s) => itersFor(s, budget, intFlag(flags, 'max-iters', quick ? 200 : 1000)));
  const reps = intFlag(flags, 'reps', quick ? 3 : 5);
  const warmup = intFlag(flags, 'warmup', 1);
  const rounds = intFlag(flags, 'rounds', quick ? 2 : 3);
  const rows = [];
  for (const worldSize of worlds) {
    const runs = { vlalign: [], pytorch: [] };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['vlalign', 'pytorch'] : ['pytorch', 'vlalign'];
      for (const side of order) {
        runs[side].push(await runAllReduceJob(side, worldSize, sizes, iters, reps, warmup));
        log(
          `  all-reduce, ${worldSize} ranks, round ${round + 1}/${rounds}: ${side} done [${secondsSince(started).toFixed(0)} s]`,
        );
      }
    }
    sizes.forEach((bytes, k) => {
      const ours = sideSummary(runs.vlalign, k, worldSize);
      const peer = sideSummary(runs.pytorch, k, worldSize);
      rows.push({
        worldSize,
        bytes,
        iters: iters[k],
        vlalign: ours,
        pytorch: peer,
        ratio: ours.algbw / peer.algbw,
        bestRatio: ours.bestAlgbw / peer.bestAlgbw,
      });
    });
  }
  return { rows, reps, rounds, warmup, budgetMib: budget / MIB };
}

const sizeLabel = (bytes) => (bytes >= MIB ? `${bytes / MIB} MiB` : `${bytes / 1024} KiB`);

function printAllReduce({ rows, reps, rounds }) {
  console.log(
    `all-reduce (float32 sum, Gloo over loopback, 1 intra-op thread per rank): vlalign (libtorch ${torch.buildInfo().torchVersion}) vs PyTorch ${peerTorchVersion}, ` +
      `${rounds} round(s) x ${reps} reps, medians; GB/s = 1e9 bytes/s`,
  );
  console.log(
    table(
      [
        'ranks',
        'size',
        'iters',
        'vlalign ms',
        'PyTorch ms',
        'vlalign algbw',
        'busbw',
        'PyTorch algbw',
        'busbw',
        'ratio',
        'best ratio',
        'sent/op',
      ],
      rows.map((r) => [
        String(r.worldSize),
        sizeLabel(r.bytes),
        String(r.iters),
        r.vlalign.seconds * 1e3,
        r.pytorch.seconds * 1e3,
        r.vlalign.algbw,
        r.vlalign.busbw,
        r.pytorch.algbw,
        r.pytorch.busbw,
        `${r.ratio.toFixed(2)}x`,
        `${r.bestRatio.toFixed(2)}x`,
        `${r.vlalign.sentPerByte.toFixed(2)} / ${r.pytorch.sentPerByte.toFixed(2)} (${ringFactor(r.worldSize).toFixed(2)})`,
      ]),
    ),
  );
  console.log(
    "ratio = vlalign / PyTorch algorithm bandwidth (target >= 0.95); best ratio uses each side's fastest rep; " +
      'sent/op = bytes written to sockets per all-reduce / size, vlalign / PyTorch (ring theory 2(n-1)/n)',
  );
}

// ---- parent: memory jobs ---------------------------------------------------------------------------

/** --strategies (default ddp) and then zero<k> for each --zero-stage k (default 3 quick, else 1,2,3; none: no ZeRO rows). */
function strategyNames(quick) {
  const stages = String(flags.get('zero-stage') ?? (quick ? '3' : '1,2,3'));
  const zero = stages === 'none' ? [] : stages.split(',');
  for (const k of zero)
    if (!['1', '2', '3'].includes(k))
      throw new Error(`--zero-stage expects 1, 2 and/or 3 (comma-separated) or none, got ${stages}`);
  return [...list('strategies', 'ddp'), ...zero.map((k) => `zero${k}`)];
}

async function measureMemory(quick, started, dir) {
  const worlds = intList('memory-worlds', '1,2,4');
  const names = strategyNames(quick);
  for (const name of names) {
    if (!(name in STRATEGIES))
      throw new Error(`--strategies: unknown ${name} (known: ${Object.keys(STRATEGIES).join(', ')})`);
  }
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(smallQwen2VlConfig()));
  const image = String(flags.get('image') ?? '4x4');
  parsePatchGrid(image, '4x4');
  const args = [
    '--config',
    configFile,
    '--seq',
    String(intFlag(flags, 'seq', 64)),
    '--image',
    image,
    '--steps',
    String(intFlag(flags, 'steps', 2)),
    '--seed',
    String(Number(flags.get('seed') ?? 0)),
    '--timeout-s',
    String(timeoutMs() / 1000),
  ];
  const rows = [];
  for (const name of names) {
    for (const worldSize of worlds) {
      const ranks = await runRanks(
        process.execPath,
        [self, '--rank', 'memory', '--strategy', name, ...args],
        worldSize,
        {
          env: { OMP_NUM_THREADS: '1' },
        },
      );
      rows.push(memoryRow(name, worldSize, ranks));
      log(`  memory, ${name}, ${worldSize} rank(s) done [${secondsSince(started).toFixed(0)} s]`);
    }
  }
  // World size 1 is plain training (DDP's world 1: P + G + 2P); without that row, the strategy's own.
  const plain = rows.find((r) => r.strategy === 'ddp' && r.worldSize === 1);
  for (const row of rows) {
    const base = plain ?? rows.find((r) => r.strategy === row.strategy && r.worldSize === 1);
    row.vsWorld1 = base ? row.kept / base.kept : null;
    row.afterBackwardVsWorld1 = base ? row.keptAfterBackward / base.kept : null;
  }
  return rows;
}

/** The largest figure over ranks (they hold the same under DDP; sharded shards may differ by padding). */
function memoryRow(strategy, worldSize, ranks) {
  const most = (key) => Math.max(...ranks.map((r) => r[key]));
  const paramBytes = ranks[0].param_elements * 4;
  const gradBytes = paramBytes; // every parameter trains, float32
  const row = {
    strategy,
    worldSize,
    kept: most('kept'),
    keptAfterBackward: most('kept_after_backward'),
    parameters: most('parameters'),
    gradients: most('gradients'),
    optimizer: most('optimizer'),
    commBuffers: most('commBuffers'),
    sent: most('sent_last_step'),
    stepSeconds: most('step_seconds'),
    paramBytesTheory: paramBytes,
    sentTheory: STRATEGIES[strategy].theory({ n: worldSize, paramBytes, gradBytes }),
    zero3SentTheory: (3 * paramBytes * (worldSize - 1)) / worldSize,
  };
  row.splitBytes = row.parameters + row.gradients + row.optimizer;
  return row;
}

function printMemory(rows, config) {
  const mb = (b) => b / MIB;
  console.log(
    `per-rank memory after a training step, small Qwen2-VL (${(rows[0].paramBytesTheory / 4 / 1e6).toFixed(1)}M parameters, float32, AdamW), ` +
      `${config}; MiB measured through torch.memory(), largest over ranks`,
  );
  console.log(
    table(
      [
        'strategy',
        'ranks',
        'params',
        'grads',
        'optimizer',
        'kept p+g+o',
        'vs world 1',
        'after bwd',
        'vs world 1',
        'comm buffers',
        'sent/step',
        'theory',
        'sent/theory',
        'ZeRO-3 theory',
        'step s',
      ],
      rows.map((r) => [
        STRATEGIES[r.strategy].label,
        String(r.worldSize),
        mb(r.parameters),
        mb(r.gradients),
        mb(r.optimizer),
        mb(r.kept),
        r.vsWorld1 === null ? '-' : `${r.vsWorld1.toFixed(2)}x`,
        mb(r.keptAfterBackward),
        r.afterBackwardVsWorld1 === null ? '-' : `${r.afterBackwardVsWorld1.toFixed(2)}x`,
        mb(r.commBuffers),
        mb(r.sent),
        mb(r.sentTheory),
        r.sentTheory > 0 ? `${(r.sent / r.sentTheory).toFixed(3)}` : '-',
        mb(r.zero3SentTheory),
        r.stepSeconds,
      ]),
    ),
  );
  console.log(
    'kept = bytes of every live tensor made since before the model, plus the .grad tensors, after the step ' +
      '(params/grads/optimizer split it: DDP by torch.memory() deltas, ZeRO by its bytes()); after bwd = the same ' +
      'right after the backward, before any reduction; vs world 1 = over DDP at world size 1 (plain training); ' +
      'comm buffers are held beyond kept (DDP bucket buffers); sent/step = bytes each rank wrote to its sockets in the last ' +
      'step (wchar); theory: DDP 2(n-1)/n x G (ring all-reduce), ZeRO (n-1)/n x (P + G) (reduce-scatter + one ' +
      'all-gather); ZeRO-3 theory for reference: 3 x P x (n-1)/n. ZeRO-3 target: kept <= 0.3x of world 1 at 4 ranks',
  );
}

// ---- parent ----------------------------------------------------------------------------------------

async function runParent() {
  const quick = flags.get('quick') === 'true';
  const part = String(flags.get('part') ?? 'all');
  if (!['all', 'allreduce', 'memory'].includes(part))
    throw new Error(`--part expects all, allreduce or memory, got ${part}`);
  const started = process.hrtime.bigint();
  const loadBefore = os.loadavg();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-distributed-'));
  try {
    const allReduce = part === 'memory' ? null : await measureAllReduce(quick, started);
    const memory = part === 'allreduce' ? null : await measureMemory(quick, started, dir);
    const memoryConfig = `1 x ${intFlag(flags, 'seq', 64)} tokens with a ${flags.get('image') ?? '4x4'}-patch image per rank, ${intFlag(flags, 'steps', 2)} steps`;
    if (allReduce) printAllReduce(allReduce);
    if (memory) printMemory(memory, memoryConfig);
    const ratios = allReduce?.rows.map((r) => r.ratio) ?? [];
    const round = (o) =>
      Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Array.isArray(v) ? v.map((x) => sig(x)) : sig(v)]));
    printJsonLine({
      bench: 'distributed',
      allReduceRatioMin: ratios.length ? sig(Math.min(...ratios)) : null,
      allReduceRatioMedian: ratios.length ? sig(median(ratios)) : null,
      allReduce: allReduce?.rows.map((r) => ({
        worldSize: r.worldSize,
        bytes: r.bytes,
        iters: r.iters,
        ratio: sig(r.ratio),
        bestRatio: sig(r.bestRatio),
        vlalign: round(r.vlalign),
        pytorch: round(r.pytorch),
      })),
      allReduceMethod: allReduce && {
        reps: allReduce.reps,
        rounds: allReduce.rounds,
        warmup: allReduce.warmup,
        budgetMib: allReduce.budgetMib,
      },
      memory: memory?.map((r) => ({
        ...r,
        vsWorld1: sig(r.vsWorld1),
        afterBackwardVsWorld1: sig(r.afterBackwardVsWorld1),
        stepSeconds: sig(r.stepSeconds),
      })),
      memoryConfig,
      quick,
      torchVersion: torch.buildInfo().torchVersion,
      peerTorchVersion,
      sourceHash: torch.buildInfo().sourceHash,
      loadAvg: { before: loadBefore.map((x) => sig(x, 3)), after: os.loadavg().map((x) => sig(x, 3)) },
      seconds: sig(secondsSince(started), 3),
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const rankKind = flags.get('rank');
if (rankKind === 'allreduce') await allReduceRank();
else if (rankKind === 'memory') await memoryRank();
else if (rankKind === undefined) await runParent();
else throw new Error(`--rank expects allreduce or memory, got ${rankKind}`);
