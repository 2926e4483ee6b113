// MMPR's sampling pipelines in input rows/s on the small Qwen2-VL: `vlalign data dropout-ntp` and
// `vlalign data sample` (runDropoutNtp / runCorrectnessSampling with the model engine: jsonl in,
// batched rollout, jsonl out, resumable) against Python PyTorch eager doing the same generation
// with transformers' generate() loop (bench/peers/pipelines.py), batch after batch (issue #15).
//
//   node bench/pipelines.mjs [--quick] [--threads 2] [--reps 3] [--warmup 1] [--rounds 2] [--seed 0]
//                            [--dropout-rows 16] [--dropout-batch 8] [--question 24] [--prefix 16]
//                            [--sample-rows 4] [--sample-batch 2] [--return-sequences 8]
//                            [--image 16x16] [--new-tokens 32] [--temperature 0.7] [--top-k 50]
//                            [--top-p 1] [--peer-vision batch|per-image] [--keep DIR]
//                            [--var-rows 64] [--stop-every 40] [--var-cap 128]
//                            [--only dropout-var,dropout,sample]
//
// Workloads (MMPR's sampling settings: temperature 0.7, top-k 50, top-p 1):
//   dropout  R rows, text only (DropoutNTP's default hides the image): a --question-token question
//            in Qwen2-VL's chat layout, then the assistant prefix (--prefix tokens, the half of
//            chosen MMPR keeps); one continuation per row (num_return_sequences 1), batches of B,
//            every completion exactly --new-tokens tokens (the checkpoint has no eos id).
//   dropout-var  the same prompts (--var-rows of them), with eos ids: every ordinary id that is a
//            multiple of --stop-every, so that completions end after a roughly geometric number of
//            tokens (mean about --stop-every), capped at --var-cap. Both sides draw row r's token t
//            with the same per-row uniform (streamUniform(seed, r, 0, t), inverse CDF), so they
//            sample the same tokens and every row has the same length on both sides.
//   sample   R rows with one image each (--image in 14-px patches), the wrapped question; N
//            responses per row (num_return_sequences, MMPR's default 32, here --return-sequences),
//            batches of B rows.
//   vlalign  the pipeline function itself on a jsonl input: rows parsed and checked, the model
//            engine (dropout: continuous batching, B rows in flight, a finished row's slot refilled
//            with the next prompt at once; sample: one prefill per prompt, its N completions decoded
//            together from the widened KV cache), vision ids suppressed, lines appended and fsynced; the
//            processor is a stand-in handing back the row's prepared tokens (the small model's
//            vocabulary has no tokenizer), and decode writes the ids as text.
//   PyTorch  per batch, generate() with num_return_sequences: prompts (and images) repeated N
//            times, the vision tower on all B·N images (v4.47.1's batch-masked eager attention,
//            or once per image with --peer-vision per-image), the KV-cache sampling loop; with
//            eos ids (dropout-var) a static batch decodes until its last row ends, finished rows
//            included, as generate() does.
// Each measurement is a fresh process that loads the checkpoint and rows, runs --warmup untimed
// then --reps timed pipeline runs; rounds alternate which side goes first. rows/s = R / median run.
// Prints a table per pipeline, then one JSON line, last on stdout (the load average before and
// after is in it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { models, torch } from 'vlalign';
import { runDropoutNtp } from '../dist/pipelines/dropout_ntp.js';
import { modelEngine } from '../dist/pipelines/engine.js';
import { runCorrectnessSampling } from '../dist/pipelines/sample.js';
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
const peerScript = path.join(here, 'peers/pipelines.py');
const flags = parseFlags();
const TARGET = 1.5;
const VISION_ID_KEYS = [
  'image_token_id',
  'video_token_id',
  'vision_start_token_id',
  'vision_end_token_id',
  'vision_token_id',
];

function sampling() {
  return {
    temperature: Number(flags.get('temperature') ?? 0.7),
    topK: Number(flags.get('top-k') ?? 50),
    topP: Number(flags.get('top-p') ?? 1),
  };
}

