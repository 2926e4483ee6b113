// precompute_ref_log_probs with images (TRL refuses it for vision data): the reference's summed
// log-probs are computed once before training and cached on disk ($VLALIGN_CACHE, a temporary folder
// here). Checked: (a) the precomputed values the loss receives equal a live frozen reference's, step
// by step, and the training losses agree; (b) a second run with the same model and settings runs no
// reference forward (counted on the reference model) and gives identical losses; (c) new weights
// (in memory, or rewritten checkpoint files), another max_length, another processor setting or an
// edited record miss the cache, and a load in another dtype has another model key; KTO caches rows
// with their KL rows, apart from BCO's; (d) precompute with data_augment is refused before any forward.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { data, losses, models, processing, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import type { RecordDataset } from '../../lib/data/records.js';
import { dpoConfig, ktoConfig, type DpoConfigInput, type KtoConfigInput } from '../../lib/train/config.js';
import { createTrainer } from '../../lib/train/create.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';
import { referenceModelKey } from '../../lib/train/reference.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-ref-cache-'));
const dataDir = join(root, '.data');
const checkpoint = join(dataDir, 'qwen2_vl');
const savedCache = process.env.VLALIGN_CACHE;
afterAll(() => {
  if (savedCache === undefined) delete process.env.VLALIGN_CACHE;
  else process.env.VLALIGN_CACHE = savedCache;
  rmSync(root, { recursive: true, force: true });
});

beforeAll(() => {
  const script = join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', dataDir], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
}, 60_000);

// Each test starts from an empty cache of its own.
let caches = 0;
const freshCache = () => {
  process.env.VLALIGN_CACHE = join(root, `cache-${caches++}`);
};

const PAIRS = 8; // records of vlrlhf/plain_dpo.json
const PRECOMPUTE_BATCH = 4;
const ARGS = {
  perDeviceTrainBatchSize: 2,
  gradientAccumulationSteps: 2,
  maxSteps: 2,
  learningRate: 1e-3,
  seed: 5,
  loggingSteps: 1,
  reportTo: ['none' as const],
  saveStrategy: 'no' as const,
  gradientCheckpointing: false,
  lossType: ['sigmoid', 'bco_pair'],
  lossWeights: [0.8, 0.2],
  rpoAlpha: 1,
  maxLength: 1024,
  precomputeRefLogProbs: true,
  precomputeRefBatchSize: PRECOMPUTE_BATCH,
};

const { lossType: _l, lossWeights: _w, rpoAlpha: _r, ...LOOP_ARGS } = ARGS;
const KTO_ARGS = { ...LOOP_ARGS, lossType: 'kto' as const };

const loadModel = (dir = checkpoint) => models.fromPretrained(dir, { dtype: 'float32' });
const plainDpo = (file = join(dataDir, 'vlrlhf', 'plain_dpo.json')) =>
  data.openPlainDpo(file, { imageRoot: join(dataDir, 'vlrlhf', 'images') });

/** A frozen reference whose forward calls are counted. */
async function countedReference(dir = checkpoint) {
  const model = await loadModel(dir);
  model.requiresGrad_(false);
  model.eval();
  let calls = 0;
  const forward = model.forward.bind(model);
  model.forward = ((...args: Parameters<typeof forward>) => {
    calls += 1;
    return forward(...args);
  }) as typeof model.forward;
  return { model, calls: () => calls, reset: () => (calls = 0) };
}

// The reference log-probs each loss call receives, in call order.
let seenRef: number[][] | null = null;
const compute = losses.PreferenceLoss.prototype.compute;
losses.PreferenceLoss.prototype.compute = function (this: losses.PreferenceLoss, batch, head, options) {
  if (seenRef !== null && batch.refChosenLogps && batch.refRejectedLogps) {
    const values = (t: Tensor) => Array.from(t.to({ dtype: 'float64' }).data() as Float64Array);
    seenRef.push([...values(batch.refChosenLogps), ...values(batch.refRejectedLogps)]);
  }
  return compute.call(this, batch, head, options);
};
afterEach(() => {
  seenRef = null;
});

interface RunOptions {
  method?: 'dpo' | 'kto';
  refModel?: models.CausalLM;
  /** The policy's checkpoint (the cache key when the policy is its own reference). */
  modelPath?: string;
  dataset?: RecordDataset;
  processor?: processing.Processor;
  args?: Partial<DpoConfigInput>;
}

