// PEFT's adapter files: literal tensor and config names, save → load round trips, the other
// spellings PEFT and newer transformers produce, and strict errors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { fromPretrained, type CausalLM, type QwenVLForConditionalGeneration } from '../../lib/models/index.js';
import {
  LoraLinear,
  getPeftModel,
  loadAdapter,
  type LoraConfigInput,
  type LoraModel,
} from '../../lib/adapters/index.js';
import { adapterTensorName } from '../../lib/internal.js';
import { goldenDir, loadGolden } from '../models/golden.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'vlalign-adapter-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const LM = String.raw`model\.layers\.\d+\.self_attn\.(q|v)_proj`;
const P = 'base_model.model.model.layers.0.self_attn.q_proj';

async function trained(options: LoraConfigInput): Promise<LoraModel<CausalLM>> {
  const peft = getPeftModel(await fromPretrained(goldenDir('qwen2_vl')), options);
  torch.manualSeed(9);
  torch.noGrad(() => {
    for (const t of peft.adapterStateDict().values()) t.add_(torch.randnLike(t).mul(0.05));
  });
  return peft;
}

async function logitsOf(model: CausalLM): Promise<Tensor> {
  const inputs = (await loadGolden('qwen2_vl')).one_image!.inputs;
  return torch.noGrad(
    () =>
      model.forward({
        inputIds: inputs.input_ids!,
        attentionMask: inputs.attention_mask,
        pixelValues: inputs.pixel_values,
        imageGridThw: inputs.image_grid_thw,
      }).logits!,
  );
}

const headerNames = async (dir: string): Promise<string[]> =>
  Object.keys((await torch.readSafetensorsHeader(join(dir, 'adapter_model.safetensors'))).tensors).sort();

describe('saveAdapter', () => {
  it("writes PEFT's tensor names, {format: pt} metadata and a sorted adapter_config.json", async () => {
    const peft = await trained({
      targetModules: LM,
      r: 4,
      loraAlpha: 8,
      taskType: 'CAUSAL_LM',
      baseModelNameOrPath: 'tiny/qwen2-vl',
    });
    const dir = tempDir();
    await peft.saveAdapter(dir);
    const names = await headerNames(dir);
    expect(names).toHaveLength(12);
    expect(names).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(names).toContain('base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight');
    const header = await torch.readSafetensorsHeader(join(dir, 'adapter_model.safetensors'));
    expect(header.metadata).toEqual({ format: 'pt' });
    expect(header.tensors[`${P}.lora_A.weight`]!.shape).toEqual([4, 64]);
    expect(header.tensors['base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight']!.shape).toEqual([32, 4]);
    const text = readFileSync(join(dir, 'adapter_config.json'), 'utf8');
    const json = JSON.parse(text);
    expect(Object.keys(json)).toEqual(Object.keys(json).sort());
    expect(json).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      target_modules: LM,
      base_model_name_or_path: 'tiny/qwen2-vl',
      use_dora: false,
      use_rslora: false,
      init_lora_weights: true,
      bias: 'none',
      modules_to_save: null,
      inference_mode: false,
    });
    expect(text).toContain('\n  "lora_dropout": 0.0,\n');
    expect(
      text.startsWith('{\n  "alpha_pattern": {},\n  "base_model_name_or_path": "tiny/qwen2-vl",\n  "bias": "none",'),
    ).toBe(true);
    peft.model.dispose();
  });

  it('DoRA magnitude, modules_to_save and wrapped-layer biases get their PEFT names', async () => {
    const peft = await trained({ targetModules: LM, useDora: true, modulesToSave: ['lm_head'], bias: 'lora_only' });
    const dir = tempDir();
    await peft.saveAdapter(dir);
    const names = await headerNames(dir);
    expect(names).toContain(`${P}.lora_magnitude_vector`);
    expect(names).toContain(`${P}.base_layer.bias`);
    expect(names).toContain('base_model.model.lm_head.weight');
    expect(names.filter((n) => n.endsWith('.weight') && n.includes('magnitude'))).toEqual([]);
    expect(names).toHaveLength(6 * 4 + 1);
    peft.model.dispose();
  });
});

