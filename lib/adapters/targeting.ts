// Which modules a LoraConfig adapts, as PEFT's inject_adapter decides it: exclusions first, then
// target_modules (regex full match, or exact name / suffix filtered by layers_to_transform), the
// 'all-linear' expansion, the per-architecture default, and per-module rank and alpha.
import { Linear, type Module } from '../nn/index.js';
import type { LoraConfig } from './config.js';
import { escapeRegex, layerIndex, matchesModule, patternKey, underModuleToSave } from './patterns.js';

export const ALL_LINEAR = 'all-linear';
/**
 * VL-RLHF's `--lora_target_modules auto`: every Linear of the language model but lm_head (no vision
 * tower, no projector). Resolved to full module names, so same-named vision layers are not hit.
 */
export const AUTO_TARGETS = 'auto';

/** The Linear layers of a decoder block (attention, then MLP), the usual LoRA targets. */
export const DECODER_PROJECTIONS = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;

// PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING for the model types vlalign loads; it
// has no entry for the VLMs, so they need explicit targets there too.
const DEFAULT_TARGETS: Record<string, string[]> = { qwen2: ['q_proj', 'v_proj'] };

export type TargetSpec = string | readonly string[];
export type Match = 'target' | 'excluded' | 'none';

/** How one module name fares under a config whose targets are resolved (no null, no 'all-linear'). */
export function matchModule(config: LoraConfig, targets: TargetSpec, name: string): Match {
  if (config.excludeModules !== null && matchesModule(config.excludeModules, name)) return 'excluded';
  if (config.modulesToSave?.some((entry) => underModuleToSave(entry, name))) return 'excluded';
  if (typeof targets === 'string') return matchesModule(targets, name) ? 'target' : 'none';
  // As in PEFT, an exact entry wins without the layers_to_transform filter; suffixes go through it.
  if (targets.includes(name)) return 'target';
  if (!matchesModule(targets, name)) return 'none';
  return inLayers(config, name) ? 'target' : 'none';
}

function inLayers(config: LoraConfig, name: string): boolean {
  const wanted = config.layersToTransform;
  if (wanted === null || (Array.isArray(wanted) && wanted.length === 0)) return true;
  const index = layerIndex(name, config.layersPattern);
  if (index === null) return false;
  return typeof wanted === 'number' ? index === wanted : wanted.includes(index);
}

/** target_modules with null (the model type's default) and 'all-linear' made concrete. */
export function resolveTargets(model: Module, config: LoraConfig): TargetSpec {
  const targets = config.targetModules;
  if (typeof targets === 'string' && targets.toLowerCase() === ALL_LINEAR) return allLinearNames(model);
  if (targets === AUTO_TARGETS) return languageModelLinearNames(model);
  if (targets !== null) return targets;
  const modelType = modelTypeOf(model);
  const defaults = modelType === null ? undefined : DEFAULT_TARGETS[modelType];
  if (defaults === undefined) {
    throw new TypeError(
      `LoraConfig.targetModules: no default target modules for model type '${modelType ?? 'unknown'}'; pass a regex, a list or '${ALL_LINEAR}'`,
    );
  }
  return defaults;
}

const modelTypeOf = (model: Module): string | null => {
  const type = (model as { modelType?: unknown }).modelType;
  return typeof type === 'string' ? type : null;
};

/** Every Linear except the output layer (lm_head) and except layers inside adapters, sorted. */
export function allLinearNames(model: Module): string[] {
  const output = outputLayerName(model);
  const adapterPrefixes = [...model.namedModules()].filter(([, m]) => isAdapterLayer(m)).map(([n]) => `${n}.`);
  return [...model.namedModules()]
    .filter(([name, m]) => m instanceof Linear && name !== output && !adapterPrefixes.some((p) => name.startsWith(p)))
    .map(([name]) => name)
    .sort();
}

/** 'auto': the Linears under the decoder (the parent of its layer list), which lm_head is beside. */
export function languageModelLinearNames(model: Module): string[] {
  const layers = decoderLayersPath(model);
  const decoder = layers.includes('.') ? `${layers.slice(0, layers.lastIndexOf('.'))}.` : '';
  return allLinearNames(model).filter((name) => name.startsWith(decoder));
}

const isAdapterLayer = (m: Module): boolean => 'lora_A' in m && 'lora_B' in m;

/**
 * The output layer that 'all-linear' leaves out: the Linear whose weight the model's outputWeight()
 * returns (transformers' get_output_embeddings), else one named lm_head.
 */
export function outputLayerName(model: Module): string | null {
  const outputWeight = (model as { outputWeight?: () => unknown }).outputWeight;
  const weight = typeof outputWeight === 'function' ? outputWeight.call(model) : undefined;
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear)) continue;
    if (weight !== undefined ? m.weight === weight : name === 'lm_head' || name.endsWith('.lm_head')) return name;
  }
  return null;
}

/** The rank and alpha of one module: rank_pattern / alpha_pattern entries override r / lora_alpha. */
export function rankAndAlpha(config: LoraConfig, name: string): { r: number; alpha: number } {
  const rKey = patternKey(Object.keys(config.rankPattern), name);
  const alphaKey = patternKey(Object.keys(config.alphaPattern), name);
  return {
    r: rKey === undefined ? config.r : config.rankPattern[rKey]!,
    alpha: alphaKey === undefined ? config.loraAlpha : config.alphaPattern[alphaKey]!,
  };
}

/**
 * A targetModules regex that adapts only the language model's decoder layers of `model`, e.g.
 * `model\.layers\.\d+\.(?:.*\.)?(?:q_proj|k_proj|...)` for Qwen2-VL. A list such as ['q_proj',
 * 'mlp.gate_proj'] matches by suffix and so also hits same-named layers of a vision tower (peft#2615).
 */
export function languageModelTargets(model: Module, modules: readonly string[] = DECODER_PROJECTIONS): string {
  const layers = decoderLayersPath(model);
  return `${escapeRegex(layers)}\\.\\d+\\.(?:.*\\.)?(?:${modules.map(escapeRegex).join('|')})`;
}

/** The path of the decoder's layer list: a `layers` module whose first child has self_attn. */
export function decoderLayersPath(model: Module): string {
  const names = new Set([...model.namedModules()].map(([name]) => name));
  for (const name of names) {
    if ((name === 'layers' || name.endsWith('.layers')) && names.has(`${name}.0.self_attn`)) return name;
  }
  throw new Error(
    `languageModelTargets: ${model.constructor.name} has no decoder layer list ('<...>.layers.0.self_attn')`,
  );
}
