// The trainer (createTrainer + Trainer.train) against a loop written here from the components alone:
// the sampler's order, the processor, packPairs + pairForward, the loss objects with the window's
// normalisers, backward, clipGradNorm_, AdamW over transformers' weight-decay groups, the linear
// schedule with warmup and zeroGrad. Neither Trainer, createTrainer nor the methods are used here.
// Both run the same ops in the same order on the tiny Qwen2-VL with images in float32 (the fused AdamW
// kernel takes float32 or bfloat16 parameters), so the per-step
// losses, gradient norms and learning rates and every parameter after N steps must be bit-identical.
// Covered: DPO / MPO (sigmoid 0.8 + bco_pair 0.2 with the legacy running shift, rpo_alpha 1) with a
// frozen reference model; the same with LoRA, the reference being the policy with adapters disabled;
// SFT, whose 3 batches per epoch end in a short window of one micro-batch.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adapters, data, losses, models, nn, optim, processing, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import type { DataRecord, PreferenceRecord, RecordDataset, SftRecord } from '../../lib/data/records.js';
import { pairForward } from '../../lib/train/pair_forward.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';
import { createTrainer } from '../../lib/train/create.js';
import { dpoConfig, sftConfig } from '../../lib/train/config.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-trainer-loop-'));
const dataDir = join(root, '.data');
const checkpoint = join(dataDir, 'qwen2_vl');
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(() => {
  const script = join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', dataDir], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
}, 60_000);

const IGNORE = -100;
const STEPS = 3;
const LOOP = {
  perDeviceTrainBatchSize: 2,
  gradientAccumulationSteps: 2,
  maxSteps: STEPS,
  learningRate: 2e-3,
  weightDecay: 0.05,
  adamBeta1: 0.9,
  adamBeta2: 0.98,
  adamEpsilon: 1e-6,
  // Far below the tiny model's gradient norms, so every step is clipped.
  maxGradNorm: 0.05,
  lrSchedulerType: 'linear' as const,
  warmupSteps: 1,
  seed: 11,
  loggingSteps: 1,
  reportTo: ['none' as const],
  saveStrategy: 'no' as const,
  gradientCheckpointing: false,
  maxLength: null,
};
const MPO = {
  lossType: ['sigmoid', 'bco_pair'],
  lossWeights: [0.8, 0.2],
  rpoAlpha: 1,
  beta: 0.1,
  trlVersion: 'legacy' as const,
};

const loadPolicy = () => models.fromPretrained(checkpoint, { dtype: 'float32' });
const plainDpo = () =>
  data.openPlainDpo(join(dataDir, 'vlrlhf', 'plain_dpo.json'), { imageRoot: join(dataDir, 'vlrlhf', 'images') });
const sftData = async () => (await data.openTrl(join(dataDir, 'sft', 'train.jsonl'))) as RecordDataset<SftRecord>;

// --- the hand-written loop ------------------------------------------------------------------------

/** One micro-batch as the hand loop sees it: its counts, and its loss given the window's divisors. */
interface HandBatch {
  counts: losses.LossNormalisers;
  loss(normalisers: losses.LossNormalisers): Tensor;
  dispose(): void;
}
type HandCollate<T extends DataRecord> = (records: T[], pixels: processing.image.RgbImage[][]) => Promise<HandBatch>;

interface StepLog {
  loss: number;
  gradNorm: number;
  lr: number;
}