// ---- child: the vlalign pipeline -------------------------------------------------------------------

/**
 * The processor the model engine reads, standing in for one with a tokenizer: a request's question
 * names its row ("row i"), whose prepared tokens (and image) `process` hands back; decode writes ids.
 */
function rowsProcessor(t, idsKey) {
  const ids = t[idsKey];
  const grid = t.image_grid_thw;
  const offsets = [0];
  if (grid) for (const n of grid.prod(1).data()) offsets.push(offsets.at(-1) + Number(n));
  const rowOf = (sample) => Number(/row (\d+)/.exec(sample.prompt[0].content)[1]);
  return {
    tokenizer: { padTokenId: null, findTokenId: () => null, decode: (tokens) => tokens.join(' ') },
    process: async (samples) => {
      const rows = samples.map(rowOf);
      const withImages = samples[0].images.length > 0;
      return torch.tidy(() => {
        const index = torch.tensor(rows, { dtype: 'int64' });
        const inputIds = ids.indexSelect(0, index);
        const out = {
          inputIds,
          attentionMask: torch.onesLike(inputIds),
          labels: null,
          pixelValues: withImages
            ? torch.cat(rows.map((r) => t.pixel_values.narrow(0, offsets[r], offsets[r + 1] - offsets[r])))
            : null,
          imageGridThw: withImages ? grid.indexSelect(0, index) : null,
        };
        return out;
      });
    },
  };
}

async function runChild() {
  const pipeline = flags.get('pipeline');
  const reps = intFlag(flags, 'reps', 3);
  const warmup = Number(flags.get('warmup') ?? 1);
  const n = intFlag(flags, 'return-sequences', 1);
  const batchSize = intFlag(flags, 'batch-size', 8);
  const newTokens = intFlag(flags, 'new-tokens', 32);
  const seed = Number(flags.get('seed') ?? 0);
  const variable = flags.get('variable') === 'true';
  torch.setNumThreads(intFlag(flags, 'threads', 2));
  const work = flags.get('work');

  const start = process.hrtime.bigint();
  const model = await models.fromPretrained(flags.get('checkpoint'));
  model.eval();
  const buildS = secondsSince(start);
  const t = await torch.loadSafetensors(flags.get('inputs'));
  const dropout = pipeline === 'dropout';
  const processor = rowsProcessor(t, dropout ? 'dropout_ids' : 'sample_ids');
  const rows = flags.has('rows') ? intFlag(flags, 'rows', 1) : (dropout ? t.dropout_ids : t.sample_ids).shape[0];
  const input = path.join(work, `${pipeline}_rows.jsonl`);
  fs.writeFileSync(
    input,
    Array.from({ length: rows }, (_, i) =>
      JSON.stringify(
        dropout
          ? { question: `row ${i}`, chosen: 'a b c d e f g h' }
          : { image: 'image.png', question: `row ${i}`, answer: String(i) },
      ),
    ).join('\n'),
  );
  fs.writeFileSync(path.join(work, 'image.png'), '');
  const stopTokenIds = variable ? Array.from(t.stop_ids.data(), Number) : undefined;
  const engine = modelEngine(model, processor, { ...sampling(), maxNewTokens: newTokens, seed, stopTokenIds });
  let run = 0;
  const once = async () => {
    const output = path.join(work, `${pipeline}_${process.pid}_${run++}.jsonl`);
    const common = { input, output, engine, numReturnSequences: n, batchSize };
    const summary = dropout
      ? await runDropoutNtp({ ...common, metaFile: path.join(work, `meta_${process.pid}.json`) })
      : await runCorrectnessSampling({ ...common, promptVersion: 'en_v2' });
    const lines = fs.readFileSync(output, 'utf8').split('\n').filter(Boolean);
    // Tokens per line: the words of the continuation, plus the stop token decode leaves out (a
    // completion shorter than the cap ended with one).
    const lengths = lines.map((line) => {
      const text = JSON.parse(line)[dropout ? 'rejected' : 'response'];
      const words = (dropout ? text.replace(/^a b c d/, '') : text).trim();
      const count = words === '' ? 0 : words.split(' ').length;
      return variable && count < newTokens ? count + 1 : count;
    });
    fs.rmSync(output);
    return { summary, generated: lengths.reduce((a, b) => a + b, 0), lengths };
  };

  const hwmReset = resetPeak();
  const before = procStatus().VmRSS;
  for (let k = 0; k < warmup; k++) await once();
  const times = [];
  const cpu = [];
  let last;
  for (let k = 0; k < reps; k++) {
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    last = await once();
    times.push(secondsSince(t0));
    const used = process.cpuUsage(cpu0);
    cpu.push((used.user + used.system) / 1e6);
  }
  const status = procStatus();
  const runS = median(times);
  printJsonLine({
    peer: 'vlalign',
    pipeline,
    threads: torch.getNumThreads(),
    rows: last.summary.rows,
    lines: last.summary.lines,
    generated: last.generated,
    build_s: buildS,
    run_s: runS,
    rows_s: rows / runS,
    run_s_reps: times,
    cpu_s_reps: cpu,
    peak_rss_mb: status.VmHWM,
    run_extra_mb: status.VmHWM - before,
    hwm_reset: hwmReset,
    lengths: variable ? last.lengths : null,
  });
}

