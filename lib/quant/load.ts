// 4-bit layers during fromPretrained. Before any weight is read, the Linear layers that will be 4-bit
// are swapped for empty Linear4bit layers (the dense weights the model constructor allocated are
// freed untouched, so they never become resident). Then, shard by shard:
// - a dense checkpoint (quantise on load): each `<layer>.weight` is converted to the model dtype
//   exactly as a dense load would, quantised into its layer and freed at once;
// - a bitsandbytes checkpoint (keys `<layer>.weight.quant_state.bitsandbytes__*` in the headers):
//   the parts of each layer are collected (they may span shards) and become its state when complete.
import { readSafetensorsHeader } from '../torch/index.js';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { Linear, type Module } from '../nn/index.js';
import { Linear4bit, quantBufferNames, type ComputeDtype } from './linear4bit.js';
import {
  parseBnbQuantizationConfig,
  quantizationConfig,
  quantizationTargets,
  type QuantizationOptions,
} from './quantize.js';
import { bnbPart, QUANT_STATE_KEY, stateFromParts } from './serialization.js';

export interface QuantizedLoadInput {
  files: readonly string[];
  /** config.json (its quantization_config marks a bitsandbytes checkpoint). */
  config: Record<string, unknown>;
  /** fromPretrained's `quantization` option. */
  options?: QuantizationOptions;
}

/**
 * Reads the checkpoint's headers (before the model exists, so nothing yields between building the
 * model and swapping its layers); null when nothing will be 4-bit (no option, and a dense checkpoint
 * without quantization_config).
 */
export async function planQuantizedLoad(input: QuantizedLoadInput): Promise<QuantizedLoadPlan | null> {
  const saved = parseBnbQuantizationConfig(input.config.quantization_config);
  const names = new Set<string>();
  for (const file of input.files)
    for (const name of Object.keys((await readSafetensorsHeader(file)).tensors)) names.add(name);
  const prequantized = [...names].some((n) => QUANT_STATE_KEY.test(n));
  if (!prequantized && input.options === undefined && saved === null) return null;
  return new QuantizedLoadPlan(names, prequantized, saved, input.options);
}

export class QuantizedLoadPlan {
  constructor(
    readonly names: ReadonlySet<string>,
    readonly preQuantized: boolean,
    readonly saved: QuantizationOptions | null,
    readonly options: QuantizationOptions | undefined,
  ) {}

  /**
   * Swaps the model's future 4-bit layers for empty Linear4bit layers (synchronously, right after
   * the model is built) and returns the loader's side of the job. `moduleName` maps checkpoint names.
   */
  apply(model: Module, moduleName: (checkpointName: string) => string | null): QuantizedLoad {
    const computeDtype: ComputeDtype = this.options?.computeDtype ?? this.saved?.computeDtype ?? 'float32';
    const layers = new Map<string, Linear4bit>();
    if (this.preQuantized) {
      // As transformers: a quantised checkpoint loads as it was saved; only computeDtype can be chosen.
      for (const name of this.names) {
        const m = QUANT_STATE_KEY.exec(name);
        const target = m === null ? null : moduleName(`${m[1]}.weight`);
        if (m === null || target === null || !target.endsWith('.weight')) continue;
        const spec = {
          quantType: m[2] as 'nf4' | 'fp4',
          doubleQuant: this.names.has(`${m[1]}.weight.nested_absmax`),
          blocksize: 64,
          computeDtype,
        };
        const path = target.slice(0, -'.weight'.length);
        layers.set(path, placeholder(model, path, spec));
      }
      return new QuantizedLoad(layers, true);
    }
    const config = quantizationConfig({ ...this.saved, ...this.options, computeDtype });
    for (const path of quantizationTargets(model, config)) layers.set(path, placeholder(model, path, config));
    return new QuantizedLoad(layers, false);
  }
}

