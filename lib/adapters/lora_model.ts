// getPeftModel / LoraModel (PEFT's LoraModel and PeftModel in one): wraps the targeted Linear layers
// of a model in place, adds trainable copies of modules_to_save, freezes everything else, and offers
// PEFT's life cycle: enable / disable, merge, unload, save.
import { Tensor } from '../torch/index.js';
import type { Linear, Module } from '../nn/index.js';
import { loraConfig, type LoraConfig, type LoraConfigInput } from './config.js';
import { PEFT_PREFIX, loadAdapterWeights, writeAdapter } from './io.js';
import { LoraLinear, type MergeOptions } from './lora_linear.js';
import { checkTargets, planModulesToSave, planTargets } from './inject.js';
import type { SavedModule } from './modules_to_save.js';
import { rankAndAlpha, resolveTargets } from './targeting.js';

/**
 * Applies `config` to `model` in place and returns the handle that manages the adapter. The model's
 * own forward keeps working (the wrapped layers are Linear subclasses in the parents' fields).
 */
export function getPeftModel<M extends Module>(
  model: M,
  input: LoraConfigInput = {},
  options: { targetNames?: readonly string[] } = {},
): LoraModel<M> {
  const config = loraConfig(input);
  for (const [name, m] of model.namedModules()) {
    if (m instanceof LoraLinear)
      throw new Error(`getPeftModel: '${name}' already has a LoRA adapter; unload() the first one`);
  }
  // targetNames (loadAdapter: the modules an adapter file holds) replace the config's matching.
  const given = options.targetNames;
  const targets = given !== undefined && config.targetModules === null ? [...given] : resolveTargets(model, config);
  const names = given === undefined ? planTargets(model, config, targets) : checkTargets(model, given);
  const saved = planModulesToSave(model, config, names);
  // A config saved after 'all-linear' lists the layers it found, as PEFT writes it.
  const resolved: LoraConfig = { ...config, targetModules: typeof targets === 'string' ? targets : [...targets] };
  model.requiresGrad_(false);
  const layers = new Map<string, LoraLinear>();
  for (const name of names) {
    const layer = new LoraLinear(model.getSubmodule(name) as Linear, {
      ...rankAndAlpha(config, name),
      dropout: config.loraDropout,
      useRslora: config.useRslora,
      useDora: config.useDora,
      init: config.initLoraWeights,
    });
    model.replaceModule(name, layer);
    layers.set(name, layer);
  }
  for (const s of saved) model.replaceModule(s.path, s.copy);
  return new LoraModel(model, resolved, layers, new Map(saved.map((s) => [s.path, s])));
}

export class LoraModel<M extends Module = Module> {
  #enabled = true;
  #unloaded = false;

  /** @internal use getPeftModel or loadAdapter */
  constructor(
    readonly model: M,
    /** The config with targets resolved (as saved in adapter_config.json). */
    readonly config: LoraConfig,
    /** The LoRA layers by module name. */
    readonly layers: ReadonlyMap<string, LoraLinear>,
    /** modules_to_save by module name. */
    readonly saved: ReadonlyMap<string, SavedModule>,
  ) {
    this.#markTrainable();
  }

  get adaptersEnabled(): boolean {
    return this.#enabled;
  }

  // Adapters trainable (unless inferenceMode), plus the biases `bias` names; the rest stays frozen.
  #markTrainable(): void {
    const train = !this.config.inferenceMode;
    for (const layer of this.layers.values()) {
      for (const p of [layer.lora_A.weight, layer.lora_B.weight, layer.lora_magnitude_vector]) p?.requiresGrad_(train);
    }
    for (const s of this.saved.values()) s.copy.requiresGrad_(train);
    for (const [, bias] of this.#trainedBiases()) bias.requiresGrad_(train);
  }

  enableAdapters(): void {
    this.#setEnabled(true);
  }

  /** The base model's forward (DPO's reference model): LoRA layers pass through, saved modules revert. */
  disableAdapters(): void {
    this.#setEnabled(false);
  }

