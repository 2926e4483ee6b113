// getPeftModel on the tiny golden Qwen2-VL checkpoint: language-model-only targeting, trainable
// parameters, enable / disable, modules_to_save, merge / unload, and a few SGD steps.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { Linear } from '../../lib/nn/index.js';
import {
  fromPretrained,
  type CausalLM,
  type ModelInputs,
  type QwenVLForConditionalGeneration,
} from '../../lib/models/index.js';
import { LoraLinear, allLinearNames, getPeftModel, languageModelTargets } from '../../lib/adapters/index.js';
import { goldenDir, loadGolden } from '../models/golden.js';
import { perturb } from './helpers.js';
import { float32Bound } from '../tolerance.js';

const qwen2vl = async (): Promise<QwenVLForConditionalGeneration> =>
  (await fromPretrained(goldenDir('qwen2_vl'))) as QwenVLForConditionalGeneration;
const ATTENTION = String.raw`^model\.layers\..*\.(q|k|v|o)_proj$`;

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
const maxDiff = (a: Tensor, b: Tensor): number => torch.tidy(() => a.sub(b).abs().max().item() as number);
// Merged and split matmuls sum in different orders: logits of size max|logit| after 3 layers of
// reductions of length <= 96 (the MLP width); safety 8 rather than 2 for that chain.
const roundingTol = (logits: Tensor): number =>
  float32Bound(
    96,
    torch.tidy(() => logits.abs().max().item() as number),
    8,
  );

