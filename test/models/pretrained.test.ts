// Checkpoint directories: save → reload is bit-exact, sharding, both Qwen tensor layouts, tied
// embeddings, dtype on load, and errors that name the offending file and tensor.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { initWeights } from '../../lib/nn/index.js';
import {
  fromPretrained,
  savePretrained,
  Qwen2ForCausalLM,
  parseTextConfig,
  type CausalLM,
} from '../../lib/models/index.js';
import { goldenDir, loadGolden } from './golden.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'vlalign-pretrained-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

// A golden checkpoint rewritten with `edit` applied to its tensors (and optionally its config).
async function variant(
  family: string,
  edit: (t: Record<string, Tensor>) => Record<string, Tensor>,
  config?: (c: Record<string, unknown>) => void,
): Promise<string> {
  const dir = tempDir();
  const tensors = await torch.loadSafetensors(join(goldenDir(family), 'model.safetensors'));
  await torch.saveSafetensors(join(dir, 'model.safetensors'), edit(tensors));
  const json = JSON.parse(readFileSync(join(goldenDir(family), 'config.json'), 'utf8'));
  config?.(json);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  return dir;
}

function expectSameState(a: CausalLM, b: CausalLM): void {
  const sa = a.stateDict();
  const sb = b.stateDict();
  expect([...sb.keys()].sort()).toEqual([...sa.keys()].sort());
  for (const [name, t] of sa) expect(t.equal(sb.get(name)!), name).toBe(true);
}

const logitsOf = (model: CausalLM, ids: Tensor): Tensor => torch.noGrad(() => model.forward({ inputIds: ids }).logits!);

