// Hugging Face checkpoint directories: config.json + model.safetensors (or shards listed in
// model.safetensors.index.json). Loading builds the module tree from the config and takes each
// tensor as a parameter's data, shard by shard, so peak memory stays near one model plus one shard.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as torch from '../torch/index.js';
import type { Device, DType, Tensor } from '../torch/index.js';
import { readJsonObject, writeJsonFile } from '../util/json_file.js';
import type { CausalLM } from './causal_lm.js';
import { checkCheckpointShapes } from './checkpoint_shapes.js';
import { readConfig } from './config_schema.js';
import type { ModelFamily } from './family.js';
import { familyOf } from './registry.js';
import { bnbQuantizationConfig, bnbStateDict, isQuantized, type QuantizationOptions } from '../quant/index.js';
import { planQuantizedLoad, type QuantizedLoad } from '../quant/load.js';

export interface PretrainedOptions {
  /** Parameter dtype (default float32, as transformers without torch_dtype). */
  dtype?: DType;
  device?: Device;
  /**
   * Load the Linear layers 4-bit (QLoRA's base model): each weight is quantised as it is read, so the
   * peak stays near the 4-bit model plus one shard (lib/quant/load.ts). A checkpoint saved 4-bit
   * (bitsandbytes keys, quantization_config) loads 4-bit without this option; then only
   * `computeDtype` is taken from it.
   */
  quantization?: QuantizationOptions;
}

export async function fromPretrained(dir: string, options: PretrainedOptions = {}): Promise<CausalLM> {
  const config = readConfig(dir);
  const family = familyOf(config.model_type, join(dir, 'config.json'));
  // Sizes are bounded and matched against the tensor headers before anything is allocated.
  await checkCheckpointShapes(dir, config, weightFiles(dir));
  const plan = await planQuantizedLoad({ files: weightFiles(dir), config, options: options.quantization });
  const model = createNamingFile(dir, () =>
    family.create(config, { dtype: options.dtype ?? 'float32', device: options.device ?? 'cpu' }, dir),
  );
  try {
    const quant = plan?.apply(model, (name) => family.moduleName(name, model)) ?? null;
    await loadWeights(model, family, dir, quant);
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model.eval();
}

// Building the model reads the rest of config.json (activations, flags): a refusal there that does
// not name the checkpoint names its config.json.
function createNamingFile(dir: string, create: () => CausalLM): CausalLM {
  try {
    return create();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (message.includes(dir)) throw error;
    throw new Error(`${join(dir, 'config.json')}: ${message}`, { cause: error });
  }
}

/** The weight files of a checkpoint directory, one per shard. */
export function weightFiles(dir: string): string[] {
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return [single];
  const indexFile = join(dir, 'model.safetensors.index.json');
  if (!existsSync(indexFile))
    throw new Error(
      `${dir}: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)`,
    );
  const map = readJsonObject(indexFile).weight_map;
  if (typeof map !== 'object' || map === null) throw new Error(`${indexFile}: missing weight_map`);
  return [...new Set(Object.values(map as Record<string, string>))].map((f) => join(dir, f));
}

async function loadWeights(
  model: CausalLM,
  family: ModelFamily,
  dir: string,
  quant: QuantizedLoad | null,
): Promise<void> {
  const own = model.stateDict();
  const loaded = new Set<string>();
  const problems: string[] = [];
  let pending: Record<string, Tensor> = {};
  for (const file of weightFiles(dir)) {
    const shard = { ...pending, ...(await torch.loadSafetensors(file)) };
    const converted = family.convertCheckpoint?.(shard, model) ?? { tensors: shard, pending: {} };
    pending = converted.pending;
    for (const [name, tensor] of Object.entries(converted.tensors)) {
      const target = family.moduleName(name, model);
      if (target !== null && quant?.take(target, tensor, file, problems, loaded)) continue;
      const param = target === null ? undefined : own.get(target);
      if (target !== null && param === undefined)
        problems.push(`unexpected tensor '${name}' ${fmt(tensor)} in ${file}`);
      else if (param !== undefined && !sameShape(param, tensor)) {
        problems.push(`tensor '${name}' in ${file} has shape ${fmt(tensor)} but the model expects ${fmt(param)}`);
      } else if (param !== undefined && problems.length === 0) {
        assign(param, tensor);
        loaded.add(target!);
        continue;
      }
      tensor.dispose();
    }
  }
  quant?.finish(problems);
  for (const [name, tensor] of Object.entries(pending)) {
    problems.push(`tensor '${name}' ${fmt(tensor)} is one part of a split tensor whose other parts are in no shard`);
    tensor.dispose();
  }
  for (const [name, param] of own) if (!loaded.has(name)) problems.push(`missing tensor '${name}' ${fmt(param)}`);
  if (problems.length > 0) throw new Error(`cannot load ${dir}:\n  ${problems.join('\n  ')}`);
}

function assign(param: Tensor, tensor: Tensor): void {
  torch.noGrad(() => {
    const same = tensor.dtype === param.dtype && tensor.device === param.device;
    param.setData(same ? tensor : tensor.to({ dtype: param.dtype, device: param.device }));
    if (!same) tensor.dispose();
  });
}

const fmt = (t: Tensor): string => `[${t.shape.join(', ')}]`;
const sameShape = (a: Tensor, b: Tensor): boolean =>
  a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);

