// Which Linear layers of a model become 4-bit (transformers' _replace_with_bnb_linear with
// llm_int8_skip_modules), quantizeModel, and the model-level views the checkpoint code needs: the
// bitsandbytes state dict and config.json's quantization_config.
import type { QuantType, Tensor } from '../torch/index.js';
import { Linear, type Module } from '../nn/index.js';
import { checkComputeDtype, Linear4bit, type ComputeDtype, type QuantLayerInfo } from './linear4bit.js';
import { BNB_KEYS, jsonTensor, quantStateJson, quantStateKey } from './serialization.js';

export interface QuantizationOptions {
  /** Default 'nf4' (the QLoRA recipe; bitsandbytes' own default is fp4). */
  quantType?: QuantType;
  /** Quantise the absmax too (default true: the QLoRA recipe; bitsandbytes' default is false). */
  doubleQuant?: boolean;
  /** Dtype of the 4-bit matmuls (default float32, as BitsAndBytesConfig; QLoRA uses bfloat16). */
  computeDtype?: ComputeDtype;
  /** Elements per absmax block (default 64). */
  blocksize?: number;
  /**
   * Modules left dense (llm_int8_skip_modules). A string skips the modules whose dotted name holds it
   * as whole segments ('lm_head', 'visual', 'mlp.down_proj'); a RegExp is tested against the full
   * name (e.g. /^visual\./ keeps the Qwen2-VL vision tower dense). Default ['lm_head'], transformers'
   * default (the output layer). The output layer is never quantised whatever this says: the fused
   * LM-head losses take its dense weight.
   */
  skipModules?: ReadonlyArray<string | RegExp> | null;
}

export interface QuantizationConfig {
  quantType: QuantType;
  doubleQuant: boolean;
  computeDtype: ComputeDtype;
  blocksize: number;
  skipModules: ReadonlyArray<string | RegExp>;
}

export function quantizationConfig(input: QuantizationOptions = {}): QuantizationConfig {
  const quantType = input.quantType ?? 'nf4';
  if (quantType !== 'nf4' && quantType !== 'fp4')
    throw new TypeError(`quantization.quantType must be 'nf4' or 'fp4', got ${String(quantType)}`);
  const blocksize = input.blocksize ?? 64;
  if (![32, 64, 128, 256, 512, 1024, 2048, 4096].includes(blocksize))
    throw new RangeError(`quantization.blocksize must be a power of two in [32, 4096], got ${blocksize}`);
  const skip = input.skipModules ?? ['lm_head'];
  for (const s of skip)
    if (typeof s !== 'string' && !(s instanceof RegExp))
      throw new TypeError(`quantization.skipModules: expected strings or RegExps, got ${String(s)}`);
  return {
    quantType,
    doubleQuant: input.doubleQuant ?? true,
    computeDtype: checkComputeDtype(input.computeDtype ?? 'float32'),
    blocksize,
    skipModules: skip,
  };
}

/** Whether `name` is left dense by `skip` (see QuantizationOptions.skipModules). */
export function isSkipped(name: string, skip: ReadonlyArray<string | RegExp>): boolean {
  return skip.some((s) =>
    typeof s === 'string' ? `.${name}.`.includes(`.${s}.`) : new RegExp(s.source, s.flags.replace('g', '')).test(name),
  );
}

export function quantInfo(module: Module): QuantLayerInfo | null {
  const info = (module as { quantInfo?: () => QuantLayerInfo | null }).quantInfo;
  return typeof info === 'function' ? info.call(module) : null;
}

const isAdapterLayer = (m: Module): boolean => 'lora_A' in m && 'lora_B' in m;

/** The Linear whose weight the model's outputWeight() returns (the output layer), if any. */
export function outputLinearName(model: Module): string | null {
  const outputWeight = (model as { outputWeight?: () => unknown }).outputWeight;
  const weight = typeof outputWeight === 'function' ? outputWeight.call(model) : undefined;
  for (const [name, m] of model.namedModules())
    if (m instanceof Linear && weight !== undefined && m.weight === weight) return name;
  return null;
}

/**
 * The Linear layers `config` quantises, in module order: exact nn Linear layers (subclasses may
 * compute something else) outside skipModules and other than the output layer.
 */
export function quantizationTargets(model: Module, config: QuantizationConfig): string[] {
  const output = outputLinearName(model);
  const names: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (name === '') continue;
    if (isAdapterLayer(m))
      throw new Error(
        `quantizeModel: '${name}' has a LoRA adapter; quantise the base model before getPeftModel (as QLoRA does)`,
      );
    if (m.constructor !== Linear || name === output || isSkipped(name, config.skipModules)) continue;
    names.push(name);
  }
  return names;
}

