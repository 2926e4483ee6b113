// bf16 mixed precision (lib/optim/mixed_precision.ts, lib/train/precision.ts): float32 masters that
// take AdamW's update computed here by formula (float64) from the upcast bf16 gradients, model
// weights equal to the masters rounded to bf16 after every step, float32 optimizer state, updates
// below a bf16 ulp kept by the masters; optimizer files and trainer checkpoints that restore the
// masters bit for bit; a bf16 training run whose first losses stay within bf16's precision of the
// float32 run's; the refusals (fp16, float16 weights, a used optimizer, a plain optimizer's file).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordDataset, SftRecord } from '../../lib/data/records.js';
import { openTrl } from '../../lib/data/trl.js';
import { fromPretrained as loadModel, savePretrained } from '../../lib/models/pretrained.js';
import type { CausalLM } from '../../lib/models/causal_lm.js';
import { AdamW, loadOptimizer, saveOptimizer } from '../../lib/optim/index.js';
import { MixedPrecisionOptimizer } from '../../lib/optim/mixed_precision.js';
import { fromPretrained as loadProcessor } from '../../lib/processing/index.js';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { sftConfig, type SftConfigInput } from '../../lib/train/config.js';
import { createTrainer } from '../../lib/train/create.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';
import { applyPrecision, withFloat32Weights } from '../../lib/train/precision.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-precision-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const values = (t: Tensor): number[] =>
  Array.from(t.detach().to({ dtype: 'float64' }).contiguous().data() as Float64Array);
const bf16Round = (t: Tensor): number[] => torch.tidy(() => values(t.to({ dtype: 'bfloat16' })));

/** torch.optim.AdamW's update in float64: decoupled decay, moments, bias corrections. */
class TextbookAdamW {
  m: number[];
  v: number[];
  constructor(
    public p: number[],
    readonly o: { beta1: number; beta2: number; eps: number; weightDecay: number },
  ) {
    this.m = p.map(() => 0);
    this.v = p.map(() => 0);
  }

  step(grad: number[], lr: number, t: number): void {
    const { beta1, beta2, eps, weightDecay } = this.o;
    const [bc1, bc2] = [1 - beta1 ** t, 1 - beta2 ** t];
    this.p = this.p.map((p, i) => {
      const g = grad[i]!;
      this.m[i] = beta1 * this.m[i]! + (1 - beta1) * g;
      this.v[i] = beta2 * this.v[i]! + (1 - beta2) * g * g;
      const decayed = p * (1 - lr * weightDecay);
      return decayed - (lr / bc1) * (this.m[i]! / (Math.sqrt(this.v[i]! / bc2) + eps));
    });
  }
}

const HYPER = { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 };

/** Two float32 "model" parameters, named, and a mixed-precision AdamW over them. */
function smallModel(seed: number) {
  torch.manualSeed(seed);
  const weight = torch.randn([3, 5]).requiresGrad_(true).keep();
  const bias = torch.randn([5]).mul(0.01).requiresGrad_(true).keep();
  const named: Array<[string, Tensor]> = [
    ['layer.weight', weight],
    ['layer.bias', bias],
  ];
  const inner = new AdamW(
    [
      { params: [named[0]!], weightDecay: HYPER.weightDecay },
      { params: [named[1]!], weightDecay: 0 },
    ],
    { lr: 1e-2, ...HYPER, weightDecay: HYPER.weightDecay },
  );
  return { weight, bias, named, start: [values(weight), values(bias)], optimizer: new MixedPrecisionOptimizer(inner) };
}

// A loss whose gradients differ per step: sum(sin(k · x · W + b)).
function backward(weight: Tensor, bias: Tensor, k: number): void {
  torch.tidy(() => {
    const x = torch.linspace(-1, 1, 3).mul(k).reshape([1, 3]).to({ dtype: weight.dtype });
    x.matmul(weight).add(bias).sin().sum().backward();
  });
}

