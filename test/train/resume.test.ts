// Exact resume, end to end (issue 11): `vlalign train` runs in a child process
// (fixtures/resume_child.ts) that is SIGKILLed mid-run, then resumed with resume_from_checkpoint.
// The resumed run must log what the uninterrupted run logs and write the same bytes: every file of
// the last checkpoint (weights or adapter, optimizer + schedule, RNG, data cursor, running moments,
// trainer_state.json with its log history) and the final save. Both runs have the same max_steps, so
// the schedule is the same; the kill comes from inside the child, right after checkpoint-N is
// complete or while checkpoint-2N is being written.
// Runs: a LoRA DPO on the tiny Qwen2-VL (plain_dpo json + images, adapters-disabled reference, LoRA
// dropout on, so the generator state matters), and a full fine-tune MPO on the tiny InternVL (MMPR
// meta.json with JPEG augmentation, a frozen reference copy, sigmoid + bco_pair whose running
// reward mean must survive the resume); both with gradient accumulation 2 and shuffled data.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCheckpoints, loadCheckpoint, COMPLETE_MARKER, TRAINER_STATE_FILE } from '../../lib/train/checkpoint.js';
import { readMetricsLog, type LogEntry } from '../../lib/train/metrics_log.js';
import { RESUME_STATE_FILE } from '../../lib/train/training_state.js';

const repo = path.resolve(import.meta.dirname, '../..');
const runTs = path.join(import.meta.dirname, 'fixtures/run_ts.mjs');
const child = path.join(import.meta.dirname, 'fixtures/resume_child.ts');
const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-resume-e2e-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

// 8 plain_dpo pairs, batch 1 x accumulation 2: 4 steps per epoch; 6 steps cross into epoch 1.
const LORA = {
  trainer: 'dpo',
  model_name_or_path: '.data/qwen2_vl',
  dataset: { format: 'plain_dpo', path: '.data/vlrlhf/plain_dpo.json', image_root: '.data/vlrlhf/images' },
  peft: { r: 8, lora_alpha: 16, lora_dropout: 0.1, target_modules: 'auto' },
  disable_dropout: false,
  loss_type: 'sigmoid',
  learning_rate: 1e-3,
  lr_scheduler_type: 'cosine',
  warmup_ratio: 0.1,
  per_device_train_batch_size: 1,
  gradient_accumulation_steps: 2,
  max_steps: 6,
  logging_steps: 2, // the window of step 4 spans the kill after step 3
  save_steps: 3,
  report_to: ['none'],
};

// MMPR: repeat_time 0.5 keeps 4 of the 8 rows, each JPEG re-encoded at a random quality; batch 1 x
// accumulation 2: 2 steps per epoch, so checkpoint-2 falls on the epoch boundary.
const MMPR_META = {
  shapes: {
    root: '../.data/mmpr/images/shapes',
    annotation: '../.data/mmpr/annotations/shapes_vqa_correctness_rules.jsonl',
    data_augment: true,
    repeat_time: 0.5,
    max_dynamic_patch: 1,
    length: 8,
  },
};
const MPO = {
  trainer: 'dpo',
  model_name_or_path: '.data/internvl',
  dataset: { format: 'mmpr', path: 'mmpr/meta.json' },
  // Evaluated at each epoch's end: in the straight run, at the step the other run is killed after.
  eval_dataset: { format: 'mmpr', path: 'mmpr/meta.json' },
  eval_strategy: 'epoch',
  per_device_eval_batch_size: 2,
  processor: { max_dynamic_patch: 1 },
  trl_version: 'legacy', // bco_pair shifted by the running mean reward
  loss_type: ['sigmoid', 'bco_pair'],
  loss_weights: [0.8, 0.2],
  rpo_alpha: 1.0,
  learning_rate: 1e-4,
  weight_decay: 0.05,
  lr_scheduler_type: 'cosine',
  per_device_train_batch_size: 1,
  gradient_accumulation_steps: 2,
  max_steps: 4,
  logging_steps: 1,
  save_steps: 2,
  report_to: ['none'],
};

beforeAll(() => {
  const script = path.join(repo, 'scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', path.join(root, '.data')], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
  fs.mkdirSync(path.join(root, 'mmpr'));
  fs.writeFileSync(path.join(root, 'mmpr/meta.json'), JSON.stringify(MMPR_META));
  // JSON is YAML: the recipes are written as JSON objects.
  fs.writeFileSync(path.join(root, 'lora.yaml'), JSON.stringify(LORA));
  fs.writeFileSync(path.join(root, 'mpo.yaml'), JSON.stringify(MPO));
}, 60_000);

interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** `vlalign train RECIPE --output_dir runs/NAME FLAGS` in a child process with the test's env vars. */
function train(recipe: string, name: string, flags: string[] = [], env: Record<string, string> = {}): ChildRun {
  const args = [runTs, child, path.join(root, recipe), '--output_dir', outDir(name), ...flags];
  const run = spawnSync(process.execPath, args, {
    cwd: repo,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return { status: run.status, signal: run.signal, output: `${run.stdout}\n${run.stderr}` };
}

const outDir = (name: string): string => path.join(root, 'runs', name);

function expectCompleted(run: ChildRun): void {
  expect({ status: run.status, signal: run.signal }, run.output).toEqual({ status: 0, signal: null });
}

function expectKilled(run: ChildRun): void {
  expect({ status: run.status, signal: run.signal }, run.output).toEqual({ status: null, signal: 'SIGKILL' });
}

/** Every file under `dir` (relative path → sha256), so a failure names the files that differ. */
function digests(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file)] = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  }
  return out;
}

// Wall-clock numbers (the final entry's and each evaluation's) are the only ones a resume may change.
const TIMING = /^(train|eval)_(runtime|samples_per_second|steps_per_second)$/;
const withoutTiming = (entries: LogEntry[]): LogEntry[] =>
  entries.map((e) => Object.fromEntries(Object.entries(e).filter(([k]) => !TIMING.test(k))) as LogEntry);
const loggedWithoutTiming = (name: string): LogEntry[] =>
  withoutTiming(readMetricsLog(path.join(outDir(name), 'metrics.jsonl')));

/**
 * A checkpoint's files by digest; trainer_state.json as its fields with the log's timing left out,
 * and the marker without that file's size (timings print to varying lengths).
 */
function checkpointContents(dir: string): Record<string, unknown> {
  const { [TRAINER_STATE_FILE]: _s, [COMPLETE_MARKER]: _m, ...files } = digests(dir);
  const state = readJson(path.join(dir, TRAINER_STATE_FILE));
  const marker = readJson<{ files: Record<string, number> }>(path.join(dir, COMPLETE_MARKER));
  const { [TRAINER_STATE_FILE]: _size, ...sizes } = marker.files;
  return {
    files,
    state: { ...state, log_history: withoutTiming(state.log_history as LogEntry[]) },
    marker: { ...marker, files: sizes },
  };
}

/** The straight run's files and log must be the resumed run's, byte for byte. */
function expectSameRun(resumed: string, straight: string, lastCheckpoint: string): void {
  expect(loggedWithoutTiming(resumed)).toEqual(loggedWithoutTiming(straight));
  expect(checkpointContents(path.join(outDir(resumed), lastCheckpoint))).toEqual(
    checkpointContents(path.join(outDir(straight), lastCheckpoint)),
  );
  const finalFiles = (name: string) =>
    Object.fromEntries(Object.entries(digests(outDir(name))).filter(([f]) => !f.includes(path.sep)));
  const { 'metrics.jsonl': _r, ...resumedFinal } = finalFiles(resumed);
  const { 'metrics.jsonl': _s, ...straightFinal } = finalFiles(straight);
  expect(Object.keys(straightFinal).some((f) => f.endsWith('.safetensors'))).toBe(true);
  expect(resumedFinal).toEqual(straightFinal);
}

const once = <T>(make: () => T): (() => T) => {
  let value: { v: T } | null = null;
  return () => {
    value ??= { v: make() };
    return value.v;
  };
};

const straightLora = once(() => {
  const run = train('lora.yaml', 'lora-straight');
  expectCompleted(run);
  return run;
});

const straightMpo = once(() => {
  const run = train('mpo.yaml', 'mpo-straight');
  expectCompleted(run);
  return run;
});

// Killed after checkpoint-2 (the end of epoch 0); checkpoint-2 is kept aside for the moments test.
const killedMpo = once(() => {
  expectKilled(train('mpo.yaml', 'mpo-killed', [], { RESUME_KILL_AFTER_SAVE: '2' }));
  fs.cpSync(path.join(outDir('mpo-killed'), 'checkpoint-2'), path.join(root, 'mpo-checkpoint-2'), { recursive: true });
});