/**
 * Replaces the model's Linear layers by Linear4bit in place (model.replaceModule), freeing each dense
 * weight as soon as its layer is quantised, so the peak is the dense model plus one layer's 4-bit
 * state. Returns the names of the quantised layers.
 */
export function quantizeModel(model: Module, options: QuantizationOptions = {}): string[] {
  const config = quantizationConfig(options);
  const names = quantizationTargets(model, config);
  for (const name of names) {
    const linear = model.getSubmodule(name) as Linear;
    const layer = Linear4bit.fromLinear(linear, config);
    layer.training = linear.training;
    model.replaceModule(name, layer);
    linear.dispose();
  }
  return names;
}

/** Whether any layer of the model is 4-bit. */
export const isQuantized = (model: Module): boolean => [...model.namedModules()].some(([, m]) => quantInfo(m) !== null);

/**
 * The model's state dict with every 4-bit layer under bitsandbytes' keys (see ./serialization.ts).
 * The tensors are the live ones except the JSON quant-state tensors, listed in `created` for the
 * caller to dispose.
 */
export function bnbStateDict(model: Module): { entries: Array<[string, Tensor]>; created: Tensor[] } {
  const layers = new Map<string, QuantLayerInfo>();
  for (const [name, m] of model.namedModules()) {
    const info = quantInfo(m);
    if (info !== null) layers.set(name, info);
  }
  const renames = new Map<string, string | null>();
  for (const [path, info] of layers) {
    for (const buffer of info.buffers.keys()) {
      const key = BNB_KEYS[buffer];
      renames.set(`${path}.${buffer}`, key === undefined ? null : `${path}.${key}`);
    }
  }
  const entries: Array<[string, Tensor]> = [];
  const created: Tensor[] = [];
  for (const [name, tensor] of model.stateDict()) {
    const renamed = renames.get(name);
    if (renamed === null) continue;
    entries.push([renamed ?? name, tensor]);
    const info = name.endsWith('.weight') ? layers.get(name.slice(0, -'.weight'.length)) : undefined;
    if (info !== undefined && info.weight === tensor) {
      const offset = info.buffers.get('weight_nested_offset');
      const json = jsonTensor(
        quantStateJson(info.spec, info.shape, offset === undefined ? null : (offset.item() as number)),
      );
      created.push(json);
      entries.push([`${name}.${quantStateKey(info.spec.quantType)}`, json]);
    }
  }
  return { entries, created };
}

/**
 * config.json's quantization_config as transformers writes it (BitsAndBytesConfig.to_dict()), from
 * the model's 4-bit layers (settings of the first one), or null for a dense model.
 * llm_int8_skip_modules lists the dense Linear layers: a top-level module whose Linear layers are
 * all dense by its name ('lm_head', 'visual'), others one by one.
 */
export function bnbQuantizationConfig(model: Module): Record<string, unknown> | null {
  let first: QuantLayerInfo | null = null;
  const linears: Array<[string, boolean]> = [];
  const adapterPrefixes: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (name === '' || adapterPrefixes.some((p) => name.startsWith(p))) continue;
    const info = quantInfo(m);
    first ??= info;
    if (isAdapterLayer(m)) adapterPrefixes.push(`${name}.`);
    if (info !== null || m instanceof Linear) linears.push([name, info !== null]);
  }
  if (first === null) return null;
  const skip: string[] = [];
  const byTop = new Map<string, boolean>();
  for (const [name, quantized] of linears)
    byTop.set(name.split('.')[0]!, (byTop.get(name.split('.')[0]!) ?? true) && !quantized);
  for (const [name, quantized] of linears) {
    const top = name.split('.')[0]!;
    if (byTop.get(top)) {
      if (!skip.includes(top)) skip.push(top);
    } else if (!quantized) skip.push(name);
  }
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: first.computeDtype,
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: first.spec.quantType,
    bnb_4bit_use_double_quant: first.spec.doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: skip.length > 0 ? skip : null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}

/** The 4-bit settings of a config.json quantization_config written for bitsandbytes 4-bit, else null. */
export function parseBnbQuantizationConfig(json: unknown): QuantizationOptions | null {
  if (typeof json !== 'object' || json === null) return null;
  const c = json as Record<string, unknown>;
  if (c.quant_method !== 'bitsandbytes' || !(c.load_in_4bit === true || c._load_in_4bit === true)) return null;
  const compute = c.bnb_4bit_compute_dtype ?? 'float32';
  return {
    quantType: (c.bnb_4bit_quant_type as QuantType | undefined) ?? 'fp4',
    doubleQuant: c.bnb_4bit_use_double_quant === true,
    computeDtype: compute === 'float32' || compute === 'bfloat16' ? compute : undefined,
    skipModules: Array.isArray(c.llm_int8_skip_modules) ? (c.llm_int8_skip_modules as string[]) : null,
  };
}
