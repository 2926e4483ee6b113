// QLoRA end to end on the golden tiny Qwen2-VL: quantizeModel against the float32 model, quantise on
// load against load-then-quantise, LoRA / DoRA over 4-bit bases (training sanity, PEFT's merge
// semantics), and the bitsandbytes checkpoint format (save → load round trip, keys, config).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { Linear } from '../../lib/nn/index.js';
import { fromPretrained, savePretrained, type CausalLM, type ModelInputs } from '../../lib/models/index.js';
import { LoraLinear, getPeftModel, type LoraModel } from '../../lib/adapters/index.js';
import { castAdapters, parseQuantStateTensor } from '../../lib/internal.js';
import { targetsFromLabels } from '../../lib/losses/index.js';
import { Linear4bit, quantizeModel } from '../../lib/quant/index.js';
import { goldenDir, loadGolden } from '../models/golden.js';
import { perturb } from '../adapters/helpers.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'vlalign-quant-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const GOLDEN = goldenDir('qwen2_vl');
const ATTENTION = String.raw`^model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj$`;

async function inputsOf(name: string): Promise<ModelInputs> {
  const inputs = (await loadGolden('qwen2_vl'))[name]!.inputs;
  return {
    inputIds: inputs.input_ids!,
    attentionMask: inputs.attention_mask,
    pixelValues: inputs.pixel_values,
    imageGridThw: inputs.image_grid_thw,
  };
}

const logits = (model: CausalLM, inputs: ModelInputs): Tensor => torch.noGrad(() => model.forward(inputs).logits!);
const rms = (t: Tensor): number => torch.tidy(() => t.pow(2).mean().sqrt().item() as number);
const relRms = (a: Tensor, ref: Tensor): number => torch.tidy(() => rms(a.sub(ref)) / rms(ref));
const maxDiff = (a: Tensor, b: Tensor): number => torch.tidy(() => a.sub(b).abs().max().item() as number);

function expectSameState(a: Map<string, Tensor>, b: Map<string, Tensor>): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [name, t] of a) expect(t.equal(b.get(name)!), name).toBe(true);
}

const linearNames = (model: CausalLM, kind: new (...args: never[]) => Linear): string[] =>
  [...model.namedModules()].filter(([, m]) => m.constructor === kind).map(([n]) => n);

