// PEFT's adapter files: adapter_config.json and adapter_model.safetensors, whose tensor names are the
// PEFT model's state-dict keys without the adapter name (get_peft_model_state_dict):
// `base_model.model.<module>.lora_A.weight`, `.lora_B.weight`, DoRA `.lora_magnitude_vector`,
// modules_to_save `base_model.model.<module>.<param>`, trained biases of wrapped layers
// `<module>.base_layer.bias`. Our module names are those keys minus the prefix and `base_layer.`.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeAtomic } from '../util/atomic_write.js';
import { readJsonObject } from '../util/json_file.js';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { Module } from '../nn/index.js';
import { familyOf } from '../models/registry.js';
import type { CausalLM } from '../models/index.js';
import { fromPeftJson, peftJsonText, toPeftJson, type LoraConfig } from './config.js';
import { escapeRegex } from './patterns.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const PEFT_PREFIX = 'base_model.model.';

/** What the files need from a LoraModel. */
export interface AdapterSource {
  readonly model: Module;
  readonly config: LoraConfig;
  /** PEFT file name → tensor. */
  adapterStateDict(): Map<string, Tensor>;
}

/** Writes both files, each through the shared atomic writer. */
export async function writeAdapter(source: AdapterSource, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await torch.saveSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), Object.fromEntries(source.adapterStateDict()), {
    format: 'pt',
  });
  writeAtomic(join(dir, ADAPTER_CONFIG_FILE), peftJsonText(toPeftJson(source.config)));
}

export function readAdapterConfig(dir: string): LoraConfig {
  const file = join(dir, ADAPTER_CONFIG_FILE);
  return fromPeftJson(readJsonObject(file), file);
}

/**
 * Our module name for a tensor name of a PEFT adapter file. Also takes PEFT's in-memory names
 * (`lora_A.default.weight`, `lora_magnitude_vector.default.weight`, `modules_to_save.default.`,
 * `base_layer.`) and names without the `base_model.model.` prefix.
 */
export function adapterTensorName(key: string, adapterName = 'default'): string {
  const a = escapeRegex(adapterName);
  return key
    .replace(/^base_model\.model\./, '')
    .replace(new RegExp(`\\.(lora_A|lora_B)\\.${a}\\.`), '.$1.')
    .replace(new RegExp(`\\.lora_magnitude_vector(?:\\.${a})?(?:\\.weight)?$`), '.lora_magnitude_vector')
    .replace(new RegExp(`\\.modules_to_save\\.${a}\\.`), '.')
    .replace(/\.base_layer\.(weight|bias)$/, '.$1');
}

/**
 * Copies the tensors of adapter_model.safetensors into the adapter. Strict: every adapter tensor must
 * be in the file with its shape and nothing else may be; the error names each problem.
 */
export async function loadAdapterWeights(source: AdapterSource, dir: string, adapterName = 'default'): Promise<void> {
  const file = weightsFile(dir);
  const expected = new Map([...source.adapterStateDict()].map(([name, t]) => [adapterTensorName(name), t]));
  const given = await torch.loadSafetensors(file);
  try {
    const matched = matchTensors(source.model, expected, given, adapterName);
    if (matched.problems.length > 0)
      throw new Error(`cannot load the adapter in ${dir}:\n  ${matched.problems.join('\n  ')}`);
    torch.noGrad(() => {
      for (const [dst, src] of matched.pairs) dst.copy_(src);
    });
  } finally {
    for (const t of Object.values(given)) t.dispose();
  }
}

function weightsFile(dir: string): string {
  const file = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(file))
    throw new Error(`${dir}: no ${ADAPTER_WEIGHTS_FILE} (only safetensors adapters are supported)`);
  return file;
}

/** The modules adapter_model.safetensors holds LoRA factors for, under our module names, sorted. */
export async function adapterModules(model: Module, dir: string, adapterName = 'default'): Promise<string[]> {
  const header = await torch.readSafetensorsHeader(weightsFile(dir));
  const own = new Set([...model.namedModules()].map(([n]) => n));
  const rename = checkpointRenamer(model);
  const suffix = '.lora_A.weight';
  const found = new Set<string>();
  for (const key of Object.keys(header.tensors)) {
    const name = adapterTensorName(key, adapterName);
    if (!name.endsWith(suffix)) continue;
    const path = name.slice(0, -suffix.length);
    found.add(own.has(path) ? path : (rename(name)?.slice(0, -suffix.length) ?? path));
  }
  return [...found].sort();
}

function matchTensors(
  model: Module,
  expected: Map<string, Tensor>,
  given: Record<string, Tensor>,
  adapterName: string,
) {
  const rename = checkpointRenamer(model);
  const pairs: Array<[Tensor, Tensor]> = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [key, src] of Object.entries(given)) {
    const direct = adapterTensorName(key, adapterName);
    const name = expected.has(direct) ? direct : rename(direct);
    const dst = name === null ? undefined : expected.get(name);
    if (dst === undefined) problems.push(`unexpected tensor '${key}' ${fmt(src.shape)}`);
    else if (!sameShape(dst.shape, src.shape))
      problems.push(`tensor '${key}' has shape ${fmt(src.shape)} but the adapter expects ${fmt(dst.shape)}`);
    else {
      pairs.push([dst, src]);
      seen.add(name!);
    }
  }
  for (const [name, t] of expected)
    if (!seen.has(name)) problems.push(`missing tensor '${PEFT_PREFIX}${name}' ${fmt(t.shape)}`);
  return { pairs, problems };
}

/**
 * The model family's checkpoint-name mapping (Qwen-VL: newer transformers' `model.language_model.`
 * → `model.`, `model.visual.` → `visual.`), for adapters trained on those layouts.
 */
function checkpointRenamer(model: Module): (name: string) => string | null {
  const raw = (model as { rawConfig?: Record<string, unknown> }).rawConfig;
  if (raw === undefined || !('textConfig' in model)) return () => null;
  try {
    const family = familyOf(raw.model_type, 'adapter loading');
    return (name) => family.moduleName(name, model as unknown as CausalLM);
  } catch {
    return () => null;
  }
}

const fmt = (shape: number[]): string => `[${shape.join(', ')}]`;
const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