describe('loadAdapter', () => {
  const variants: Array<[string, LoraConfigInput]> = [
    ['LoRA', { targetModules: LM }],
    [
      'DoRA + rsLoRA + modules_to_save + biases',
      { targetModules: LM, useDora: true, useRslora: true, modulesToSave: ['lm_head'], bias: 'lora_only' },
    ],
  ];
  for (const [label, options] of variants) {
    it(`${label}: save → load is bit-exact (tensors and outputs)`, async () => {
      const peft = await trained(options);
      const dir = tempDir();
      await peft.saveAdapter(dir);
      const expected = await logitsOf(peft.model);
      const loaded = await loadAdapter(await fromPretrained(goldenDir('qwen2_vl')), dir);
      const ours = peft.adapterStateDict();
      const theirs = loaded.adapterStateDict();
      expect([...theirs.keys()].sort()).toEqual([...ours.keys()].sort());
      for (const [n, t] of ours) expect(theirs.get(n)!.equal(t), n).toBe(true);
      expect((await logitsOf(loaded.model)).equal(expected)).toBe(true);
      expect(loaded.trainableParameters()).toEqual([]); // PEFT: inference mode unless is_trainable
      const trainable = await loadAdapter(await fromPretrained(goldenDir('qwen2_vl')), dir, { trainable: true });
      expect(trainable.trainableParameters().length).toBe(peft.trainableParameters().length);
      for (const p of [peft, loaded, trainable]) p.model.dispose();
    });
  }

  it("accepts PEFT's in-memory names and newer transformers' model.language_model. prefix (names and target regex)", async () => {
    const peft = await trained({ targetModules: LM, useDora: true });
    const dir = tempDir();
    await peft.saveAdapter(dir);
    const tensors = await torch.loadSafetensors(join(dir, 'adapter_model.safetensors'));
    const renamed = Object.fromEntries(
      Object.entries(tensors).map(([k, v]) => [
        k
          .replace('base_model.model.model.', 'base_model.model.model.language_model.')
          .replace(/\.lora_([AB])\.weight$/, '.lora_$1.default.weight')
          .replace(/\.lora_magnitude_vector$/, '.lora_magnitude_vector.default.weight'),
        v,
      ]),
    );
    expect(Object.keys(renamed)).toContain(
      'base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight',
    );
    await torch.saveSafetensors(join(dir, 'adapter_model.safetensors'), renamed, { format: 'pt' });
    const config = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    config.target_modules = String.raw`model\.language_model\.layers\.\d+\.self_attn\.(q|v)_proj`;
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config));
    const loaded = await loadAdapter(await fromPretrained(goldenDir('qwen2_vl')), dir);
    for (const [n, t] of peft.adapterStateDict()) expect(loaded.adapterStateDict().get(n)!.equal(t), n).toBe(true);
    peft.model.dispose();
    loaded.model.dispose();
  });

  it('names every unknown, missing and misshapen tensor, and leaves the model as it was', async () => {
    const peft = await trained({ targetModules: LM, modulesToSave: ['lm_head'] });
    const dir = tempDir();
    await peft.saveAdapter(dir);
    const tensors = await torch.loadSafetensors(join(dir, 'adapter_model.safetensors'));
    delete tensors[`${P}.lora_B.weight`];
    tensors['base_model.model.model.norm.weight'] = torch.zeros([64]);
    tensors['base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight'] = torch.zeros([8, 63]);
    await torch.saveSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    const model = (await fromPretrained(goldenDir('qwen2_vl'))) as QwenVLForConditionalGeneration;
    const head = model.lm_head;
    const flags = model.parameters().map((p) => p.requiresGrad);
    const error = await loadAdapter(model, dir).then(
      () => null,
      (e: Error) => e.message,
    );
    expect(error).toContain("unexpected tensor 'base_model.model.model.norm.weight' [64]");
    expect(error).toContain("missing tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight' [64, 8]");
    expect(error).toContain(
      "tensor 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight' has shape [8, 63] but the adapter expects [8, 64]",
    );
    expect([...model.namedModules()].some(([, m]) => m instanceof LoraLinear)).toBe(false);
    expect(model.parameters().map((p) => p.requiresGrad)).toEqual(flags);
    expect(model.lm_head).toBe(head);
    tensors['base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight'] = torch.zeros([8, 64]);
    await torch.saveSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    await expect(loadAdapter(model, dir)).rejects.toThrow(
      /disagree on the adapted modules: only in the config's targets: \[\]; only in the weights: \[model\.layers\.0\.self_attn\.k_proj\]/,
    );
    writeFileSync(
      join(dir, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 8, target_modules: LM, use_qalora: true }),
    );
    await expect(loadAdapter(model, dir)).rejects.toThrow(/unsupported PEFT settings: use_qalora = true/);
    peft.model.dispose();
    model.dispose();
  });
});

describe('adapterTensorName', () => {
  it.each([
    [`${P}.lora_A.weight`, 'model.layers.0.self_attn.q_proj.lora_A.weight'],
    [`${P}.lora_B.default.weight`, 'model.layers.0.self_attn.q_proj.lora_B.weight'],
    [`${P}.lora_magnitude_vector`, 'model.layers.0.self_attn.q_proj.lora_magnitude_vector'],
    [`${P}.lora_magnitude_vector.default.weight`, 'model.layers.0.self_attn.q_proj.lora_magnitude_vector'],
    [`${P}.base_layer.bias`, 'model.layers.0.self_attn.q_proj.bias'],
    ['base_model.model.lm_head.modules_to_save.default.weight', 'lm_head.weight'],
    ['base_model.model.lm_head.weight', 'lm_head.weight'],
    ['model.layers.0.self_attn.q_proj.lora_A.weight', 'model.layers.0.self_attn.q_proj.lora_A.weight'],
  ])('%s → %s', (key, name) => expect(adapterTensorName(key)).toBe(name));
});
