// InternVL checkpoints in two layouts. `internvl_chat` (OpenGVLab's remote code) stores our module
// names. `internvl` (transformers' port, the `-hf` repositories) renames them (convert_internvl_
// weights_to_hf.py) and splits each ViT `attn.qkv` into q/k/v projections: the parts are concatenated
// back here, then the names are mapped. Both prefix styles of the port are accepted: `vision_tower.`,
// `multi_modal_projector.`, `language_model.model.`, `language_model.lm_head.` and the newer
// `model.vision_tower.`, `model.multi_modal_projector.`, `model.language_model.`, `lm_head.`.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import type { CheckpointConversion, ModelFamily } from '../family.js';
import { isRecomputedBuffer } from '../family.js';
import { InternVLChatModel } from './model.js';
import { addedTokenId } from '../special_tokens.js';

// `<layer>.attention.{q,k,v}_proj.{weight,bias}` of the ViT: one group per layer and tensor kind.
const SPLIT_QKV = /^((?:model\.)?vision_tower\..*\.attention)\.([qkv])_proj\.(weight|bias)$/;

/** Concatenates each complete q/k/v group into `<layer>.attention.qkv.<kind>` (rows q, then k, then v). */
export function mergeSplitQkv(tensors: Record<string, Tensor>): CheckpointConversion {
  const out: Record<string, Tensor> = {};
  const groups = new Map<string, Partial<Record<'q' | 'k' | 'v', [string, Tensor]>>>();
  for (const [name, tensor] of Object.entries(tensors)) {
    const m = SPLIT_QKV.exec(name);
    if (m === null) {
      out[name] = tensor;
      continue;
    }
    const key = `${m[1]}.qkv.${m[3]}`;
    const group = groups.get(key) ?? {};
    group[m[2] as 'q' | 'k' | 'v'] = [name, tensor];
    groups.set(key, group);
  }
  const pending: Record<string, Tensor> = {};
  for (const [key, { q, k, v }] of groups) {
    if (q && k && v) {
      out[key] = torch.noGrad(() => torch.cat([q[1], k[1], v[1]], 0));
      for (const part of [q, k, v]) part[1].dispose();
    } else {
      for (const part of [q, k, v]) if (part) pending[part[0]] = part[1];
    }
  }
  return { tensors: out, pending };
}

// Port name → remote-code name inside the ViT, the convert script's table reversed.
const VISION_RENAMES: Array<[RegExp, string]> = [
  [/^embeddings\.cls_token$/, 'embeddings.class_embedding'],
  [/^embeddings\.position_embeddings$/, 'embeddings.position_embedding'],
  [/^embeddings\.patch_embeddings\.projection\./, 'embeddings.patch_embedding.'],
  [/^encoder\.layer\./, 'encoder.layers.'],
  [/\.lambda_(\d)$/, '.ls$1'],
  [/\.attention\.projection_layer\./, '.attn.proj.'],
  [/\.attention\./, '.attn.'],
  [/\.layernorm_before\./, '.norm1.'],
  [/\.layernorm_after\./, '.norm2.'],
];

const PROJECTOR: Record<string, string> = { layer_norm: '0', linear_1: '1', linear_2: '3' };

/** The module name of a checkpoint tensor in either layout (remote-code names pass unchanged). */
export function internVLModuleName(name: string, tied: boolean): string | null {
  if (isRecomputedBuffer(name) || name.endsWith('embeddings.mask_token')) return null;
  const bare = name.startsWith('model.') ? name.slice('model.'.length) : name;
  if (bare.startsWith('vision_tower.')) {
    return `vision_model.${VISION_RENAMES.reduce((s, [from, to]) => s.replace(from, to), bare.slice('vision_tower.'.length))}`;
  }
  const projector = /^multi_modal_projector\.(layer_norm|linear_1|linear_2)\.(.+)$/.exec(bare);
  if (projector) return `mlp1.${PROJECTOR[projector[1]!]}.${projector[2]}`;
  if (name.startsWith('model.language_model.'))
    return `language_model.model.${name.slice('model.language_model.'.length)}`;
  if (name === 'lm_head.weight' || name === 'language_model.lm_head.weight')
    return tied ? null : 'language_model.lm_head.weight';
  return name;
}

export const internVLFamily: ModelFamily = {
  modelTypes: ['internvl_chat', 'internvl'],
  // Remote-code configs lack the <IMG_CONTEXT> id; the reference takes it from the tokenizer.
  create: (config, options, dir) => {
    const id = dir === undefined ? null : addedTokenId(dir, '<IMG_CONTEXT>');
    return new InternVLChatModel(config, id === null ? options : { ...options, imgContextTokenId: id });
  },
  moduleName: (name, model) => internVLModuleName(name, model.textConfig.tieWordEmbeddings),
  convertCheckpoint: (tensors) => mergeSplitQkv(tensors),
};