describe('fromPretrained / savePretrained', () => {
  for (const family of ['qwen2_vl', 'qwen2_5_vl', 'internvl']) {
    it(`${family}: save then reload is bit-exact, and the file keeps the checkpoint's names`, async () => {
      const model = await fromPretrained(goldenDir(family));
      const dir = tempDir();
      await savePretrained(model, dir);
      const again = await fromPretrained(dir);
      expectSameState(model, again);
      const original = Object.keys(await torch.loadSafetensors(join(goldenDir(family), 'model.safetensors'))).sort();
      const header = await torch.readSafetensorsHeader(join(dir, 'model.safetensors'));
      expect(Object.keys(header.tensors).sort()).toEqual(original);
      expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).model_type).toBe(
        family === 'internvl' ? 'internvl_chat' : family,
      );
      model.dispose();
      again.dispose();
    });
  }

  it('writes shards with an index when the model exceeds the shard size, and reads them back', async () => {
    const model = await fromPretrained(goldenDir('qwen2_vl'));
    const dir = tempDir();
    await savePretrained(model, dir, { maxShardBytes: 300_000 });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shards = new Set(Object.values(index.weight_map));
    expect(shards.size).toBeGreaterThan(2);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    const again = await fromPretrained(dir);
    expectSameState(model, again);
    model.dispose();
    again.dispose();
  });

  it('reads the newer layout (model.language_model.*, model.visual.*) into the same model', async () => {
    const dir = await variant('qwen2_vl', (t) =>
      Object.fromEntries(
        Object.entries(t).map(([k, v]) => [
          k.startsWith('visual.') ? `model.${k}` : k.startsWith('model.') ? `model.language_model.${k.slice(6)}` : k,
          v,
        ]),
      ),
    );
    const [a, b] = [await fromPretrained(goldenDir('qwen2_vl')), await fromPretrained(dir)];
    expectSameState(a, b);
    a.dispose();
    b.dispose();
  });

  it('names a missing, an unexpected and a misshapen tensor together with the file', async () => {
    const dir = await variant('qwen2_vl', (t) => {
      const out = { ...t, 'model.layers.0.extra.weight': torch.zeros([2]) };
      delete out['model.norm.weight'];
      out['visual.blocks.1.attn.proj.weight'] = torch.zeros([32, 31]);
      return out;
    });
    const error = await fromPretrained(dir).then(
      () => null,
      (e: Error) => e.message,
    );
    expect(error).toContain(`unexpected tensor 'model.layers.0.extra.weight' [2] in ${join(dir, 'model.safetensors')}`);
    expect(error).toContain("tensor 'visual.blocks.1.attn.proj.weight'");
    expect(error).toContain('has shape [32, 31] but the model expects [32, 32]');
    expect(error).toContain("missing tensor 'model.norm.weight' [64]");
  });

  it('tied embeddings: no lm_head module, the embedding is the output layer, a stored lm_head is ignored', async () => {
    const dir = await variant(
      'qwen2_vl',
      (t) => t,
      (c) => {
        c.tie_word_embeddings = true;
      },
    );
    const model = await fromPretrained(dir);
    expect([...model.stateDict().keys()]).not.toContain('lm_head.weight');
    const embed = model.stateDict().get('model.embed_tokens.weight')!;
    expect(model.outputWeight()).toBe(embed);
    torch.tidy(() => {
      const ids = torch.tensor([[1, 2, 3]]);
      const hidden = torch.noGrad(() => model.forward({ inputIds: ids }).hidden);
      expect(logitsOf(model, ids).equal(hidden.matmul(embed.t()))).toBe(true);
    });
    model.dispose();
  });

  it('loads in bfloat16 when asked, close to the float32 model', async () => {
    const [f32, bf16] = [
      await fromPretrained(goldenDir('qwen2_vl')),
      await fromPretrained(goldenDir('qwen2_vl'), { dtype: 'bfloat16' }),
    ];
    expect(bf16.outputWeight().dtype).toBe('bfloat16');
    const golden = await loadGolden('qwen2_vl');
    torch.tidy(() => {
      const ids = golden.text_only!.inputs.input_ids!;
      const diff = logitsOf(f32, ids).sub(logitsOf(bf16, ids).float()).abs().max().item();
      expect(diff).toBeLessThan(0.5); // bf16 rounds to 2^-8 relative: 2^-8 · √96 (longest reduction) · max|logit| (~13) ≈ 0.5
      expect(diff).toBeGreaterThan(0);
    });
    f32.dispose();
    bf16.dispose();
  });

  it('a plain Qwen2 causal LM made from a config round-trips, and its errors name the config', async () => {
    const raw = {
      model_type: 'qwen2',
      vocab_size: 64,
      hidden_size: 16,
      intermediate_size: 24,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
    };
    const model = new Qwen2ForCausalLM(parseTextConfig(raw, 'test'), raw);
    initWeights(model);
    const dir = tempDir();
    await savePretrained(model, dir);
    const again = await fromPretrained(dir);
    expectSameState(model, again);
    torch.tidy(() =>
      expect(logitsOf(model, torch.tensor([[1, 5, 9]])).equal(logitsOf(again, torch.tensor([[1, 5, 9]])))).toBe(true),
    );
    model.dispose();
    again.dispose();
    expect(() => parseTextConfig({ ...raw, num_key_value_heads: 3 }, 'x/config.json')).toThrow(
      /x\/config.json: num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/,
    );
    expect(() => parseTextConfig({ ...raw, hidden_size: 'big' }, 'x/config.json')).toThrow(
      /x\/config.json: invalid hidden_size: /,
    );
  });

  it('reports an unknown model_type, a missing config and missing weights', async () => {
    const dir = tempDir();
    await expect(fromPretrained(dir)).rejects.toThrow(/cannot read .*config.json/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama4' }));
    await expect(fromPretrained(dir)).rejects.toThrow(/model_type 'llama4' is not supported/);
    copyFileSync(join(goldenDir('qwen2_vl'), 'config.json'), join(dir, 'config.json'));
    await expect(fromPretrained(dir)).rejects.toThrow(/no model.safetensors or model.safetensors.index.json/);
  });
});