// ---- parent ----------------------------------------------------------------------------------------

/**
 * Token rows in Qwen2-VL's chat layout (random ordinary ids for the words):
 *   dropout  <|im_start|> user \n question*Q <|im_end|> \n <|im_start|> assistant \n prefix*F
 *   sample   <|im_start|> user \n <|vision_start|> <|image_pad|>*(H·W/4) <|vision_end|> question*Q
 *            <|im_end|> \n <|im_start|> assistant \n      (+ pixel values ~ N(0, 1), grids)
 */
function buildRows(config, o) {
  torch.manualSeed(o.seed);
  const first = config.vision_start_token_id - 9; // <|endoftext|>, the first special id
  const [imStart, imEnd] = [first + 1, first + 2];
  const text = (k) =>
    Array.from(
      torch.tidy(() => torch.randint(0, first, [k]).data()),
      Number,
    );
  const head = () => {
    const [user, newline] = text(2);
    return { user, newline };
  };
  const dropout = [];
  for (let i = 0; i < Math.max(o.dropoutRows, o.varRows); i++) {
    const { user, newline } = head();
    const [assistant] = text(1);
    dropout.push([
      imStart,
      user,
      newline,
      ...text(o.question),
      imEnd,
      newline,
      imStart,
      assistant,
      newline,
      ...text(o.prefix),
    ]);
  }
  const imageTokens = (o.grid[0] * o.grid[1]) / config.vision_config.spatial_merge_size ** 2;
  const sample = [];
  for (let i = 0; i < o.sampleRows; i++) {
    const { user, newline } = head();
    const [assistant] = text(1);
    sample.push([
      imStart,
      user,
      newline,
      config.vision_start_token_id,
      ...Array(imageTokens).fill(config.image_token_id),
      config.vision_end_token_id,
      ...text(o.question),
      imEnd,
      newline,
      imStart,
      assistant,
      newline,
    ]);
  }
  const vc = config.vision_config;
  const patchRow = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2;
  const stopIds = Array.from({ length: first }, (_, id) => id).filter((id) => id % o.stopEvery === 0);
  return {
    tensors: {
      stop_ids: torch.tensor(stopIds, { dtype: 'int64' }),
      dropout_ids: torch.tensor(dropout, { dtype: 'int64' }),
      sample_ids: torch.tensor(sample, { dtype: 'int64' }),
      pixel_values: torch.randn([o.sampleRows * o.grid[0] * o.grid[1], patchRow]),
      image_grid_thw: torch.tensor(
        Array.from({ length: o.sampleRows }, () => [1, o.grid[0], o.grid[1]]),
        { dtype: 'int64' },
      ),
    },
    dropoutTokens: dropout[0].length,
    stopIds: stopIds.length,
    sampleTokens: sample[0].length,
    imageTokens,
  };
}

