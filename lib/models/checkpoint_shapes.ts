// A checkpoint's config against its tensors, from the safetensors headers alone, before the model
// is built: a config that disagrees with the weights (an edited hidden_size, a layer count of
// 2147483648) fails here with the tensor, the expected and the found shape, instead of after
// allocating a model of the wrong size. The language model is checked (embeddings, output head,
// the first layer's projections, the layer count); the loader's per-tensor check covers the rest.
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import { SIZE_BOUNDS, type Json } from './config_schema.js';
import { parseTextConfig, type TextConfig } from './qwen2/config.js';

type Shapes = Map<string, { shape: number[]; file: string }>;

/** Throws one error listing every disagreement between config.json and the tensors in `files`. */
export async function checkCheckpointShapes(dir: string, config: Json, files: readonly string[]): Promise<void> {
  const where = join(dir, 'config.json');
  const text = parseTextConfig(textFields(config), where);
  const shapes = await readShapes(files);
  const problems = [...languageModelProblems(text, shapes, where), ...visionDepthProblems(config, shapes, where)];
  if (problems.length === 0) return;
  throw new Error(`${dir}: config.json disagrees with the checkpoint:\n  ${problems.join('\n  ')}`);
}

// Where each family's config keeps its language model's fields.
function textFields(config: Json): Json {
  const nested = (key: string): Json => (config[key] ?? {}) as Json;
  if (config.model_type === 'internvl_chat') return nested('llm_config');
  if (config.model_type === 'internvl') return nested('text_config');
  const qwenVL = config.model_type === 'qwen2_vl' || config.model_type === 'qwen2_5_vl';
  if (qwenVL) return { ...config, ...nested('text_config') };
  return config;
}

// Shapes of the floating-point tensors: packed 4-bit weights (uint8) do not have their logical shape.
async function readShapes(files: readonly string[]): Promise<Shapes> {
  const shapes: Shapes = new Map();
  for (const file of files) {
    const { tensors } = await torch.readSafetensorsHeader(file);
    for (const [name, info] of Object.entries(tensors)) {
      if (info.dtype.startsWith('float') || info.dtype === 'bfloat16') shapes.set(name, { shape: info.shape, file });
    }
  }
  return shapes;
}

function languageModelProblems(c: TextConfig, shapes: Shapes, where: string): string[] {
  const embed = [...shapes.keys()].find((name) => name.endsWith('embed_tokens.weight') && !name.includes('visual'));
  if (embed === undefined) return [];
  const prefix = embed.slice(0, -'embed_tokens.weight'.length);
  const layer0 = `${prefix}layers.0.`;
  const hidden = c.hiddenSize;
  const [q, k] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim];
  const expected: Array<[string, number[], string]> = [
    [embed, [c.vocabSize, hidden], 'vocab_size, hidden_size'],
    [lmHeadName(prefix), [c.vocabSize, hidden], 'vocab_size, hidden_size'],
    [`${layer0}self_attn.q_proj.weight`, [q, hidden], 'num_attention_heads * head_dim, hidden_size'],
    [`${layer0}self_attn.k_proj.weight`, [k, hidden], 'num_key_value_heads * head_dim, hidden_size'],
    [`${layer0}mlp.gate_proj.weight`, [c.intermediateSize, hidden], 'intermediate_size, hidden_size'],
  ];
  const problems = expected.flatMap(([name, shape, keys]) => shapeProblem(shapes, name, shape, `${where} (${keys})`));
  const layers = layerCount(shapes, `${prefix}layers.`);
  if (layers !== null && layers !== c.numLayers) {
    const found = `the checkpoint has ${layers} layers ('${prefix}layers.N.')`;
    problems.push(`${where} has num_hidden_layers ${c.numLayers} but ${found}`);
  }
  return problems;
}

// The vision tower's block count, where config.json states it (Qwen-VL `depth`, InternViT
// `num_hidden_layers`) and the checkpoint holds blocks under one of the known names.
const VISION_BLOCK = /(?:^|\.)(?:visual\.blocks|vision_model\.encoder\.layers|vision_tower\.encoder\.layer)\.(\d+)\./;

function visionDepthProblems(config: Json, shapes: Shapes, where: string): string[] {
  const vision = config.vision_config;
  // A vision_config that is not an object is left to the config schema, whose error names the key.
  if (typeof vision !== 'object' || vision === null || Array.isArray(vision)) return [];
  const key = 'depth' in vision ? 'depth' : 'num_hidden_layers';
  const depth = (vision as Json)[key];
  // Out-of-bounds values are left to the config schema, whose error names the bound.
  if (typeof depth !== 'number' || depth > SIZE_BOUNDS.layers) return [];
  let blocks = 0;
  for (const name of shapes.keys()) blocks = Math.max(blocks, Number(VISION_BLOCK.exec(name)?.[1] ?? -1) + 1);
  if (blocks === 0 || blocks === depth) return [];
  return [`${where} has vision_config.${key} ${depth} but the checkpoint's vision tower has ${blocks} blocks`];
}

// lm_head sits beside the decoder: `lm_head.weight` next to `model.` and `model.language_model.`
// (newer transformers), `language_model.lm_head.weight` next to `language_model.model.`.
function lmHeadName(prefix: string): string {
  const outer = prefix.endsWith('language_model.') ? prefix.slice(0, -'language_model.'.length) : prefix;
  return `${outer.replace(/(^|\.)model\.$/, '$1')}lm_head.weight`;
}

function shapeProblem(shapes: Shapes, name: string, expected: number[], source: string): string[] {
  const found = shapes.get(name);
  if (found === undefined || sameShape(found.shape, expected)) return [];
  const mismatch = `has shape [${found.shape.join(', ')}] but ${source} implies [${expected.join(', ')}]`;
  return [`tensor '${name}' in ${found.file} ${mismatch}`];
}

function layerCount(shapes: Shapes, layersPrefix: string): number | null {
  let max = -1;
  for (const name of shapes.keys()) {
    if (!name.startsWith(layersPrefix)) continue;
    const index = Number.parseInt(name.slice(layersPrefix.length), 10);
    if (Number.isInteger(index)) max = Math.max(max, index);
  }
  return max < 0 ? null : max + 1;
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);