describe('getPeftModel on Qwen2-VL', () => {
  it('a language-model regex wraps only decoder projections; no vision module is touched', async () => {
    const model = await qwen2vl();
    const peft = getPeftModel(model, { targetModules: ATTENTION });
    const wrapped = [...model.namedModules()].filter(([, m]) => m instanceof LoraLinear).map(([n]) => n);
    expect(wrapped).toHaveLength(12);
    expect(wrapped.every((n) => /^model\.layers\.\d\.self_attn\.[qkvo]_proj$/.test(n))).toBe(true);
    expect([...peft.layers.keys()]).toEqual(wrapped);
    expect([...model.namedModules()].some(([n, m]) => n.startsWith('visual.') && m instanceof LoraLinear)).toBe(false);
    // The typed field follows the swap, and the state dict keeps the base names beside the adapter's.
    expect(model.model.layers.at(0).self_attn.q_proj).toBe(peft.layers.get('model.layers.0.self_attn.q_proj'));
    const names = [...model.stateDict().keys()];
    for (const n of ['weight', 'bias', 'lora_A.weight', 'lora_B.weight'])
      expect(names).toContain(`model.layers.0.self_attn.q_proj.${n}`);
    model.dispose();
  });

  it('languageModelTargets gives the same layers; a suffix list also hits the vision tower (peft#2615)', async () => {
    const model = await qwen2vl();
    const regex = languageModelTargets(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj']);
    const peft = getPeftModel(model, { targetModules: regex });
    expect([...peft.layers.keys()].every((n) => n.startsWith('model.layers.'))).toBe(true);
    expect(peft.layers.size).toBe(12);
    peft.unload();
    const vl25 = await fromPretrained(goldenDir('qwen2_5_vl'));
    const suffix = getPeftModel(vl25, { targetModules: ['gate_proj'] });
    expect([...suffix.layers.keys()].some((n) => n.startsWith('visual.'))).toBe(true);
    suffix.unload();
    const only = getPeftModel(vl25, { targetModules: languageModelTargets(vl25, ['gate_proj']) });
    expect([...only.layers.keys()].every((n) => n.startsWith('model.layers.'))).toBe(true);
    model.dispose();
    vl25.dispose();
  });

  it("'all-linear' wraps every Linear but lm_head, the merger's ModuleDict children included", async () => {
    const model = await qwen2vl();
    const peft = getPeftModel(model, { targetModules: 'all-linear' });
    expect(peft.layers.has('lm_head')).toBe(false);
    expect(peft.layers.has('visual.blocks.0.attn.qkv')).toBe(true);
    expect(peft.layers.has('visual.merger.mlp.0')).toBe(true);
    expect(
      (model as unknown as { visual: { merger: { mlp: { get(n: string): unknown } } } }).visual.merger.mlp.get('2'),
    ).toBeInstanceOf(LoraLinear);
    // As PEFT writes it: every Linear but the output layer.
    expect(peft.config.targetModules).toEqual(
      allLinearNames(peft.model)
        .filter((n) => !n.includes('lora_'))
        .sort(),
    );
    model.dispose();
  });

  it('only adapter parameters train; printTrainable counts them as PEFT does', async () => {
    const model = await qwen2vl();
    const total = model.numParameters();
    const peft = getPeftModel(model, { targetModules: ATTENTION, r: 4 });
    const trainable = peft.trainableParameters();
    expect(trainable.every(([n]) => /\.lora_[AB]\.weight$/.test(n))).toBe(true);
    expect(trainable).toHaveLength(24);
    const count = trainable.reduce((n, [, p]) => n + p.numel(), 0);
    // q, o: 64 → 64; k, v: 64 → 32; r = 4: A is 4·64, B is out·4.
    expect(count).toBe(3 * (2 * (256 + 256) + 2 * (256 + 128)));
    expect(peft.printTrainable()).toBe(
      `trainable params: ${count.toLocaleString('en-US')} || all params: ${(total + count).toLocaleString('en-US')} || trainable%: ${((100 * count) / (total + count)).toFixed(4)}`,
    );
    model.dispose();
  });

  it("bias 'all' trains every bias, 'lora_only' those of wrapped layers, under PEFT's base_layer names", async () => {
    const model = await qwen2vl();
    let peft = getPeftModel(model, { targetModules: ATTENTION, bias: 'all' });
    let names = peft.trainableParameters().map(([n]) => n);
    expect(names).toContain('model.layers.0.self_attn.q_proj.bias');
    expect(names).toContain('visual.blocks.0.attn.qkv.bias');
    let files = [...peft.adapterStateDict().keys()];
    expect(files).toContain('base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias');
    expect(files).toContain('base_model.model.visual.blocks.0.attn.qkv.bias');
    peft.unload();
    expect(model.model.layers.at(0).self_attn.q_proj.bias!.requiresGrad).toBe(false);
    peft = getPeftModel(model, { targetModules: ATTENTION, bias: 'lora_only' });
    names = peft.trainableParameters().map(([n]) => n);
    files = [...peft.adapterStateDict().keys()];
    expect(names.filter((n) => n.endsWith('.bias'))).toHaveLength(9); // q, k, v have biases in Qwen2; o_proj has none
    expect(files.filter((n) => n.endsWith('.base_layer.bias'))).toHaveLength(9);
    expect(names).not.toContain('visual.blocks.0.attn.qkv.bias');
    model.dispose();
  });

  it('fresh adapters leave the output unchanged; disabled adapters give the base output exactly (text and images)', async () => {
    const model = await qwen2vl();
    for (const name of ['text_only', 'one_image']) {
      const inputs = await inputsOf(name);
      const base = logits(model, inputs);
      const peft = getPeftModel(model, { targetModules: ATTENTION, useDora: name === 'one_image' });
      expect(logits(model, inputs).equal(base)).toBe(true);
      perturb(peft);
      const adapted = logits(model, inputs);
      expect(maxDiff(adapted, base)).toBeGreaterThan(1e-3);
      expect(peft.withAdaptersDisabled(() => logits(model, inputs)).equal(base)).toBe(true);
      expect(peft.adaptersEnabled).toBe(true);
      expect(logits(model, inputs).equal(adapted)).toBe(true);
      expect(await peft.withAdaptersDisabled(async () => logits(model, inputs).equal(base))).toBe(true);
      peft.unload();
    }
    model.dispose();
  });

  for (const useDora of [false, true]) {
    it(`${useDora ? 'DoRA' : 'LoRA'}: merge matches the unmerged forward; mergeAndUnload leaves plain Linear layers; unload restores the weights bit-exactly`, async () => {
      const model = await qwen2vl();
      const original = new Map([...model.stateDict()].map(([n, t]) => [n, t.clone()]));
      const inputs = await inputsOf('text_only');
      let peft = getPeftModel(model, { targetModules: ATTENTION, useDora });
      perturb(peft, 3);
      logits(model, inputs);
      peft.unload(); // never merged: the base tensors were never written
      for (const [n, t] of model.stateDict()) expect(t.equal(original.get(n)!), n).toBe(true);
      expect([...model.stateDict().keys()].sort()).toEqual([...original.keys()].sort());
      peft = getPeftModel(model, { targetModules: ATTENTION, useDora, useRslora: true, loraAlpha: 16 });
      perturb(peft);
      const adapted = logits(model, inputs);
      peft.merge({ safeMerge: true });
      expect(maxDiff(logits(model, inputs), adapted)).toBeLessThan(roundingTol(adapted));
      peft.unmerge();
      expect(
        maxDiff(
          model.model.layers.at(0).self_attn.q_proj.weight,
          original.get('model.layers.0.self_attn.q_proj.weight')!,
        ),
      ).toBeLessThan(1e-6);
      expect(maxDiff(logits(model, inputs), adapted)).toBeLessThan(roundingTol(adapted));
      peft.unload();
      peft = getPeftModel(model, { targetModules: ATTENTION, useDora });
      perturb(peft, 2);
      const adapted2 = logits(model, inputs);
      peft.mergeAndUnload();
      const q = model.model.layers.at(1).self_attn.q_proj;
      expect(q.constructor).toBe(Linear);
      expect(maxDiff(logits(model, inputs), adapted2)).toBeLessThan(roundingTol(adapted2));
      expect(q.weight.equal(original.get('model.layers.1.self_attn.q_proj.weight')!)).toBe(false);
      expect(() => peft.enableAdapters()).toThrow(/unloaded/);
      model.dispose();
    });
  }

  it('modulesToSave: a trainable copy while enabled, the frozen original while disabled', async () => {
    const model = await qwen2vl();
    const inputs = await inputsOf('text_only');
    const base = logits(model, inputs);
    const head = model.lm_head!;
    const peft = getPeftModel(model, { targetModules: ATTENTION, modulesToSave: ['lm_head'] });
    expect(model.lm_head).not.toBe(head);
    expect(model.lm_head!.weight.equal(head.weight)).toBe(true);
    expect([model.lm_head!.weight.requiresGrad, head.weight.requiresGrad]).toEqual([true, false]);
    expect(peft.layers.has('lm_head')).toBe(false);
    torch.noGrad(() => model.lm_head!.weight.mul_(1.5));
    expect(model.outputWeight()).toBe(model.lm_head!.weight);
    expect(maxDiff(logits(model, inputs), base)).toBeGreaterThan(1e-3);
    peft.disableAdapters();
    expect(model.lm_head).toBe(head);
    expect(model.outputWeight()).toBe(head.weight);
    expect(logits(model, inputs).equal(base)).toBe(true);
    expect(peft.trainableParameters().map(([n]) => n)).toContain('lm_head.weight');
    expect(() =>
      peft.withAdaptersDisabled(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(peft.adaptersEnabled).toBe(false); // the state before the call
    peft.enableAdapters();
    expect(peft.adapterStateDict().get('base_model.model.lm_head.weight')).toBe(model.lm_head!.weight);
    peft.to({ dtype: 'float64' }); // reaches the original outside the model too
    peft.disableAdapters();
    expect(model.lm_head!.weight.dtype).toBe('float64');
    model.dispose();
  });

  it('a few SGD steps on the LoRA parameters lower the loss; base weights stay bit-identical', async () => {
    const model = await qwen2vl();
    const before = new Map([...model.stateDict()].map(([n, t]) => [n, t.clone()]));
    torch.manualSeed(5);
    const peft = getPeftModel(model, { targetModules: ATTENTION, r: 4, loraAlpha: 8, useDora: true });
    model.train();
    const ids = (await inputsOf('text_only')).inputIds;
    const [input, target] = [ids.slice(1, 0, -1), ids.slice(1, 1)];
    const params = peft.trainableParameters().map(([, p]) => p);
    const losses: number[] = [];
    for (let step = 0; step < 6; step++) {
      torch.tidy(() => {
        const out = model.forward({ inputIds: input }).logits!;
        const loss = torch.nn.functional.crossEntropy(out.flatten(0, 1), target.flatten());
        loss.backward();
        losses.push(loss.item() as number);
        torch.noGrad(() => params.forEach((p) => p.sub_(p.grad!.mul(0.05))));
        model.zeroGrad();
      });
    }
    losses.slice(1).forEach((loss, k) => expect(loss, losses.join(' ')).toBeLessThan(losses[k]!));
    expect(losses.at(-1)!).toBeLessThan(losses[0]! - 1);
    for (const [n, t] of before) expect(model.stateDict().get(n)!.equal(t), n).toBe(true);
    for (const [n, p] of model.namedParameters()) if (!/lora_/.test(n)) expect(p.grad, n).toBeNull();
    model.dispose();
  });
});