describe('MixedPrecisionOptimizer', () => {
  it('bf16 matmul, softmax and backward run on this CPU libtorch', () => {
    torch.tidy(() => {
      const a = torch.randn([4, 8]).bfloat16().requiresGrad_(true);
      const out = a.matmul(torch.randn([8, 3]).bfloat16()).softmax(-1);
      out.sum().backward();
      expect([out.dtype, a.grad!.dtype]).toEqual(['bfloat16', 'bfloat16']);
    });
  });

  it('steps float32 masters by AdamW on the upcast bf16 gradients; the weights are the masters rounded', () => {
    const { weight, bias, optimizer, start } = smallModel(1);
    expect([weight.dtype, bias.dtype]).toEqual(['bfloat16', 'bfloat16']);
    expect(optimizer.masters.map((m) => m.dtype)).toEqual(['float32', 'float32']);
    expect(optimizer.masters.map(values)).toEqual(start); // copied before the cast: exact
    const book = [new TextbookAdamW(start[0]!, HYPER), new TextbookAdamW(start[1]!, { ...HYPER, weightDecay: 0 })];
    const lrs = [1e-2, 5e-3, 2e-2];
    lrs.forEach((lr, s) => {
      for (const g of optimizer.paramGroups) g.lr = lr; // as the scheduler sets it
      backward(weight, bias, s + 1);
      const grads = [weight, bias].map((p) => values(p.grad!)); // bf16 gradients, upcast exactly
      expect(weight.grad!.dtype).toBe('bfloat16');
      optimizer.step();
      optimizer.zeroGrad();
      book.forEach((b, k) => b.step(grads[k]!, lr, s + 1));
      optimizer.masters.forEach((master, k) => {
        const got = values(master);
        got.forEach((x, i) => expect(Math.abs(x - book[k]!.p[i]!)).toBeLessThan(2e-6 * (1 + Math.abs(x))));
      });
      expect(values(weight)).toEqual(bf16Round(optimizer.masters[0]!));
      expect(values(bias)).toEqual(bf16Round(optimizer.masters[1]!));
    });
    const state = optimizer.inner.state.get(optimizer.masters[0]!)!;
    expect([(state.expAvg as Tensor).dtype, (state.expAvgSq as Tensor).dtype, state.step]).toEqual([
      'float32',
      'float32',
      3,
    ]);
  });

  it('keeps updates below a bf16 ulp in the masters until they move the bf16 weight', () => {
    const { weight, bias, optimizer } = smallModel(2);
    for (const g of optimizer.paramGroups) Object.assign(g, { lr: 2e-5, weightDecay: 0 });
    const before = values(weight);
    backward(weight, bias, 1);
    optimizer.step();
    optimizer.zeroGrad();
    // One Adam step moves each weight by ~lr = 2e-5, far below bf16's ulp near 1 (2^-7).
    expect(values(weight)).toEqual(before);
    expect(values(optimizer.masters[0]!)).not.toEqual(before);
    for (let s = 0; s < 400; s++) {
      backward(weight, bias, 1);
      optimizer.step();
      optimizer.zeroGrad();
    }
    expect(values(weight)).not.toEqual(before); // 401 · 2e-5 ≈ 8e-3: whole ulps now
    expect(values(weight)).toEqual(bf16Round(optimizer.masters[0]!));
  });

  it('an optimizer file restores masters, moments and steps exactly; the next steps are bit-identical', async () => {
    const a = smallModel(3);
    for (let s = 1; s <= 2; s++) {
      backward(a.weight, a.bias, s);
      a.optimizer.step();
      a.optimizer.zeroGrad();
    }
    const file = join(root, 'optimizer.safetensors');
    await saveOptimizer(file, a.optimizer);
    const header = await torch.readSafetensorsHeader(file);
    expect(header.tensors['state.layer.weight.master']).toMatchObject({ dtype: 'float32', shape: [3, 5] });
    const b = smallModel(4); // other values everywhere
    await loadOptimizer(file, b.optimizer);
    expect(b.optimizer.masters.map(values)).toEqual(a.optimizer.masters.map(values));
    expect(values(b.weight)).toEqual(values(a.weight));
    for (let s = 3; s <= 4; s++) {
      for (const run of [a, b]) {
        backward(run.weight, run.bias, s);
        run.optimizer.step();
        run.optimizer.zeroGrad();
      }
    }
    expect(b.optimizer.masters.map(values)).toEqual(a.optimizer.masters.map(values));
    expect(values(b.bias)).toEqual(values(a.bias));
  });

  it('refuses a used optimizer, a plain optimizer file and state without masters', async () => {
    const used = smallModel(5);
    backward(used.weight, used.bias, 1);
    used.optimizer.step();
    expect(() => new MixedPrecisionOptimizer(used.optimizer.inner)).toThrow(/has state already|give a fresh one/);
    torch.manualSeed(6);
    const w = torch.randn([3, 5]).requiresGrad_(true).keep();
    const plain = new AdamW([['layer.weight', w] as [string, Tensor]]);
    w.grad = torch.ones([3, 5]);
    plain.step();
    const file = join(root, 'plain.safetensors');
    await saveOptimizer(file, plain);
    const mixed = new MixedPrecisionOptimizer(
      new AdamW([['layer.weight', torch.randn([3, 5]).keep()] as [string, Tensor]]),
    );
    await expect(loadOptimizer(file, mixed)).rejects.toThrow(/holds AdamW state, not MixedPrecision<AdamW>/);
    expect(() => mixed.loadStateDict(plain.stateDict(), 'saved.json')).toThrow(
      /saved\.json: .*no float32 master for parameter 'layer\.weight'/s,
    );
  });
});