let runs = 0;
/** One DPO (or KTO) run of ARGS.maxSteps steps from a fresh policy; its per-step losses. */
async function train(options: RunOptions = {}): Promise<number[]> {
  const outputDir = join(root, `run-${runs++}`);
  const policy = await loadModel(options.modelPath);
  try {
    const method = options.method ?? 'dpo';
    const args =
      method === 'dpo'
        ? dpoConfig({ outputDir, ...ARGS, ...options.args })
        : ktoConfig({ outputDir, ...KTO_ARGS, ...(options.args as Partial<KtoConfigInput>) });
    const trainer = createTrainer({
      method,
      args,
      model: policy,
      processor: options.processor ?? (await processing.fromPretrained(checkpoint)),
      refModel: options.refModel ?? null,
      modelPath: options.modelPath,
      trainDataset: options.dataset ?? (await plainDpo()),
    });
    await trainer.train();
  } finally {
    policy.dispose();
  }
  return readMetricsLog(join(outputDir, 'metrics.jsonl'))
    .filter((e) => typeof e.loss === 'number')
    .map((e) => e.loss as number);
}

const precomputeForwards = Math.ceil(PAIRS / PRECOMPUTE_BATCH);

describe('precompute_ref_log_probs with images', () => {
  it('(a) the precomputed values equal a live frozen reference forward, call by call', async () => {
    freshCache();
    const reference = await countedReference();
    seenRef = [];
    const precomputed = await train({ refModel: reference.model });
    const cachedRefs = seenRef;
    // The precompute pass ran the reference; training read the cache only.
    expect(reference.calls()).toBe(precomputeForwards);

    reference.reset();
    seenRef = [];
    const live = await train({ refModel: reference.model, args: { precomputeRefLogProbs: false } });
    const liveRefs = seenRef;
    expect(reference.calls()).toBe(ARGS.maxSteps * ARGS.gradientAccumulationSteps);

    // The same micro-batches in the same order: 2 steps x 2 micro-batches of 2 pairs ([c0, c1, r0, r1]).
    expect(cachedRefs).toHaveLength(4);
    expect(liveRefs).toHaveLength(4);
    cachedRefs.forEach((values, k) => {
      values.forEach((v, j) => {
        expect(v).toBeLessThan(-1); // summed log-probs of whole completions
        // float32 forwards over other batch compositions (4 pairs vs 2): rounding only.
        expect(Math.abs(v - liveRefs[k]![j]!), `call ${k} value ${j}`).toBeLessThan(1e-3 + 1e-5 * Math.abs(v));
      });
    });
    expect(precomputed).toHaveLength(ARGS.maxSteps);
    precomputed.forEach((loss, k) => expect(Math.abs(loss - live[k]!)).toBeLessThan(1e-4));
    reference.model.dispose();
  }, 120_000);

  it('(b) a second run with the same model and settings reuses the cache: no reference forward, identical losses', async () => {
    freshCache();
    const reference = await countedReference();
    const first = await train({ refModel: reference.model });
    expect(reference.calls()).toBe(precomputeForwards);
    reference.reset();
    const second = await train({ refModel: reference.model });
    expect(reference.calls()).toBe(0);
    expect(second).toEqual(first);

    // A reference loaded again from the same checkpoint is the same model.
    const reloaded = await countedReference();
    expect(await train({ refModel: reloaded.model })).toEqual(first);
    expect(reloaded.calls()).toBe(0);
    reference.model.dispose();
    reloaded.model.dispose();
  }, 120_000);

  it('(b) the policy as its own reference, keyed by its checkpoint files: reused on the second run', async () => {
    freshCache();
    let policyForwards = 0;
    const forward = models.QwenVLForConditionalGeneration.prototype.forward;
    models.QwenVLForConditionalGeneration.prototype.forward = function (this: never, ...args: never[]) {
      policyForwards += 1;
      return (forward as (...a: never[]) => unknown).apply(this, args);
    } as never;
    try {
      const first = await train({ modelPath: checkpoint });
      const training = ARGS.maxSteps * ARGS.gradientAccumulationSteps;
      expect(policyForwards).toBe(precomputeForwards + training);
      policyForwards = 0;
      const second = await train({ modelPath: checkpoint });
      expect(policyForwards).toBe(training);
      expect(second).toEqual(first);
    } finally {
      models.QwenVLForConditionalGeneration.prototype.forward = forward;
    }
  }, 120_000);

  it('(c) other weights, max_length, processor settings or record contents miss the cache', async () => {
    freshCache();
    const reference = await countedReference();
    const first = await train({ refModel: reference.model });
    expect(reference.calls()).toBe(precomputeForwards);

    // Weights changed in memory (then put back exactly).
    reference.reset();
    const [, weight] = [...reference.model.namedParameters()].find(([n]) => n.endsWith('mlp.down_proj.weight'))!;
    const original = weight.detach().clone();
    torch.noGrad(() => weight.add_(1e-2));
    const perturbed = await train({ refModel: reference.model });
    expect(reference.calls()).toBe(precomputeForwards);
    expect(perturbed).not.toEqual(first);
    torch.noGrad(() => weight.copy_(original));
    original.dispose();

    // max_length (long enough to cut nothing: the key still changes).
    reference.reset();
    await train({ refModel: reference.model, args: { maxLength: 512 } });
    expect(reference.calls()).toBe(precomputeForwards);

    // A processor setting that changes the image tokens.
    reference.reset();
    const bigger = await processing.fromPretrained(checkpoint, { image: { minPixels: 112 * 112 } });
    await train({ refModel: reference.model, processor: bigger });
    expect(reference.calls()).toBe(precomputeForwards);

    // A record edited in place (same file name and line, so the same record id).
    reference.reset();
    const folder = join(root, 'edited');
    cpSync(join(dataDir, 'vlrlhf', 'plain_dpo.json'), join(folder, 'plain_dpo.json'), { recursive: true });
    const file = join(folder, 'plain_dpo.json');
    const rows = JSON.parse(readFileSync(file, 'utf8')) as Array<{ chosen: string }>;
    rows[0]!.chosen = `${rows[0]!.chosen} Certainly.`;
    writeFileSync(file, JSON.stringify(rows, null, 2));
    await train({ refModel: reference.model, dataset: await plainDpo(file) });
    expect(reference.calls()).toBe(1); // only the batch holding the edited record

    // Unchanged, all of it is still cached.
    reference.reset();
    expect(await train({ refModel: reference.model })).toEqual(first);
    expect(reference.calls()).toBe(0);
    reference.model.dispose();
  }, 240_000);

  it('(c) a checkpoint whose weight files were rewritten misses the cache', async () => {
    freshCache();
    const dir = join(root, 'rewritten');
    cpSync(checkpoint, dir, { recursive: true });
    const countForwards = async (run: () => Promise<unknown>) => {
      let n = 0;
      const forward = models.QwenVLForConditionalGeneration.prototype.forward;
      models.QwenVLForConditionalGeneration.prototype.forward = function (this: never, ...args: never[]) {
        n += 1;
        return (forward as (...a: never[]) => unknown).apply(this, args);
      } as never;
      try {
        await run();
      } finally {
        models.QwenVLForConditionalGeneration.prototype.forward = forward;
      }
      return n;
    };
    const training = ARGS.maxSteps * ARGS.gradientAccumulationSteps;
    expect(await countForwards(() => train({ modelPath: dir }))).toBe(precomputeForwards + training);
    expect(await countForwards(() => train({ modelPath: dir }))).toBe(training);
    const model = await loadModel(dir);
    torch.noGrad(() => model.lmHead().weight.mul_(1.5));
    await models.savePretrained(model, dir);
    model.dispose();
    expect(await countForwards(() => train({ modelPath: dir }))).toBe(precomputeForwards + training);

    // The same files loaded in another dtype are another reference.
    const [single, double] = [await loadModel(dir), await models.fromPretrained(dir, { dtype: 'float64' })];
    const settings = { method: 'dpo', maxLength: 1024 };
    expect(referenceModelKey(single, dir, settings)).toBe(referenceModelKey(single, dir, settings));
    expect(referenceModelKey(single, dir, settings)).not.toBe(referenceModelKey(double, dir, settings));
    single.dispose();
    double.dispose();
  }, 120_000);

  it('KTO: rows and KL rows precomputed once; BCO (no KL row) does not take the KTO entries', async () => {
    freshCache();
    const reference = await countedReference();
    const ktoData = async () => (await data.openTrl(join(dataDir, 'kto', 'train.jsonl'))) as RecordDataset;
    const first = await train({ method: 'kto', refModel: reference.model, dataset: await ktoData() });
    // Per precompute batch: the rows and their KL rows.
    expect(reference.calls()).toBe(2 * precomputeForwards);
    reference.reset();
    expect(await train({ method: 'kto', refModel: reference.model, dataset: await ktoData() })).toEqual(first);
    expect(reference.calls()).toBe(0);
    await train({ method: 'kto', refModel: reference.model, dataset: await ktoData(), args: { lossType: 'bco' } });
    expect(reference.calls()).toBe(precomputeForwards);
    reference.model.dispose();
  }, 120_000);

  it('(d) precompute with data_augment is refused, naming the dataset file', async () => {
    freshCache();
    // MMPR's meta.json: shapes_vqa_correctness_rules has data_augment true.
    const meta = join(dataDir, 'mmpr', 'meta.json');
    const augmented = (JSON.parse(readFileSync(meta, 'utf8')) as Record<string, { data_augment: boolean }>)
      .shapes_vqa_correctness_rules!;
    expect(augmented.data_augment).toBe(true);
    const dataset = await data.openMmpr(meta, { maxDynamicPatch: 2 });
    const reference = await countedReference();
    const run = train({ refModel: reference.model, dataset });
    await expect(run).rejects.toThrow(/precompute_ref_log_probs with data_augment/);
    await expect(run).rejects.toThrow(/shapes_vqa_correctness_rules\.jsonl/);
    expect(reference.calls()).toBe(0);
    reference.model.dispose();
  }, 120_000);
});