async function runParent() {
  const quick = flags.get('quick') === 'true';
  const threads = intFlag(flags, 'threads', 2);
  const reps = intFlag(flags, 'reps', quick ? 2 : 3);
  const rounds = intFlag(flags, 'rounds', quick ? 1 : 2);
  const warmup = Number(flags.get('warmup') ?? 1);
  const seed = Number(flags.get('seed') ?? 0);
  const shape = {
    dropoutRows: intFlag(flags, 'dropout-rows', quick ? 8 : 16),
    dropoutBatch: intFlag(flags, 'dropout-batch', 8),
    sampleRows: intFlag(flags, 'sample-rows', quick ? 2 : 4),
    sampleBatch: intFlag(flags, 'sample-batch', 2),
    returnSequences: intFlag(flags, 'return-sequences', 8),
    question: intFlag(flags, 'question', 24),
    prefix: intFlag(flags, 'prefix', 16),
    newTokens: intFlag(flags, 'new-tokens', 32),
    varRows: intFlag(flags, 'var-rows', quick ? 32 : 64),
    stopEvery: intFlag(flags, 'stop-every', 40),
    varCap: intFlag(flags, 'var-cap', 128),
    grid: parsePatchGrid(flags.get('image') ?? '16x16', '16x16'),
    seed,
  };
  const { temperature, topK, topP } = sampling();
  const peerVision = String(flags.get('peer-vision') ?? 'batch');
  if (!['batch', 'per-image'].includes(peerVision))
    throw new Error(`--peer-vision expects batch or per-image, got ${peerVision}`);
  const log = (msg) => process.stderr.write(`${msg}\n`);
  if (process.env.OMP_NUM_THREADS === undefined) process.env.OMP_NUM_THREADS = String(threads);
  torch.setNumThreads(threads);

  const dir = flags.has('keep')
    ? path.resolve(flags.get('keep'))
    : fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-pipelines-'));
  fs.mkdirSync(dir, { recursive: true });
  const checkpoint = path.join(dir, 'checkpoint');
  const inputsFile = path.join(dir, 'rows.safetensors');
  const started = process.hrtime.bigint();
  const loadBefore = os.loadavg()[0];
  try {
    const { config, params } = await writeSmallQwen2Vl(checkpoint, { seed, withoutStopTokens: true });
    const built = buildRows(config, shape);
    await torch.saveSafetensors(inputsFile, built.tensors);
    for (const t of Object.values(built.tensors)) t.dispose();
    const visionIds = VISION_ID_KEYS.map((k) => config[k]).filter(Number.isInteger);
    log(`checkpoint and rows in ${dir} (${(params / 1e6).toFixed(2)}M params)`);

    const pipelines = {
      dropout: { rows: shape.dropoutRows, batch: shape.dropoutBatch, n: 1, newTokens: shape.newTokens },
      dropoutVar: { rows: shape.varRows, batch: shape.dropoutBatch, n: 1, newTokens: shape.varCap, variable: true },
      sample: {
        rows: shape.sampleRows,
        batch: shape.sampleBatch,
        n: shape.returnSequences,
        newTokens: shape.newTokens,
      },
    };
    const only = String(flags.get('only') ?? 'dropout-var,dropout,sample').split(',');
    const known = { 'dropout-var': 'dropoutVar', dropout: 'dropout', sample: 'sample' };
    for (const key of only)
      if (!(key in known)) throw new Error(`--only takes dropout-var, dropout, sample; got ${key}`);
    for (const key of Object.keys(known)) if (!only.includes(key)) delete pipelines[known[key]];
    const results = Object.fromEntries(Object.keys(pipelines).map((k) => [k, { vlalign: [], pytorch: [] }]));
    for (const [name, p] of Object.entries(pipelines)) {
      const pipeline = name === 'sample' ? 'sample' : 'dropout';
      const common = [
        '--checkpoint',
        checkpoint,
        '--inputs',
        inputsFile,
        '--pipeline',
        pipeline,
        '--threads',
        String(threads),
        '--reps',
        String(reps),
        '--warmup',
        String(warmup),
        '--seed',
        String(seed),
        '--batch-size',
        String(p.batch),
        '--return-sequences',
        String(p.n),
        '--rows',
        String(p.rows),
        ...(p.variable ? ['--variable'] : []),
        '--new-tokens',
        String(p.newTokens),
        '--temperature',
        String(temperature),
        '--top-k',
        String(topK),
        '--top-p',
        String(topP),
      ];
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? ['vlalign', 'pytorch'] : ['pytorch', 'vlalign'];
        for (const side of order) {
          const r =
            side === 'vlalign'
              ? runNodeScript(self, ['--child', '--work', dir, ...common])
              : runPythonPeer(peerScript, [
                  ...common,
                  '--suppress',
                  visionIds.join(','),
                  '--vision-attention',
                  peerVision,
                ]);
          const expected = p.rows * p.n * p.newTokens;
          if (!p.variable && r.generated !== expected)
            throw new Error(`${side} ${name} generated ${r.generated} tokens, expected ${expected}`);
          results[name][side].push(r);
          log(
            `  ${name} round ${round + 1}/${rounds} ${side.padEnd(8)} ${r.run_s.toFixed(3)} s (${r.rows_s.toFixed(2)} rows/s), ` +
              `peak ${r.peak_rss_mb.toFixed(0)} MB  [${secondsSince(started).toFixed(0)} s]`,
          );
        }
      }
    }

    const summary = (rs, rows) => {
      const reps = rs.flatMap((r) => r.run_s_reps);
      const runS = median(reps);
      const cpuS = median(rs.flatMap((r) => r.cpu_s_reps));
      return {
        runS,
        rowsS: rows / runS,
        bestRowsS: rows / Math.min(...reps),
        rowsPerCpuS: rows / cpuS,
        cpuS,
        peakRssMb: Math.max(...rs.map((r) => r.peak_rss_mb)),
        runSReps: reps.map((x) => sig(x, 6)),
      };
    };
    const report = {};
    for (const [name, p] of Object.entries(pipelines)) {
      const ours = summary(results[name].vlalign, p.rows);
      const peer = summary(results[name].pytorch, p.rows);
      report[name] = { vlalign: ours, pytorch: peer, ratio: ours.rowsS / peer.rowsS, ...p };
    }
    // The variable workload: the same lengths on both sides (same per-row streams), their mean, and
    // the row-steps a static batch decodes (B x its longest row) against the tokens kept.
    const varLengths = results.dropoutVar?.vlalign.at(-1).lengths ?? [];
    const peerLengths = results.dropoutVar?.pytorch.at(-1).lengths ?? [];
    const sameRows = varLengths.filter((len, i) => len === peerLengths[i]).length;
    const generatedVar = varLengths.reduce((a, b) => a + b, 0);
    let staticSteps = 0;
    for (let b = 0; b < peerLengths.length; b += shape.dropoutBatch) {
      const group = peerLengths.slice(b, b + shape.dropoutBatch);
      staticSteps += group.length * Math.max(...group);
    }
    const lengthsReport = {
      meanLength: generatedVar / varLengths.length,
      capped: varLengths.filter((len) => len === shape.varCap).length,
      sameRows,
      rows: varLengths.length,
      peerGenerated: peerLengths.reduce((a, b) => a + b, 0),
      generated: generatedVar,
      staticRowSteps: staticSteps,
      staticWaste: staticSteps / peerLengths.reduce((a, b) => a + b, 0),
    };
    if (report.dropoutVar && sameRows < 0.95 * varLengths.length)
      throw new Error(`dropout-var: only ${sameRows} of ${varLengths.length} rows have the same length on both sides`);
    console.log(
      `pipelines: small Qwen2-VL (${(params / 1e6).toFixed(1)}M params, float32), temperature ${temperature}, top-k ${topK}, ` +
        `top-p ${topP}, ${shape.newTokens} new tokens per completion, ${threads} threads, ${rounds} round(s) x ${reps} reps, ` +
        `peer vision attention ${peerVision}\n` +
        `  dropout-ntp: ${shape.dropoutRows} text-only rows of ${built.dropoutTokens} tokens (prefix ${shape.prefix}), batches of ${shape.dropoutBatch}, 1 continuation each\n` +
        (report.dropoutVar
          ? `  dropout-var: ${shape.varRows} such rows, ${built.stopIds} eos ids (ids % ${shape.stopEvery} = 0), cap ${shape.varCap}: ` +
            `mean length ${lengthsReport.meanLength.toFixed(1)} tokens (${lengthsReport.capped} capped), ${sameRows}/${varLengths.length} rows the same length on both sides; ` +
            `static batches decode ${lengthsReport.staticRowSteps} row-steps for ${lengthsReport.peerGenerated} tokens (${lengthsReport.staticWaste.toFixed(2)}x)\n`
          : '') +
        `  sample:      ${shape.sampleRows} rows of ${built.sampleTokens} tokens with a ${shape.grid[0] * 14}x${shape.grid[1] * 14} image ` +
        `(${built.imageTokens} image tokens), batches of ${shape.sampleBatch}, ${shape.returnSequences} responses each`,
    );
    const rowsOf = (name, r) => [
      [
        `${name} rows/s`,
        r.vlalign.rowsS,
        r.pytorch.rowsS,
        `${r.ratio.toFixed(2)}x`,
        `>= ${TARGET}x`,
        r.ratio >= TARGET ? 'met' : 'MISSED',
      ],
      [
        `${name} rows/s, best rep`,
        r.vlalign.bestRowsS,
        r.pytorch.bestRowsS,
        `${(r.vlalign.bestRowsS / r.pytorch.bestRowsS).toFixed(2)}x`,
        '',
        '',
      ],
      [
        `${name} rows per CPU s`,
        r.vlalign.rowsPerCpuS,
        r.pytorch.rowsPerCpuS,
        `${(r.vlalign.rowsPerCpuS / r.pytorch.rowsPerCpuS).toFixed(2)}x`,
        '',
        '',
      ],
      [
        `${name} peak RSS MB`,
        r.vlalign.peakRssMb,
        r.pytorch.peakRssMb,
        `${(r.vlalign.peakRssMb / r.pytorch.peakRssMb).toFixed(2)}x`,
        '',
        '',
      ],
    ];
    console.log(
      table(
        ['', 'vlalign', 'PyTorch eager', 'ratio', 'target', ''],
        [
          ...(report.dropoutVar ? rowsOf('dropout-ntp var', report.dropoutVar) : []),
          ...(report.dropout ? rowsOf('dropout-ntp fixed', report.dropout) : []),
          ...(report.sample ? rowsOf('sample', report.sample) : []),
        ],
      ),
    );
    printJsonLine({
      bench: 'pipelines',
      dropoutVarRatio: report.dropoutVar ? sig(report.dropoutVar.ratio) : null,
      dropoutVarCpuRatio: report.dropoutVar
        ? sig(report.dropoutVar.vlalign.rowsPerCpuS / report.dropoutVar.pytorch.rowsPerCpuS)
        : null,
      dropoutRatio: report.dropout ? sig(report.dropout.ratio) : null,
      sampleRatio: report.sample ? sig(report.sample.ratio) : null,
      target: TARGET,
      dropoutVar: report.dropoutVar ? { ...report.dropoutVar, lengths: lengthsReport } : null,
      dropout: report.dropout,
      sample: report.sample,
      shape: {
        ...shape,
        dropoutTokens: built.dropoutTokens,
        stopIds: built.stopIds,
        sampleTokens: built.sampleTokens,
        imageTokens: built.imageTokens,
      },
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
  } finally {
    if (!flags.has('keep')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (flags.has('child')) await runChild();
else await runParent();