export interface SaveOptions {
  /** Split weights into shards of at most this many bytes (default 5 GB, as transformers). */
  maxShardBytes?: number;
}

/**
 * Writes config.json and the weights under their checkpoint names, each file atomically. A model
 * larger than one shard gets model-0000k-of-0000n.safetensors and an index, as transformers writes.
 */
export async function savePretrained(model: CausalLM, dir: string, options: SaveOptions = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  // 4-bit layers are written under bitsandbytes' keys, with quantization_config in config.json.
  const quantized = isQuantized(model) ? bnbStateDict(model) : null;
  const state = quantized?.entries ?? [...model.stateDict()];
  const dtype = (quantized === null ? state[0] : state.find(([, t]) => t.dtype !== 'uint8'))?.[1].dtype ?? 'float32';
  try {
    await saveWeights(dir, state, options);
  } finally {
    quantized?.created.forEach((t) => t.dispose());
  }
  saveConfig(model, dir, dtype, quantized === null ? null : bnbQuantizationConfig(model));
}

/**
 * config.json as savePretrained writes it: the model's config with torch_dtype, and the 4-bit
 * quantization_config when given (weights written elsewhere, e.g. ZeRO-3's consolidated save).
 */
export function saveConfig(model: CausalLM, dir: string, dtype: string, quantization: unknown = null): void {
  const { quantization_config: _, ...config } = model.rawConfig as Record<string, unknown>;
  const quantizationEntry = quantization === null ? {} : { quantization_config: quantization };
  writeJsonFile(join(dir, 'config.json'), { ...config, torch_dtype: dtype, ...quantizationEntry });
}

async function saveWeights(dir: string, state: Array<[string, Tensor]>, options: SaveOptions): Promise<void> {
  const shards = shard(state, options.maxShardBytes ?? 5e9);
  const metadata = { format: 'pt' };
  if (shards.length === 1)
    await torch.saveSafetensors(join(dir, 'model.safetensors'), Object.fromEntries(shards[0]!), metadata);
  else {
    const weightMap: Record<string, string> = {};
    const name = (k: number): string => `model-${pad(k + 1)}-of-${pad(shards.length)}.safetensors`;
    for (const [k, entries] of shards.entries()) {
      await torch.saveSafetensors(join(dir, name(k)), Object.fromEntries(entries), metadata);
      for (const [tensor] of entries) weightMap[tensor] = name(k);
    }
    const totalSize = state.reduce((n, [, t]) => n + bytes(t), 0);
    const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
    writeJsonFile(join(dir, 'model.safetensors.index.json'), index);
  }
}

function shard(state: Array<[string, Tensor]>, maxBytes: number): Array<Array<[string, Tensor]>> {
  const shards: Array<Array<[string, Tensor]>> = [[]];
  let size = 0;
  for (const entry of state) {
    const n = bytes(entry[1]);
    if (size > 0 && size + n > maxBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(entry);
    size += n;
  }
  return shards;
}

const ELEMENT: Partial<Record<DType, number>> = {
  float64: 8,
  int64: 8,
  float32: 4,
  int32: 4,
  bfloat16: 2,
  float16: 2,
  int16: 2,
};
const bytes = (t: Tensor): number => t.shape.reduce((a, d) => a * d, 1) * (ELEMENT[t.dtype] ?? 1);
const pad = (k: number): string => String(k).padStart(5, '0');