describe('applyPrecision', () => {
  const args = (bf16: boolean, fp16 = false) => ({ bf16, fp16 });

  it('leaves the optimizer alone without bf16 and refuses fp16 and float16 / float64 weights', () => {
    const named: Array<[string, Tensor]> = [
      ['a.weight', torch.randn([3, 2]).requiresGrad_(true).keep()],
      ['a.bias', torch.randn([2]).requiresGrad_(true).keep()],
    ];
    const model = { parameters: () => named.map(([, p]) => p) } as unknown as CausalLM;
    const plain = new AdamW(named);
    expect(applyPrecision({ args: args(false), model }, plain)).toBe(plain);
    expect(() => applyPrecision({ args: args(true, true), model }, plain)).toThrow(
      /bf16 and fp16 are both set; at most one can be/,
    );
    expect(() => applyPrecision({ args: args(false, true), model }, plain)).toThrow(/fp16 mixed precision .* use bf16/);
    // With bf16: masters of the trainable parameters, every floating parameter cast, buffers left alone.
    const frozen = torch.ones([4]).keep();
    const refWeight = torch.ones([2, 2]).keep();
    const withFrozen = { parameters: () => [...named.map(([, p]) => p), frozen] } as unknown as CausalLM;
    const ref = { parameters: () => [refWeight] } as unknown as CausalLM;
    const mixed = applyPrecision({ args: args(true), model: withFrozen, refModel: ref }, new AdamW(named));
    expect(mixed).toBeInstanceOf(MixedPrecisionOptimizer);
    expect([...named.map(([, p]) => p.dtype), frozen.dtype, refWeight.dtype]).toEqual(Array(4).fill('bfloat16'));
    expect((mixed as MixedPrecisionOptimizer<never>).masters.map((m) => m.dtype)).toEqual(['float32', 'float32']);
    expect(
      torch.tidy(() =>
        (mixed as MixedPrecisionOptimizer<never>).masters[0]!.to({ dtype: 'bfloat16' }).equal(named[0]![1]),
      ),
    ).toBe(true);
    const half = { parameters: () => [torch.zeros([2], { dtype: 'float16' }).keep()] } as unknown as CausalLM;
    expect(() => applyPrecision({ args: args(true), model: half }, plain)).toThrow(
      /bf16: the model has float16 weights; .*torch_dtype float32 or bfloat16/,
    );
  });
});

// --- through the trainer, on the tiny Qwen2-VL and the SFT data of scripts/make-recipe-data.mjs ---