describe('resume after SIGKILL: the run continues as if never stopped', () => {
  it('LoRA DPO killed mid-epoch after checkpoint-3, resumed from its path: same logs, checkpoint-6 and adapter', () => {
    straightLora();
    expectKilled(train('lora.yaml', 'lora-killed', [], { RESUME_KILL_AFTER_SAVE: '3' }));
    expect(listCheckpoints(outDir('lora-killed')).map((c) => c.step)).toEqual([3]);
    const position = readJson(path.join(outDir('lora-killed'), 'checkpoint-3', RESUME_STATE_FILE)).data;
    expect(position).toMatchObject({ epoch: 0, index: 6 }); // mid-epoch: 6 of 8 samples read

    const checkpoint = path.join(outDir('lora-killed'), 'checkpoint-3');
    const resumed = train('lora.yaml', 'lora-killed', ['--resume_from_checkpoint', checkpoint]);
    expectCompleted(resumed);
    expect(resumed.output).toContain(`resuming from ${checkpoint}`);
    expectSameRun('lora-killed', 'lora-straight', 'checkpoint-6');
    // The adapter did train: checkpoint-3's differs from checkpoint-6's.
    const adapter = (step: number) =>
      digests(path.join(outDir('lora-straight'), `checkpoint-${step}`))['adapter_model.safetensors'];
    expect(adapter(3)).not.toBe(adapter(6));
  }, 120_000);

  it('a kill while checkpoint-6 is written leaves checkpoint-3 loadable; resume_from_checkpoint true picks it and finishes identically', () => {
    straightLora();
    const name = 'lora-killed-in-save';
    // save_total_limit 1: rotation must not remove checkpoint-3 before checkpoint-6 is complete.
    const limit = ['--save_total_limit', '1'];
    expectKilled(train('lora.yaml', name, limit, { RESUME_KILL_DURING_SAVE: '6' }));
    const out = outDir(name);
    expect(listCheckpoints(out).map((c) => c.step)).toEqual([3]);
    expect(loadCheckpoint(path.join(out, 'checkpoint-3')).step).toBe(3);
    expect(fs.existsSync(path.join(out, 'checkpoint-6'))).toBe(false);
    const partial = fs.readdirSync(out).filter((f) => f.startsWith('checkpoint-6.tmp-'));
    expect(partial).toHaveLength(1);
    const written = fs.readdirSync(path.join(out, partial[0]!));
    expect(written).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'optimizer.safetensors']));
    expect(written).not.toContain(COMPLETE_MARKER);
    expect(written).not.toContain(TRAINER_STATE_FILE);
    // The killed run had logged steps 4 and 6 past checkpoint-3.
    expect(readMetricsLog(path.join(out, 'metrics.jsonl')).map((e) => e.step)).toEqual([2, 4, 6]);

    const resumed = train('lora.yaml', name, [...limit, '--resume_from_checkpoint', 'true']);
    expectCompleted(resumed);
    expect(resumed.output).toContain(`resuming from ${path.join(out, 'checkpoint-3')}`);
    expect(fs.readdirSync(out).filter((f) => f.startsWith('checkpoint-'))).toEqual(['checkpoint-6']);
    expectSameRun(name, 'lora-straight', 'checkpoint-6');
  }, 120_000);

  it('full fine-tune MPO (sigmoid + bco_pair) killed on the epoch boundary, resume_from_checkpoint true: same losses and model bytes', () => {
    straightMpo();
    killedMpo();
    const checkpoint = path.join(outDir('mpo-killed'), 'checkpoint-2');
    const saved = readJson<{ data: unknown; stateful: { loss: { running: { mean: number; count: number } } } }>(
      path.join(checkpoint, RESUME_STATE_FILE),
    );
    expect(saved.data).toMatchObject({ epoch: 0, index: 4 }); // the whole of epoch 0, nothing of epoch 1
    expect(readJson(path.join(checkpoint, TRAINER_STATE_FILE)).epoch).toBe(1);
    // The shift is live: two steps of rewards (4 micro-batches) in the running moments.
    const running = saved.stateful.loss.running;
    expect(running.count).toBe(4);
    expect(Math.abs(running.mean)).toBeGreaterThan(1e-4);

    const resumed = train('mpo.yaml', 'mpo-killed', ['--resume_from_checkpoint', 'true']);
    expectCompleted(resumed);
    expect(resumed.output).toContain(`resuming from ${checkpoint}`);
    expectSameRun('mpo-killed', 'mpo-straight', 'checkpoint-4');
    const evaluatedAt = loggedWithoutTiming('mpo-straight').flatMap((e) => ('eval_loss' in e ? [e.step] : []));
    expect(evaluatedAt).toEqual([2, 4]);
  }, 180_000);

  it('the same resume with the running moments reset (as TRL and InternVL resume) logs other losses', () => {
    straightMpo();
    killedMpo();
    fs.cpSync(path.join(root, 'mpo-checkpoint-2'), path.join(outDir('mpo-reset'), 'checkpoint-2'), { recursive: true });
    const resumed = train('mpo.yaml', 'mpo-reset', ['--resume_from_checkpoint', 'true'], { RESUME_RESET_MOMENTS: '1' });
    expectCompleted(resumed);
    const loss = (name: string, step: number) =>
      readMetricsLog(path.join(outDir(name), 'metrics.jsonl')).find((e) => e.step === step && 'loss' in e)?.loss;
    expect(loss('mpo-reset', 3)).toBeTypeOf('number');
    expect(loss('mpo-reset', 3)).not.toBe(loss('mpo-straight', 3));
    const model = (name: string) => digests(path.join(outDir(name), 'checkpoint-4'))['model.safetensors'];
    expect(model('mpo-reset')).not.toBe(model('mpo-straight'));
  }, 120_000);
});

function readJson<T = Record<string, unknown>>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