describe('quantizeModel', () => {
  it('replaces every Linear but lm_head by Linear4bit; logits stay within the error of equivalent weight noise', async () => {
    const dense = await fromPretrained(GOLDEN);
    const model = await fromPretrained(GOLDEN);
    const lmHead = model.getSubmodule('lm_head') as Linear;
    const lmHeadWeight = lmHead.weight.clone();
    const names = quantizeModel(model);
    expect(names).toHaveLength(35); // 3 vision blocks × 4, merger 2, 3 decoder layers × 7
    expect(linearNames(model, Linear)).toEqual(['lm_head']);
    expect(model.getSubmodule('lm_head')).toBe(lmHead);
    expect(lmHead.weight.equal(lmHeadWeight)).toBe(true);
    expect(model.outputWeight()).toBe(lmHead.weight);
    // The typed fields follow the swap.
    expect(
      (
        model as unknown as { model: { layers: { at(i: number): { self_attn: { q_proj: unknown } } } } }
      ).model.layers.at(0).self_attn.q_proj,
    ).toBe(model.getSubmodule('model.layers.0.self_attn.q_proj'));

    // NF4 of a Gaussian-like weight has a relative RMS error of ~0.092 per layer (measured here on
    // every layer). Such errors compound over the 35 layers, so the bound on the logits is set by
    // the same model with independent Gaussian noise of that relative size added to each weight:
    // NF4 must do no worse than 1.5x that (measured: 0.247 vs 0.264; max |diff| 3.7 vs 4.8 on
    // logits with std 3.0). lm_head stays dense, as transformers leaves it.
    const weightErrors = names.map((n) =>
      torch.tidy(() =>
        relRms((model.getSubmodule(n) as Linear4bit).dequantize(), (dense.getSubmodule(n) as Linear).weight),
      ),
    );
    expect(Math.max(...weightErrors)).toBeLessThan(0.1);
    expect(Math.min(...weightErrors)).toBeGreaterThan(0.08);
    const noisy = await fromPretrained(GOLDEN);
    torch.manualSeed(0);
    torch.noGrad(() => {
      for (const [i, n] of names.entries()) {
        const w = (noisy.getSubmodule(n) as Linear).weight;
        w.add_(torch.tidy(() => torch.randnLike(w).mul(rms(w) * weightErrors[i]!)));
      }
    });
    const inputs = await inputsOf('one_image');
    torch.tidy(() => {
      const [ref, q, n] = [logits(dense, inputs), logits(model, inputs), logits(noisy, inputs)];
      const [qErr, noiseErr] = [relRms(q, ref), relRms(n, ref)];
      console.log(
        `quantizeModel qwen2_vl: logits max |diff| ${maxDiff(q, ref).toFixed(3)}, rel RMS ${qErr.toFixed(3)} (noise-equivalent ${noiseErr.toFixed(3)}), logit std ${rms(ref).toFixed(2)}`,
      );
      expect(qErr).toBeGreaterThan(0.05);
      expect(qErr).toBeLessThan(1.5 * noiseErr);
    });
    for (const m of [dense, model, noisy]) m.dispose();
    lmHeadWeight.dispose();
  });

  it('skipModules: a RegExp keeps the vision tower dense; the output layer is never quantised', async () => {
    const model = await fromPretrained(GOLDEN);
    const names = quantizeModel(model, { skipModules: [/^visual\./] });
    expect(names).toHaveLength(21);
    expect(names.every((n) => n.startsWith('model.layers.'))).toBe(true);
    expect(linearNames(model, Linear).filter((n) => !n.startsWith('visual.'))).toEqual(['lm_head']);
    expect(quantizeModel(model)).toHaveLength(14); // idempotent on 4-bit layers; the rest of the tower now
    expect(() => quantizeModel(getPeftModel(model, { targetModules: 'lm_head' }).model)).toThrow(
      /quantise the base model before getPeftModel/,
    );
    model.dispose();
  });

  it('measures 0.516 bytes per quantised parameter on the model (double quant), the tables aside', async () => {
    const model = await fromPretrained(GOLDEN);
    const names = quantizeModel(model);
    const layers = names.map((n) => model.getSubmodule(n) as Linear4bit);
    const params = layers.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0);
    const bytes = layers.reduce((s, l) => s + l.quantizedBytes(), 0);
    const tables = layers.length * (16 * 4 + 256 * 4 + 4);
    console.log(
      `qwen2_vl golden: ${params} quantised parameters, ${(bytes / params).toFixed(4)} bytes/param with the code tables, ${((bytes - tables) / params).toFixed(4)} without`,
    );
    expect((bytes - tables) / params).toBeCloseTo(0.516, 2);
    model.dispose();
  });
});

describe('quantise on load', () => {
  it('equals load-then-quantise bit for bit (float32 and bfloat16, sharded)', async () => {
    const sharded = tempDir();
    const base = await fromPretrained(GOLDEN);
    await savePretrained(base, sharded, { maxShardBytes: 200_000 });
    base.dispose();
    for (const [dtype, options] of [
      ['float32', {}],
      ['bfloat16', { computeDtype: 'bfloat16', quantType: 'fp4', doubleQuant: false }],
    ] as const) {
      const later = await fromPretrained(GOLDEN, { dtype });
      quantizeModel(later, options);
      const onLoad = await fromPretrained(sharded, { dtype, quantization: options });
      expectSameState(later.stateDict(), onLoad.stateDict());
      const q = onLoad.getSubmodule('model.layers.0.mlp.up_proj') as Linear4bit;
      expect([q.weightDtype, q.computeDtype, q.quantType]).toEqual([
        dtype,
        options.computeDtype ?? 'float32',
        options.quantType ?? 'nf4',
      ]);
      later.dispose();
      onLoad.dispose();
    }
  });
});