// transformers' Trainer.get_decay_parameter_names: parameters of nn.LayerNorm modules and names
// (lower-cased) matching bias, layernorm, rmsnorm, a `norm` path component or a `_norm` suffix are
// not decayed.
const NO_DECAY_NAMES = [/bias/, /layernorm/, /rmsnorm/, /(?:^|\.)norm(?:$|\.)/, /_norm(?:$|\.)/];
function hfParameterGroups(model: nn.Module, named: Array<[string, Tensor]>, weightDecay: number) {
  const layerNormParams = new Set<Tensor>();
  for (const [, module] of model.namedModules()) {
    if (module instanceof nn.LayerNorm) for (const p of module.parameters()) layerNormParams.add(p);
  }
  const decayed = ([name, p]: [string, Tensor]) =>
    !layerNormParams.has(p) && !NO_DECAY_NAMES.some((re) => re.test(name.toLowerCase()));
  return [
    { params: named.filter(decayed).map(([, p]) => p), weightDecay },
    { params: named.filter((n) => !decayed(n)).map(([, p]) => p), weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}

/** The epochs' batches of record indices: epoch e is the sampler's permutation seeded seed + e. */
function* batchOrder(
  length: number,
  seed: number,
  batchSize: number,
): Generator<{ epoch: number; batches: number[][] }> {
  for (let epoch = 0; ; epoch++) {
    const sampler = new data.EpochSampler(length, { seed });
    sampler.startEpoch(epoch);
    const order: number[] = [];
    for (let s = sampler.next(); s !== undefined; s = sampler.next()) order.push(s.index);
    const batches: number[][] = [];
    for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
    yield { epoch, batches };
  }
}

async function handLoop<T extends DataRecord>(
  policy: nn.Module,
  trainable: Array<[string, Tensor]>,
  dataset: RecordDataset<T>,
  collate: HandCollate<T>,
  learningRate = LOOP.learningRate,
): Promise<StepLog[]> {
  const optimizer = new optim.AdamW(hfParameterGroups(policy, trainable, LOOP.weightDecay), {
    lr: learningRate,
    beta1: LOOP.adamBeta1,
    beta2: LOOP.adamBeta2,
    eps: LOOP.adamEpsilon,
  });
  const schedule = new optim.LRScheduler(optimizer, {
    name: 'linear',
    totalSteps: STEPS,
    warmupSteps: LOOP.warmupSteps,
  });
  const params = optimizer.paramGroups.flatMap((g) => g.params);
  policy.train();
  const log: StepLog[] = [];
  for (const { batches } of batchOrder(dataset.length, LOOP.seed, LOOP.perDeviceTrainBatchSize)) {
    for (let w = 0; w < batches.length && log.length < STEPS; w += LOOP.gradientAccumulationSteps) {
      const window = batches.slice(w, w + LOOP.gradientAccumulationSteps);
      const micro: HandBatch[] = [];
      for (const indices of window) {
        const records = (await Promise.all(indices.map((i) => dataset.get(i)))) as T[];
        const pixels = await Promise.all(
          records.map((r) => Promise.all(r.images.map((image) => processing.image.loadImage(image)))),
        );
        micro.push(await collate(records, pixels));
      }
      // The accumulated batch's divisors: each count summed over the window.
      const normalisers: Record<string, number> = {};
      for (const b of micro) {
        for (const [key, n] of Object.entries(b.counts)) normalisers[key] = (normalisers[key] ?? 0) + (n as number);
      }
      let loss = 0;
      for (const b of micro) {
        const l = b.loss(normalisers);
        l.backward();
        loss += l.item() as number;
        l.dispose();
        b.dispose();
      }
      const gradNorm = optim.clipGradNorm_(params, LOOP.maxGradNorm);
      optimizer.step();
      const lr = optimizer.paramGroups[0]!.lr;
      schedule.step();
      optimizer.zeroGrad();
      log.push({ loss, gradNorm, lr });
    }
    if (log.length >= STEPS) return log;
  }
  return log;
}

/** DPO / MPO micro-batches: packed pairs through the policy; the reference's summed log-probs. */
function preferenceCollate(
  processor: processing.Processor,
  policy: models.CausalLM,
  objective: losses.PreferenceLoss,
  referenceLogps: (packed: data.PackedPairs) => Tensor,
): HandCollate<PreferenceRecord> {
  return async (records, pixels) => {
    const side = (key: 'chosen' | 'rejected') =>
      processor.process(records.map((r, i) => ({ prompt: r.prompt, completion: r[key], images: pixels[i] })));
    const [chosen, rejected] = [await side('chosen'), await side('rejected')];
    const packed = data.packPairs(processor, chosen, rejected, { ignoreIndex: IGNORE, maxLength: null });
    const p = records.length;
    const chosenTokens = torch.tidy(() => packed.targets.narrow(0, 0, p).ne(IGNORE).sum().item() as number);
    return {
      counts: { pairs: p, chosenTokens },
      loss: (normalisers) =>
        torch.tidy(() => {
          const ref = referenceLogps(packed);
          const out = pairForward(policy, packed);
          const input = {
            hidden: out.hidden,
            targets: out.targets,
            refChosenLogps: ref.narrow(0, 0, p),
            refRejectedLogps: ref.narrow(0, p, p),
          };
          return objective.compute(input, policy.lmHead(), { mode: 'train', normalisers }).loss;
        }),
      dispose: () => {
        for (const t of Object.values(packed)) if (torch.Tensor.isTensor(t)) t.dispose();
      },
    };
  };
}

/** Summed completion log-probs [2P] of `model` on the packed pairs, without a graph. */
function sequenceLogpsOf(model: models.CausalLM, packed: data.PackedPairs, chunkSize: number): Tensor {
  return torch.noGrad(() => {
    const out = pairForward(model, packed);
    return losses.sequenceLogps(out.hidden, model.lmHead(), out.targets, { ignoreIndex: IGNORE, chunkSize });
  });
}

// --- comparison -----------------------------------------------------------------------------------

function trainerSteps(outputDir: string): StepLog[] {
  return readMetricsLog(join(outputDir, 'metrics.jsonl'))
    .filter((e) => typeof e.loss === 'number')
    .map((e) => ({ loss: e.loss as number, gradNorm: e.grad_norm as number, lr: e.learning_rate as number }));
}

const snapshot = (model: nn.Module) =>
  new Map([...model.namedParameters()].map(([n, p]) => [n, p.detach().clone()] as [string, Tensor]));

/** Parameters that differ between the two models (names), and how many moved from `before`. */
function compareParameters(a: nn.Module, b: nn.Module, before: Map<string, Tensor>) {
  const other = new Map(b.namedParameters());
  const differ: string[] = [];
  let moved = 0;
  torch.tidy(() => {
    for (const [name, p] of a.namedParameters()) {
      const q = other.get(name)!;
      if (!(p.sub(q).abs().max().item() === 0)) differ.push(name);
      if ((p.sub(before.get(name)!).abs().max().item() as number) > 0) moved += 1;
    }
  });
  return { differ, moved, count: other.size };
}

function expectSameRun(trainer: StepLog[], hand: StepLog[]): void {
  expect(trainer).toHaveLength(STEPS);
  expect(hand).toHaveLength(STEPS);
  hand.forEach((h, k) => {
    expect(Number.isFinite(h.loss), `step ${k + 1} loss`).toBe(true);
    expect(h.gradNorm, `step ${k + 1} is clipped`).toBeGreaterThan(LOOP.maxGradNorm);
  });
  // Linear warmup over 1 step, then linear decay to 0 at step 3: 0, lr, lr/2.
  expect(hand.map((h) => h.lr)).toEqual([0, LOOP.learningRate, LOOP.learningRate / 2]);
  expect(trainer).toEqual(hand);
}

describe('trainer step = hand-written loop (tiny Qwen2-VL with images, float32)', () => {
  it('DPO / MPO with a frozen reference: identical losses, grad norms, lrs and parameters after 3 steps', async () => {
    const processor = await processing.fromPretrained(checkpoint);
    const reference = (await loadPolicy()).eval();
    reference.requiresGrad_(false);
    const [viaTrainer, byHand] = [await loadPolicy(), await loadPolicy()];
    const before = snapshot(byHand);
    const outputDir = join(root, 'dpo');
    const args = dpoConfig({ outputDir, ...LOOP, ...MPO });
    const trainer = createTrainer({
      method: 'dpo',
      args,
      model: viaTrainer,
      processor,
      refModel: reference,
      trainDataset: await plainDpo(),
    });
    await trainer.train();

    const objective = new losses.PreferenceLoss(MPO);
    const chunkSize = objective.config.chunkSize;
    const collate = preferenceCollate(processor, byHand, objective, (packed) =>
      sequenceLogpsOf(reference, packed, chunkSize),
    );
    const trainable = [...byHand.namedParameters()] as Array<[string, Tensor]>;
    const hand = await handLoop(byHand, trainable, await plainDpo(), collate);

    expectSameRun(trainerSteps(outputDir), hand);
    const compared = compareParameters(viaTrainer, byHand, before);
    expect(compared.differ).toEqual([]);
    // Vision tower, merger and language model all moved.
    expect(compared.moved).toBe(compared.count);
    for (const m of [viaTrainer, byHand, reference]) m.dispose();
  }, 240_000);

  it('DPO / MPO with LoRA (reference = adapters disabled): identical losses and adapter weights', async () => {
    const processor = await processing.fromPretrained(checkpoint);
    const lora = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] };
    const withAdapter = async () => {
      const model = await loadPolicy();
      torch.manualSeed(3); // the same A matrices in both
      return { model, adapter: adapters.getPeftModel(model, lora) };
    };
    const [viaTrainer, byHand] = [await withAdapter(), await withAdapter()];
    const before = snapshot(byHand.model);
    const outputDir = join(root, 'lora');
    const args = dpoConfig({ outputDir, ...LOOP, ...MPO, learningRate: 2e-2 });
    const trainer = createTrainer({
      method: 'dpo',
      args,
      model: viaTrainer.model,
      processor,
      adapter: viaTrainer.adapter,
      trainDataset: await plainDpo(),
    });
    await trainer.train();

    const objective = new losses.PreferenceLoss(MPO);
    const { model, adapter } = byHand;
    const referenceLogps = (packed: data.PackedPairs) =>
      adapter.withAdaptersDisabled(() => {
        model.eval();
        try {
          return sequenceLogpsOf(model, packed, objective.config.chunkSize);
        } finally {
          model.train();
        }
      });
    const collate = preferenceCollate(processor, model, objective, referenceLogps);
    const hand = await handLoop(model, adapter.trainableParameters(), await plainDpo(), collate, 2e-2);
    const trainerLog = trainerSteps(outputDir);
    expect(hand.map((h) => h.lr)).toEqual([0, 2e-2, 1e-2]);
    expect(trainerLog).toEqual(hand);
    hand.forEach((h) => expect(h.gradNorm).toBeGreaterThan(LOOP.maxGradNorm));
    const compared = compareParameters(viaTrainer.model, model, before);
    expect(compared.differ).toEqual([]);
    // Only the adapters moved: A and B of every targeted Linear.
    const trained = adapter.trainableParameters().length;
    expect(trained).toBeGreaterThan(0);
    expect(compared.moved).toBe(trained);
    viaTrainer.model.dispose();
    model.dispose();
  }, 240_000);

  it('SFT: identical losses and parameters, a short last window included', async () => {
    const processor = await processing.fromPretrained(checkpoint);
    const [viaTrainer, byHand] = [await loadPolicy(), await loadPolicy()];
    const before = snapshot(byHand);
    const outputDir = join(root, 'sft');
    const trainDataset = await sftData();
    expect(trainDataset.length).toBe(6); // 3 batches of 2: windows of 2 and 1 micro-batches
    const trainer = createTrainer({
      method: 'sft',
      args: sftConfig({ outputDir, ...LOOP }),
      model: viaTrainer,
      processor,
      trainDataset,
    });
    await trainer.train();

    const objective = new losses.SftLoss({});
    const collate: HandCollate<SftRecord> = async (records, pixels) => {
      const batch = await processor.process(records.map((r, i) => ({ messages: r.messages, images: pixels[i] })));
      const targets = losses.targetsFromLabels(batch.labels, IGNORE);
      const tokens = torch.tidy(() => targets.ne(IGNORE).sum().item() as number);
      return {
        counts: { tokens },
        loss: (normalisers) =>
          torch.tidy(() => {
            const hidden = byHand.forward(
              {
                inputIds: batch.inputIds,
                attentionMask: batch.attentionMask,
                pixelValues: batch.pixelValues,
                imageGridThw: (batch as processing.Qwen2VlBatch).imageGridThw,
              },
              { logits: false },
            ).hidden;
            return objective.compute({ hidden, targets }, byHand.lmHead(), { mode: 'train', normalisers }).loss;
          }),
        dispose: () => {
          targets.dispose();
          for (const t of Object.values(batch)) if (torch.Tensor.isTensor(t)) t.dispose();
        },
      };
    };
    const trainable = [...byHand.namedParameters()] as Array<[string, Tensor]>;
    const hand = await handLoop(byHand, trainable, trainDataset, collate);

    expectSameRun(trainerSteps(outputDir), hand);
    const compared = compareParameters(viaTrainer, byHand, before);
    expect(compared.differ).toEqual([]);
    expect(compared.moved).toBe(compared.count);
    viaTrainer.dispose();
    byHand.dispose();
  }, 240_000);
});