  #setEnabled(enabled: boolean): void {
    this.#check();
    for (const layer of this.layers.values()) layer.enableAdapters(enabled);
    for (const s of this.saved.values()) this.model.replaceModule(s.path, enabled ? s.copy : s.original);
    this.#enabled = enabled;
  }

  /** Runs `fn` (sync or async) with the adapters disabled, then restores the previous state. */
  withAdaptersDisabled<T>(fn: () => T): T {
    const was = this.#enabled;
    const restore = (): void => (was ? this.enableAdapters() : undefined);
    this.disableAdapters();
    let result: T;
    try {
      result = fn();
    } catch (error) {
      restore();
      throw error;
    }
    if (result instanceof Promise) return result.finally(restore) as T;
    restore();
    return result;
  }

  merge(options: MergeOptions = {}): void {
    this.#check();
    for (const [path, layer] of this.layers) withPath(path, () => layer.merge(options));
  }

  unmerge(): void {
    this.#check();
    for (const layer of this.layers.values()) layer.unmerge();
  }

  /** Merges every adapter into its base weight and puts plain Linear layers back; returns the model. */
  mergeAndUnload(options: MergeOptions = {}): M {
    this.merge(options);
    return this.#unwrap((layer) => layer.mergeAndUnload(options));
  }

  /** Puts the original Linear layers back without merging (base weights untouched); returns the model. */
  unload(): M {
    this.#check();
    return this.#unwrap((layer) => layer.unload());
  }

  /** unload() that also puts the original modules_to_save back: the model as it was before getPeftModel. */
  discard(): M {
    this.#check();
    return this.#unwrap((layer) => layer.unload(), false);
  }

  // As PEFT, unloading keeps the trained copies of modules_to_save in the model.
  #unwrap(release: (layer: LoraLinear) => Linear, keepCopies = true): M {
    this.#setEnabled(keepCopies);
    for (const [path, layer] of this.layers) this.model.replaceModule(path, release(layer));
    for (const s of this.saved.values()) (keepCopies ? s.original : s.copy).dispose();
    this.#unloaded = true;
    return this.model;
  }

  /** Parameters that train, by module name (saved modules' copies included while disabled). */
  trainableParameters(): Array<[string, Tensor]> {
    const named = [...this.model.namedParameters()];
    if (!this.#enabled) for (const s of this.saved.values()) named.push(...s.copy.namedParameters(s.path));
    return named.filter(([, p]) => p.requiresGrad);
  }

  /** PEFT's print_trainable_parameters line (all params count both sides of modules_to_save). */
  printTrainable(): string {
    // A uint8 parameter is a packed 4-bit weight: two parameters per byte, as PEFT counts Params4bit.
    const count = (ps: Iterable<[string, Tensor]>): number =>
      [...ps].reduce((n, [, p]) => n + p.numel() * (p.dtype === 'uint8' ? 2 : 1), 0);
    const trainable = count(this.trainableParameters());
    const offTree = [...this.saved.values()].map((s) => (this.#enabled ? s.original : s.copy));
    const all = count(this.model.namedParameters()) + offTree.reduce((n, m) => n + count(m.namedParameters()), 0);
    const pct = all === 0 ? 0 : (100 * trainable) / all;
    return `trainable params: ${trainable.toLocaleString('en-US')} || all params: ${all.toLocaleString('en-US')} || trainable%: ${pct.toFixed(4)}`;
  }

  /** The adapter's tensors under their adapter_model.safetensors names (live tensors, not copies). */
  adapterStateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [path, layer] of this.layers) {
      out.set(`${PEFT_PREFIX}${path}.lora_A.weight`, layer.lora_A.weight);
      out.set(`${PEFT_PREFIX}${path}.lora_B.weight`, layer.lora_B.weight);
      if (layer.lora_magnitude_vector !== null)
        out.set(`${PEFT_PREFIX}${path}.lora_magnitude_vector`, layer.lora_magnitude_vector);
    }
    for (const [name, bias] of this.#trainedBiases()) out.set(`${PEFT_PREFIX}${name}`, bias);
    for (const s of this.saved.values())
      for (const [name, t] of s.stateDict()) out.set(`${PEFT_PREFIX}${s.path}.${name}`, t);
    return out;
  }

  // bias 'all': every bias outside modules_to_save; 'lora_only': the wrapped layers'. A wrapped
  // layer's bias is `<path>.base_layer.bias` in PEFT's files.
  #trainedBiases(): Array<[string, Tensor]> {
    if (this.config.bias === 'none') return [];
    const savedPrefixes = [...this.saved.keys()].map((p) => `${p}.`);
    const biases: Array<[string, Tensor]> = [];
    for (const [name, m] of this.model.namedModules()) {
      const bias = (m as { bias?: unknown }).bias;
      if (!(bias instanceof Tensor) || savedPrefixes.some((p) => `${name}.`.startsWith(p))) continue;
      const wrapped = m instanceof LoraLinear;
      if (this.config.bias === 'all' || wrapped)
        biases.push([wrapped ? `${name}.base_layer.bias` : `${name}.bias`, bias]);
    }
    return biases;
  }

  async saveAdapter(dir: string): Promise<void> {
    this.#check();
    await writeAdapter(this, dir);
  }

  /** Loads adapter_model.safetensors of `dir` into this adapter (strict, see loadAdapterWeights). */
  async loadAdapterWeights(dir: string): Promise<void> {
    this.#check();
    await loadAdapterWeights(this, dir);
  }

  /** Model.to() for the model and the half of each saved module that is not in it. */
  to(target: Parameters<Module['to']>[0]): this {
    this.model.to(target);
    for (const s of this.saved.values()) (this.#enabled ? s.original : s.copy).to(target);
    return this;
  }

  /** Frees the model, the adapters and the saved modules' off-model halves. */
  dispose(): void {
    for (const layer of this.layers.values()) if (!this.#unloaded) layer.dispose();
    for (const s of this.saved.values()) (this.#enabled ? s.original : s.copy).dispose();
    this.model.dispose();
  }

  #check(): void {
    if (this.#unloaded) throw new Error('LoraModel: the adapter was unloaded');
  }
}

function withPath(path: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}