describe('LoRA and DoRA over a 4-bit base', () => {
  // The same model with every 4-bit layer replaced by a dense Linear on its dequantised weight.
  function dequantizedTwin(model: CausalLM, twin: CausalLM): void {
    for (const [name, m] of model.namedModules()) {
      if (m instanceof Linear4bit) {
        const dense = twin.getSubmodule(name) as Linear;
        torch.noGrad(() => dense.weight.copy_(m.dequantize()));
      }
    }
  }

  for (const useDora of [false, true]) {
    it(`${useDora ? 'DoRA' : 'LoRA'}: equals the adapter over a dense base holding the dequantised weights (DoRA's norm included)`, async () => {
      const model = await fromPretrained(GOLDEN);
      quantizeModel(model);
      const twin = await fromPretrained(GOLDEN);
      dequantizedTwin(model, twin);
      torch.manualSeed(3);
      const peft = getPeftModel(model, { targetModules: ATTENTION, r: 4, loraAlpha: 8, useDora });
      torch.manualSeed(3);
      const peftTwin = getPeftModel(twin, { targetModules: ATTENTION, r: 4, loraAlpha: 8, useDora });
      perturb(peft);
      perturb(peftTwin);
      for (const [name, layer] of peft.layers) {
        expect(layer.quantized).toBe(true);
        expect(layer.lora_A.weight.dtype).toBe('float32');
        if (useDora)
          expect(layer.lora_magnitude_vector!.equal(peftTwin.layers.get(name)!.lora_magnitude_vector!)).toBe(true);
      }
      const inputs = await inputsOf('one_image');
      torch.tidy(() => {
        const ref = logits(twin, inputs);
        expect(maxDiff(logits(model, inputs), ref)).toBeLessThan(1e-4);
        // Disabled adapters: the 4-bit base alone.
        peft.disableAdapters();
        peftTwin.disableAdapters();
        expect(maxDiff(logits(model, inputs), logits(twin, inputs))).toBeLessThan(1e-4);
        peft.enableAdapters();
        peftTwin.enableAdapters();
      });
      // The state dict keeps the 4-bit tensors beside the adapter's.
      const names = [...model.stateDict().keys()].filter((n) => n.startsWith('model.layers.0.self_attn.q_proj.'));
      expect(names.sort()).toEqual(
        [
          'bias',
          'lora_A.weight',
          'lora_B.weight',
          ...(useDora ? ['lora_magnitude_vector'] : []),
          'weight',
          'weight_absmax',
          'weight_nested_absmax',
          'weight_nested_offset',
          'weight_nested_quant_map',
          'weight_quant_map',
        ]
          .map((n) => `model.layers.0.self_attn.q_proj.${n}`)
          .sort(),
      );
      peft.dispose();
      peftTwin.dispose();
    });
  }

  it('QLoRA training sanity: adapters get gradients, the 4-bit base stays bit-identical, the loss falls (bf16 adapters too)', async () => {
    const inputs = await inputsOf('text_only');
    const ids = inputs.inputIds;
    for (const adapterDtype of ['float32', 'bfloat16'] as const) {
      const model = await fromPretrained(GOLDEN, { quantization: { computeDtype: 'float32' } });
      torch.manualSeed(0);
      const peft = getPeftModel(model, {
        targetModules: ATTENTION,
        r: 8,
        loraAlpha: 16,
        useDora: adapterDtype === 'bfloat16',
      });
      if (adapterDtype === 'bfloat16') castAdapters(peft.layers.values(), 'bfloat16');
      model.train();
      const frozen = new Map(
        [...model.stateDict()].filter(([n]) => !n.includes('lora_')).map(([n, t]) => [n, t.clone()]),
      );
      const trainable = peft.trainableParameters().map(([, p]) => p);
      expect(trainable.every((p) => p.dtype === adapterDtype)).toBe(true);
      const lossOf = (): Tensor => {
        const out = model.forward(inputs).logits!;
        return torch.nn.functional.crossEntropy(out.reshape([-1, out.shape[2]!]), targetsFromLabels(ids).reshape([-1]));
      };
      const losses: number[] = [];
      for (let step = 0; step < 6; step++) {
        torch.tidy(() => {
          const loss = lossOf();
          losses.push(loss.item() as number);
          loss.backward();
        });
        for (const p of trainable) expect(p.grad, 'every adapter tensor gets a gradient').not.toBeNull();
        if (step === 1)
          for (const layer of peft.layers.values())
            expect(torch.tidy(() => layer.lora_A.weight.grad!.abs().max().item() as number)).toBeGreaterThan(0);
        torch.noGrad(() => {
          for (const p of trainable) p.sub_(torch.tidy(() => p.grad!.mul(0.05)));
        });
        model.zeroGrad();
      }
      console.log(`QLoRA ${adapterDtype} adapters: loss ${losses.map((l) => l.toFixed(4)).join(' → ')}`);
      for (let k = 1; k < losses.length; k++) expect(losses[k]!).toBeLessThan(losses[k - 1]!);
      for (const [name, t] of model.stateDict())
        if (frozen.has(name)) expect(t.equal(frozen.get(name)!), name).toBe(true);
      frozen.forEach((t) => t.dispose());
      peft.dispose();
    }
  });

  for (const useDora of [false, true]) {
    it(`${useDora ? 'DoRA' : 'LoRA'} merge: re-quantises like PEFT (Linear4bit back), or with dequantize gives dense layers equal to the adapter`, async () => {
      const inputs = await inputsOf('text_only');
      const make = async (): Promise<[CausalLM, LoraModel]> => {
        const model = await fromPretrained(GOLDEN, { quantization: {} });
        torch.manualSeed(5);
        const peft = getPeftModel(model, { targetModules: ATTENTION, r: 4, loraAlpha: 8, useDora });
        perturb(peft);
        return [model, peft];
      };
      const [model, peft] = await make();
      const adapted = logits(model, inputs);
      const base = peft.withAdaptersDisabled(() => logits(model, inputs));
      // PEFT: dequantise + delta + re-quantise. The output moves by a fresh quantisation error.
      peft.merge();
      const merged = logits(model, inputs);
      const requantErr = relRms(merged, adapted);
      expect(requantErr).toBeGreaterThan(0);
      expect(requantErr).toBeLessThan(relRms(base, adapted)); // still nearer the adapter than the base
      peft.unmerge();
      const unloaded = peft.mergeAndUnload();
      expect(unloaded.getSubmodule('model.layers.0.self_attn.q_proj')).toBeInstanceOf(Linear4bit);
      expect(linearNames(unloaded, LoraLinear as never)).toEqual([]);
      unloaded.dispose();

      const [model2, peft2] = await make();
      const dense = peft2.mergeAndUnload({ dequantize: true });
      const q = dense.getSubmodule('model.layers.0.self_attn.q_proj');
      expect(q.constructor).toBe(Linear);
      expect((q as Linear).weight.dtype).toBe('float32');
      expect(dense.getSubmodule('model.layers.0.mlp.up_proj')).toBeInstanceOf(Linear4bit); // untargeted layers stay 4-bit
      const diff = maxDiff(logits(dense, inputs), adapted);
      console.log(
        `${useDora ? 'DoRA' : 'LoRA'} merge into 4-bit: logits rel RMS ${requantErr.toExponential(2)} from the adapter; dequantised merge: max |diff| ${diff.toExponential(2)}`,
      );
      expect(diff).toBeLessThan(1e-4);
      model2.dispose();
      for (const t of [adapted, base, merged]) t.dispose();
    });
  }
});

