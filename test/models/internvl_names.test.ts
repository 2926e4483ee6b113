// InternVL checkpoint layouts and LLM variants: the golden checkpoint rewritten in the transformers-
// native layout (both prefix styles, q/k/v split and spread over shards) loads to the same logits,
// and an InternVL3.5-style tiny model (Qwen3 LLM with q/k norm, InternViT-6B-style RMSNorm + qk
// normalisation, another image size) loads, runs, and applies its norms as plain formulas say.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { causalMask } from '../../lib/nn/index.js';
import { fromPretrained, savePretrained, InternVLChatModel, type ModelInputs } from '../../lib/models/index.js';
import { goldenDir, loadGolden, maxAbsDiff } from './golden.js';
import { readJsonObject } from '../../lib/util/json_file.js';

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'vlalign-internvl-'));
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

// ---- the transformers-native layout (vlm_arch.md §2.8 key map, written forwards) ------------------

const VISION_MAP: Array<[RegExp, string]> = [
  [/^vision_model\./, 'vision_tower.'],
  [/\.layers\./, '.layer.'],
  [/class_embedding/, 'cls_token'],
  [/position_embedding/, 'position_embeddings'],
  [/patch_embedding/, 'patch_embeddings.projection'],
  [/\.ls(\d)$/, '.lambda_$1'],
  [/\.attn\.proj\./, '.attention.projection_layer.'],
  [/\.attn\./, '.attention.'],
  [/\.norm1\./, '.layernorm_before.'],
  [/\.norm2\./, '.layernorm_after.'],
];
const MLP1: Record<string, string> = { 0: 'layer_norm', 1: 'linear_1', 3: 'linear_2' };

/** Remote-code tensors to the port's names (old prefixes; `newer` moves them under `model.`). */
function toNative(tensors: Record<string, Tensor>, d: number, newer: boolean): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (name.startsWith('vision_model.')) {
      const mapped = VISION_MAP.reduce((s, [from, to]) => s.replace(from, to), name);
      if (mapped.includes('.attention.qkv.')) {
        ['q', 'k', 'v'].forEach(
          (p, i) => (out[mapped.replace('.qkv.', `.${p}_proj.`)] = t.narrow(0, i * d, d).contiguous()),
        );
      } else out[mapped] = t;
    } else if (name.startsWith('mlp1.'))
      out[name.replace(/^mlp1\.(\d)\./, (_, i: string) => `multi_modal_projector.${MLP1[i]}.`)] = t;
    else out[name] = t;
  }
  if (!newer) return out;
  const moved = (n: string): string =>
    n === 'language_model.lm_head.weight'
      ? 'lm_head.weight'
      : `model.${n.replace(/^language_model\.model\./, 'language_model.')}`;
  return Object.fromEntries(Object.entries(out).map(([n, t]) => [moved(n), t]));
}

function nativeConfig(remote: Record<string, any>): Record<string, unknown> {
  const v = remote.vision_config;
  return {
    model_type: 'internvl',
    architectures: ['InternVLForConditionalGeneration'],
    image_token_id: 505,
    downsample_ratio: 0.5,
    text_config: { ...remote.llm_config, model_type: 'qwen2' },
    vision_config: {
      model_type: 'internvl_vision',
      hidden_size: v.hidden_size,
      num_hidden_layers: v.num_hidden_layers,
      num_attention_heads: v.num_attention_heads,
      intermediate_size: v.intermediate_size,
      hidden_act: v.hidden_act,
      norm_type: v.norm_type,
      layer_norm_eps: v.layer_norm_eps,
      attention_bias: v.qkv_bias,
      use_qk_norm: v.qk_normalization,
      image_size: [448, 448],
      patch_size: [14, 14],
    },
  };
}