const dataDir = join(root, '.data');
beforeAll(() => {
  const script = join(import.meta.dirname, '../../scripts/make-recipe-data.mjs');
  const made = spawnSync(process.execPath, [script, '--out', dataDir], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
}, 60_000);

const RUN: Omit<SftConfigInput, 'outputDir'> = {
  perDeviceTrainBatchSize: 2,
  maxSteps: 4,
  learningRate: 1e-3,
  weightDecay: 0.05,
  lrSchedulerType: 'linear',
  seed: 5,
  loggingSteps: 1,
  reportTo: ['none'],
  saveSteps: 2,
  gradientCheckpointing: false,
  maxLength: null,
};

/** A trainer over the tiny model through createTrainer (which wraps the optimizer when bf16 is set). */
async function trainer(outputDir: string, extra: Partial<SftConfigInput> = {}) {
  const checkpoint = join(dataDir, 'qwen2_vl');
  const args = sftConfig({ ...RUN, ...extra, outputDir });
  const model = await loadModel(checkpoint, { dtype: 'float32' });
  const processor = await loadProcessor(checkpoint);
  const trainDataset = (await openTrl(join(dataDir, 'sft', 'train.jsonl'))) as RecordDataset<SftRecord>;
  const trainer = createTrainer({ method: 'sft', args, model, processor, trainDataset, modelPath: checkpoint });
  return { trainer, model, optimizer: trainer.parts.optimizer, args };
}

const lossesOf = (dir: string): number[] =>
  readMetricsLog(join(dir, 'metrics.jsonl'))
    .filter((e) => typeof e.loss === 'number')
    .map((e) => e.loss as number);

describe('bf16 training', () => {
  it("a bf16 run's first losses are the float32 run's within bf16 precision", async () => {
    const f32 = await trainer(join(root, 'f32'), { saveStrategy: 'no' });
    const bf16 = await trainer(join(root, 'bf16'), { saveStrategy: 'no', bf16: true });
    expect(bf16.optimizer).toBeInstanceOf(MixedPrecisionOptimizer);
    expect(bf16.model.parameters().every((p) => p.dtype === 'bfloat16')).toBe(true);
    await f32.trainer.train();
    await bf16.trainer.train();
    const [a, b] = [lossesOf(join(root, 'f32')), lossesOf(join(root, 'bf16'))];
    expect(b).toHaveLength(4);
    // The bf16 loss is itself a bf16 number (ulp 2^-7 relative: 0.0625 at 8); with the weights and
    // activations rounded to bf16 on top it stays within a few ulps of the float32 loss.
    b.forEach((loss, i) => expect(Math.abs(loss - a[i]!)).toBeLessThan(0.02 * a[i]!));
    expect(b).not.toEqual(a);
  }, 180_000);

  it('checkpoints hold the bf16 weights and the float32 masters; resume restores the masters exactly', async () => {
    const straight = await trainer(join(root, 'straight'), { bf16: true });
    await straight.trainer.train();
    const mixed = straight.optimizer as MixedPrecisionOptimizer<never>;
    const ckpt = join(root, 'straight', 'checkpoint-2');
    const model = await torch.readSafetensorsHeader(join(ckpt, 'model.safetensors'));
    expect(new Set(Object.values(model.tensors).map((t) => t.dtype))).toEqual(new Set(['bfloat16']));
    const optimizer = await torch.readSafetensorsHeader(join(ckpt, 'optimizer.safetensors'));
    const masters = Object.entries(optimizer.tensors).filter(([k]) => k.endsWith('.master'));
    expect(masters.length).toBe(mixed.masters.length);
    expect(masters.every(([, t]) => t.dtype === 'float32')).toBe(true);

    // Resume from checkpoint-2 into another folder: steps 3 and 4 end on the straight run's masters.
    const atCheckpoint = await torch.loadSafetensors(join(ckpt, 'optimizer.safetensors'));
    const names = mixed.paramGroups.flatMap((g) => g.paramNames!);
    const resumed = await trainer(join(root, 'resumed'), { bf16: true, resumeFromCheckpoint: ckpt });
    await resumed.trainer.train();
    const again = resumed.optimizer as MixedPrecisionOptimizer<never>;
    expect(again.masters.map(values)).toEqual(mixed.masters.map(values));
    expect(values(again.masters[0]!)).not.toEqual(values(atCheckpoint[`state.${names[0]}.master`]!));
    const lossAt = (dir: string, step: number) =>
      readMetricsLog(join(root, dir, 'metrics.jsonl')).find((e) => e.step === step && typeof e.loss === 'number')?.loss;
    expect([lossAt('resumed', 3), lossAt('resumed', 4)]).toEqual([lossAt('straight', 3), lossAt('straight', 4)]);
    expect(lossAt('resumed', 3)).toBeTypeOf('number');

    // The final save is bf16 too; withFloat32Weights writes the masters as a float32 checkpoint.
    const final = await torch.loadSafetensors(join(root, 'straight', 'model.safetensors'));
    const params = new Map(straight.model.namedParameters());
    for (const [name, t] of Object.entries(final)) {
      expect(t.dtype).toBe('bfloat16');
      expect(params.has(name)).toBe(true);
      expect(values(t)).toEqual(values(params.get(name)!));
    }
    const f32Dir = join(root, 'float32-export');
    await withFloat32Weights(straight.model, mixed, () => savePretrained(straight.model, f32Dir));
    expect(straight.model.parameters().every((p) => p.dtype === 'bfloat16')).toBe(true);
    const exported = await torch.loadSafetensors(join(f32Dir, 'model.safetensors'));
    names.forEach((name, i) => {
      if (!(name in exported)) return; // a tied lm_head is stored once
      expect(exported[name]!.dtype).toBe('float32');
      expect(values(exported[name]!)).toEqual(values(mixed.masters[i]!));
    });
    expect(existsSync(join(f32Dir, 'config.json'))).toBe(true);
  }, 300_000);
});