describe('bitsandbytes checkpoints', () => {
  it('savePretrained writes bitsandbytes keys and quantization_config; fromPretrained reads them back bit-exactly', async () => {
    const model = await fromPretrained(GOLDEN, {
      quantization: { computeDtype: 'bfloat16', skipModules: ['lm_head', /^visual\.merger\./] },
    });
    for (const maxShardBytes of [5e9, 60_000]) {
      const dir = tempDir();
      await savePretrained(model, dir, { maxShardBytes });
      const files =
        maxShardBytes === 5e9
          ? [join(dir, 'model.safetensors')]
          : [
              ...new Set(
                Object.values(
                  JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')).weight_map as Record<
                    string,
                    string
                  >,
                ),
              ),
            ].map((f) => join(dir, f));
      const headers = Object.assign(
        {},
        ...(await Promise.all(files.map(async (f) => (await torch.readSafetensorsHeader(f)).tensors))),
      );
      const p = 'model.layers.0.self_attn.q_proj';
      const entry = (k: string): string => `${headers[k].dtype} [${headers[k].shape.join(', ')}]`;
      expect(
        Object.keys(headers)
          .filter((k) => k.startsWith(`${p}.`))
          .sort(),
      ).toEqual(
        [
          'bias',
          'weight',
          'weight.absmax',
          'weight.nested_absmax',
          'weight.nested_quant_map',
          'weight.quant_map',
          'weight.quant_state.bitsandbytes__nf4',
        ].map((k) => `${p}.${k}`),
      );
      expect([
        entry(`${p}.weight`),
        entry(`${p}.weight.absmax`),
        entry(`${p}.weight.quant_map`),
        entry(`${p}.weight.nested_absmax`),
        entry(`${p}.weight.nested_quant_map`),
      ]).toEqual(['uint8 [2048, 1]', 'uint8 [64]', 'float32 [16]', 'float32 [1]', 'float32 [256]']);
      expect(entry('lm_head.weight')).toBe('float32 [512, 64]');
      expect(entry('visual.merger.mlp.0.weight')).toBe('float32 [128, 128]');
      expect(Object.keys(headers).some((k) => k.includes('weight_'))).toBe(false);
      if (maxShardBytes === 5e9) {
        const json = await torch.loadSafetensors(files[0]!);
        const state = parseQuantStateTensor(json[`${p}.weight.quant_state.bitsandbytes__nf4`]!, 'test');
        expect(Object.keys(state)).toEqual([
          'quant_type',
          'blocksize',
          'dtype',
          'shape',
          'nested_blocksize',
          'nested_dtype',
          'nested_offset',
        ]);
        expect(state).toMatchObject({
          quant_type: 'nf4',
          blocksize: 64,
          dtype: 'float32',
          shape: [64, 64],
          nested_blocksize: 256,
          nested_dtype: 'float32',
        });
        Object.values(json).forEach((t) => t.dispose());
      }
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      expect(config.torch_dtype).toBe('float32');
      expect(config.quantization_config).toEqual({
        _load_in_4bit: true,
        _load_in_8bit: false,
        bnb_4bit_compute_dtype: 'bfloat16',
        bnb_4bit_quant_storage: 'uint8',
        bnb_4bit_quant_type: 'nf4',
        bnb_4bit_use_double_quant: true,
        llm_int8_enable_fp32_cpu_offload: false,
        llm_int8_has_fp16_weight: false,
        llm_int8_skip_modules: ['visual.merger.mlp.0', 'visual.merger.mlp.2', 'lm_head'],
        llm_int8_threshold: 6,
        load_in_4bit: true,
        load_in_8bit: false,
        quant_method: 'bitsandbytes',
      });
      const again = await fromPretrained(dir);
      expectSameState(model.stateDict(), again.stateDict());
      expect((again.getSubmodule(`${p}`) as Linear4bit).computeDtype).toBe('bfloat16');
      const inputs = await inputsOf('one_image');
      torch.tidy(() => expect(logits(model, inputs).equal(logits(again, inputs))).toBe(true));
      again.dispose();
    }
    model.dispose();
  });

  it('a dequantised merge saves as a dense checkpoint without quantization_config', async () => {
    const dir = tempDir();
    const model = await fromPretrained(GOLDEN, { quantization: {} });
    await savePretrained(model, dir);
    const reloaded = await fromPretrained(dir);
    const peft = getPeftModel(reloaded, { targetModules: 'all-linear', r: 2 });
    const dense = peft.mergeAndUnload({ dequantize: true });
    expect([...dense.namedModules()].some(([, m]) => m instanceof Linear4bit)).toBe(false);
    const out = tempDir();
    await savePretrained(dense, out);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).quantization_config).toBeUndefined();
    const back = await fromPretrained(out);
    expectSameState(dense.stateDict(), back.stateDict());
    for (const m of [model, dense, back]) m.dispose();
  });

  it('reports a 4-bit layer whose parts are missing', async () => {
    const dir = tempDir();
    const model = await fromPretrained(GOLDEN, { quantization: {} });
    await savePretrained(model, dir);
    model.dispose();
    const tensors = await torch.loadSafetensors(join(dir, 'model.safetensors'));
    tensors['model.layers.1.mlp.up_proj.weight.nested_absmax']!.dispose();
    delete tensors['model.layers.1.mlp.up_proj.weight.nested_absmax'];
    await torch.saveSafetensors(join(dir, 'model.safetensors'), tensors);
    Object.values(tensors).forEach((t) => t.dispose());
    await expect(fromPretrained(dir)).rejects.toThrow(
      /4-bit layer 'model.layers.1.mlp.up_proj' lacks 'weight.nested_absmax'/,
    );
  });
});