/** Writes `tensors` as two shards: every q_proj in the first, k/v in the second, the rest split by name. */
async function writeSharded(dir: string, tensors: Record<string, Tensor>): Promise<void> {
  const first = (n: string): boolean =>
    n.includes('q_proj') || (!n.includes('k_proj') && !n.includes('v_proj') && n < 'm');
  const shards = [
    Object.entries(tensors).filter(([n]) => first(n)),
    Object.entries(tensors).filter(([n]) => !first(n)),
  ];
  const weightMap: Record<string, string> = {};
  for (const [k, entries] of shards.entries()) {
    const file = `model-0000${k + 1}-of-00002.safetensors`;
    await torch.saveSafetensors(join(dir, file), Object.fromEntries(entries), { format: 'pt' });
    for (const [n] of entries) weightMap[n] = file;
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

describe('internvl transformers-native layout', () => {
  it('both prefix styles, sharded split q/k/v included, give the remote-code logits exactly', async () => {
    const remote = (await fromPretrained(goldenDir('internvl'))) as InternVLChatModel;
    remote.imgContextTokenId = 505;
    const { inputs } = (await loadGolden('internvl')).one_image!;
    const run = (m: InternVLChatModel): Tensor => torch.noGrad(() => m.forward(modelInputs(inputs)).logits!);
    const reference = run(remote);
    const config = readJsonObject(join(goldenDir('internvl'), 'config.json'));
    const tensors = await torch.loadSafetensors(join(goldenDir('internvl'), 'model.safetensors'));
    for (const newer of [false, true]) {
      const dir = await mkdtemp(join(scratch, 'hf-'));
      await writeFile(join(dir, 'config.json'), JSON.stringify(nativeConfig(config)));
      const native = toNative(tensors, remote.config.vision.hiddenSize, newer);
      expect(Object.keys(native)).toContain(
        newer
          ? 'model.vision_tower.encoder.layer.0.attention.k_proj.weight'
          : 'vision_tower.encoder.layer.0.attention.k_proj.weight',
      );
      if (newer) await torch.saveSafetensors(join(dir, 'model.safetensors'), native, { format: 'pt' });
      else await writeSharded(dir, native);
      const model = (await fromPretrained(dir)) as InternVLChatModel;
      expect(model.modelType).toBe('internvl');
      expect(model.imgContextTokenId).toBe(505);
      expect(maxAbsDiff(run(model), reference)).toBe(0);
      model.dispose();
    }
    remote.dispose();
  });

  it('a q/k/v group missing a part is named in the load error', async () => {
    const config = readJsonObject(join(goldenDir('internvl'), 'config.json'));
    const dir = await mkdtemp(join(scratch, 'broken-'));
    await writeFile(join(dir, 'config.json'), JSON.stringify(nativeConfig(config)));
    const native = toNative(await torch.loadSafetensors(join(goldenDir('internvl'), 'model.safetensors')), 32, false);
    delete native['vision_tower.encoder.layer.1.attention.v_proj.bias'];
    await torch.saveSafetensors(join(dir, 'model.safetensors'), native, { format: 'pt' });
    await expect(fromPretrained(dir)).rejects.toThrow(
      /'vision_tower\.encoder\.layer\.1\.attention\.q_proj\.bias' \[32\] is one part of a split tensor[\s\S]*missing tensor 'vision_model\.encoder\.layers\.1\.attn\.qkv\.bias'/,
    );
  });

  it('unsupported LLMs are named', () => {
    const config = readJsonObject(join(goldenDir('internvl'), 'config.json')) as Record<string, any>;
    const internlm = { ...config, llm_config: { ...config.llm_config, architectures: ['InternLM2ForCausalLM'] } };
    expect(() => new InternVLChatModel(internlm)).toThrow(
      /llm_config\.architectures\[0\] 'InternLM2ForCausalLM' is not supported/,
    );
    const llama = { ...nativeConfig(config), text_config: { ...config.llm_config, model_type: 'llama' } };
    expect(() => new InternVLChatModel(llama)).toThrow(/text_config\.model_type 'llama' is not supported/);
  });
});

function modelInputs(inputs: Record<string, Tensor>): ModelInputs {
  return {
    inputIds: inputs.input_ids!,
    attentionMask: inputs.attention_mask!,
    pixelValues: inputs.pixel_values,
    imageFlags: inputs.image_flags,
  };
}

// ---- an InternVL3.5-style tiny model: Qwen3 LLM, InternViT-6B-style vision -------------------------

const CTX = 60; // <IMG_CONTEXT> of the tiny vocabulary

function tinyConfig(): Record<string, unknown> {
  return {
    model_type: 'internvl_chat',
    architectures: ['InternVLChatModel'],
    downsample_ratio: 0.5,
    ps_version: 'v2',
    select_layer: -1,
    force_image_size: 56,
    template: 'internvl2_5',
    vision_config: {
      architectures: ['InternVisionModel'],
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 64,
      hidden_act: 'gelu',
      norm_type: 'rms_norm',
      layer_norm_eps: 1e-6,
      qkv_bias: false,
      qk_normalization: true,
      image_size: 56,
      patch_size: 14,
    },
    llm_config: {
      architectures: ['Qwen3ForCausalLM'],
      model_type: 'qwen3',
      vocab_size: 64,
      hidden_size: 48,
      intermediate_size: 96,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      attention_bias: false,
      rms_norm_eps: 1e-6,
      rope_theta: 1e6,
      tie_word_embeddings: false,
    },
  };
}

describe('internvl with a Qwen3 LLM (InternVL3.5 style)', () => {
  let model: InternVLChatModel;
  beforeAll(async () => {
    torch.manualSeed(0);
    const built = new InternVLChatModel(tinyConfig());
    torch.noGrad(() => {
      // Norm weights away from 1 so that a skipped norm shows.
      for (const [name, p] of built.namedParameters())
        p.normal_(/norm|ls\d/.test(name) ? 1 : 0, /norm/.test(name) ? 0.5 : 0.2);
    });
    const dir = await mkdtemp(join(scratch, 'qwen3-'));
    await savePretrained(built, dir);
    built.dispose();
    model = (await fromPretrained(dir)) as InternVLChatModel;
  });
  afterAll(() => model.dispose());

  it('loads, needs the <IMG_CONTEXT> id, and runs an image at another size than the config', () => {
    expect(model.textConfig.qkNorm).toBe(true);
    expect(model.language_model.model.layers.at(0).self_attn.o_proj.bias).toBeNull();
    // 84 px = 6×6 patches (positions interpolated from 4×4) = 9 tokens after the 2×2 shuffle.
    const ids = [1, 2, ...Array<number>(9).fill(CTX), 3];
    const inputs: ModelInputs = {
      inputIds: torch.tensor([ids], { dtype: 'int64' }),
      pixelValues: torch.randn([1, 3, 84, 84]),
    };
    expect(() => model.forward(inputs)).toThrow(/imgContextTokenId is not set/);
    model.imgContextTokenId = CTX;
    torch.tidy(() => {
      const logits = torch.noGrad(() => model.forward(inputs).logits!);
      expect(logits.shape).toEqual([1, ids.length, 64]);
      expect(logits.isfinite().all().item()).toBe(true);
    });
  });

  it('LLM attention = RMSNorm per head on q and k, then RoPE, then causal attention', () => {
    torch.tidy(() => {
      const attn = model.language_model.model.layers.at(0).self_attn;
      const s = 7;
      const x = torch.randn([1, s, 48]);
      const positions = torch.arange(0, s, { dtype: 'int64' }).unsqueeze(0);
      const actual = torch.noGrad(() =>
        attn.forward(x, model.language_model.model.rotary(positions, 'float32'), causalMask(s, s, null, 'float32')),
      );
      const { q_proj, k_proj, v_proj, o_proj, q_norm, k_norm } = attn;
      const formula = (withNorms: boolean): Tensor =>
        torch.noGrad(() => {
          const rms = (t: Tensor, w: Tensor): Tensor =>
            withNorms ? t.mul(t.square().mean(-1, true).add(1e-6).rsqrt()).mul(w) : t;
          const angles = torch
            .arange(0, s)
            .float()
            .unsqueeze(1)
            .mul(torch.pow(1e6, torch.arange(0, 16, 2).float().div(16)).reciprocal());
          const [cos, sin] = [torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()];
          const rope = (t: Tensor): Tensor =>
            t.mul(cos).add(torch.cat([t.narrow(-1, 8, 8).neg(), t.narrow(-1, 0, 8)], -1).mul(sin));
          const heads = (w: Tensor, n: number): Tensor =>
            x.squeeze(0).matmul(w.t()).reshape([s, n, 16]).transpose(0, 1);
          const q = rope(rms(heads(q_proj.weight, 4), q_norm!.weight));
          const k = rope(rms(heads(k_proj.weight, 2), k_norm!.weight)).repeatInterleave(2, 0);
          const v = heads(v_proj.weight, 2).repeatInterleave(2, 0);
          const scores = q
            .matmul(k.transpose(1, 2))
            .div(4)
            .add(torch.ones([s, s]).triu(1).mul(-1e30));
          return scores.softmax(-1).matmul(v).transpose(0, 1).reshape([1, s, 64]).matmul(o_proj.weight.t());
        });
      expect(maxAbsDiff(actual, formula(true))).toBeLessThan(1e-5);
      expect(maxAbsDiff(actual, formula(false))).toBeGreaterThan(1e-2);
    });
  });

  it('ViT attention = RMSNorm on q and k over the full width before the head split', () => {
    torch.tidy(() => {
      const attn = model.vision_model.encoder.layers.at(0).attn;
      const x = torch.randn([2, 5, 32]);
      const actual = torch.noGrad(() => attn.forward(x));
      const expected = torch.noGrad(() => {
        const [q, k, v] = x.matmul(attn.qkv.weight.t()).split(32, -1) as [Tensor, Tensor, Tensor];
        const rms = (t: Tensor, w: Tensor): Tensor => t.mul(t.square().mean(-1, true).add(1e-6).rsqrt()).mul(w);
        const heads = (t: Tensor): Tensor => t.reshape([2, 5, 2, 16]).transpose(1, 2);
        const weights = heads(rms(q, attn.q_norm!.weight))
          .mul(0.25)
          .matmul(heads(rms(k, attn.k_norm!.weight)).transpose(2, 3))
          .softmax(-1);
        return attn.proj.forward(weights.matmul(heads(v)).transpose(1, 2).reshape([2, 5, 32]));
      });
      expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
    });
  });
});