function placeholder(
  model: Module,
  path: string,
  spec: { quantType: 'nf4' | 'fp4'; doubleQuant: boolean; blocksize: number; computeDtype: ComputeDtype },
): Linear4bit {
  let linear: Module;
  try {
    linear = model.getSubmodule(path);
  } catch {
    throw new Error(`the checkpoint has a 4-bit layer '${path}' that the model does not have`);
  }
  if (!(linear instanceof Linear) || linear instanceof Linear4bit)
    throw new Error(`the checkpoint has a 4-bit layer '${path}', which is a ${linear.constructor.name} in the model`);
  const layer = new Linear4bit(linear.inFeatures, linear.outFeatures, {
    ...spec,
    weightDtype: linear.weight.dtype,
    bias: linear.bias !== null,
    biasDtype: linear.bias?.dtype,
    device: linear.weight.device,
  });
  layer.training = linear.training;
  model.replaceModule(path, layer);
  linear.dispose();
  return layer;
}

export class QuantizedLoad {
  readonly #parts = new Map<string, Map<string, Tensor>>();

  constructor(
    /** The 4-bit layers by module path. */
    readonly layers: ReadonlyMap<string, Linear4bit>,
    /** A bitsandbytes checkpoint (else a dense one quantised on load). */
    readonly preQuantized: boolean,
  ) {}

  /**
   * Takes a checkpoint tensor (by module name) that belongs to a 4-bit layer, consuming it; false
   * for any other tensor. Problems are added to `problems`, loaded names to `loaded`.
   */
  take(target: string, tensor: Tensor, file: string, problems: string[], loaded: Set<string>): boolean {
    const part = bnbPart(target);
    const layer = part === null ? undefined : this.layers.get(part[0]);
    if (part === null || layer === undefined) return false;
    const [path, kind] = part;
    if (!this.preQuantized) {
      if (kind !== 'weight') return false;
      const shape = [layer.outFeatures, layer.inFeatures];
      if (tensor.shape.length !== 2 || tensor.shape[0] !== shape[0] || tensor.shape[1] !== shape[1]) {
        problems.push(
          `tensor '${target}' in ${file} has shape [${tensor.shape.join(', ')}] but the model expects [${shape.join(', ')}]`,
        );
        tensor.dispose();
        return true;
      }
      if (problems.length === 0) {
        const same = tensor.dtype === layer.weightDtype && tensor.device === layer.weight.device;
        const dense = same
          ? tensor
          : torch.noGrad(() => tensor.to({ dtype: layer.weightDtype, device: layer.weight.device }));
        layer.quantizeFrom(dense);
        if (!same) dense.dispose();
        markLoaded(path, layer, loaded);
      }
      tensor.dispose();
      return true;
    }
    const parts = this.#parts.get(path) ?? new Map<string, Tensor>();
    this.#parts.set(path, parts);
    parts.get(kind)?.dispose();
    parts.set(kind, tensor);
    let state: ReturnType<typeof stateFromParts>;
    try {
      state = stateFromParts(parts, path);
    } catch (error) {
      problems.push(`${(error as Error).message} (${file})`);
      return true;
    }
    if (Array.isArray(state)) return true; // more parts to come
    const json = [...parts.entries()].find(([k]) => k.startsWith('quant_state.'))![1];
    this.#parts.delete(path);
    const device = layer.weight.device;
    if (device !== 'cpu') {
      for (const key of ['packed', 'absmax', 'code', 'nestedAbsmax', 'nestedCode', 'offset'] as const) {
        const t = state[key];
        if (t !== null) {
          state[key] = t.to({ device });
          t.dispose();
        }
      }
    }
    try {
      layer.setState(state);
      markLoaded(path, layer, loaded);
    } catch (error) {
      problems.push(`${path}: ${(error as Error).message} (${file})`);
    }
    json.dispose();
    return true;
  }

  /** Reports layers whose parts never all arrived and frees what did. */
  finish(problems: string[]): void {
    for (const [path, parts] of this.#parts) {
      let missing: string[] = [];
      try {
        const state = stateFromParts(parts, path);
        if (Array.isArray(state)) missing = state;
      } catch {
        // reported when the part arrived
      }
      if (missing.length > 0)
        problems.push(
          `4-bit layer '${path}' lacks ${missing.map((m) => `'weight.${m}'`.replace("'weight.weight'", "'weight'")).join(', ')} in every shard`,
        );
      for (const t of parts.values()) t.dispose();
    }
    this.#parts.clear();
  }
}

function markLoaded(path: string, layer: Linear4bit, loaded: Set<string>): void {
  loaded.add(`${path}.weight`);
  for (const name of quantBufferNames(layer.doubleQuant)) loaded.add(`${path}.${name}`);
}
