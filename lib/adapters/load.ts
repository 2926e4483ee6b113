// loadAdapter: PeftModel.from_pretrained for vlalign models: reads a PEFT adapter directory, applies
// its config to the model and loads its tensors.
import type { Module } from '../nn/index.js';
import type { LoraConfig } from './config.js';
import { adapterModules, loadAdapterWeights, readAdapterConfig } from './io.js';
import { targetedModules } from './inject.js';
import { getPeftModel, type LoraModel } from './lora_model.js';

export interface LoadAdapterOptions {
  /** Keep the adapter trainable (PEFT's is_trainable; default false: inference mode, all frozen). */
  trainable?: boolean;
  /** The adapter name of PEFT in-memory tensor names (`lora_A.<name>.weight`), default 'default'. */
  adapterName?: string;
}

/** Wraps `model` with the adapter in `dir`; on a bad file the model is left as it was. */
export async function loadAdapter<M extends Module>(
  model: M,
  dir: string,
  options: LoadAdapterOptions = {},
): Promise<LoraModel<M>> {
  const config = readAdapterConfig(dir);
  const targetNames = await checkedTargets(model, config, dir, options.adapterName);
  const flags = model.parameters().map((p) => [p, p.requiresGrad] as const);
  const peft = getPeftModel(model, { ...config, inferenceMode: !(options.trainable ?? false) }, { targetNames });
  try {
    await loadAdapterWeights(peft, dir, options.adapterName);
  } catch (error) {
    peft.discard();
    for (const [p, requiresGrad] of flags) p.requiresGrad_(requiresGrad);
    throw error;
  }
  return peft;
}

/**
 * The modules to wrap: those the weights file holds factors for. The config's patterns must agree
 * where they apply; a regex written for another module layout (newer transformers'
 * `model.language_model.layers...`) matches nothing here and so defers to the file.
 */
async function checkedTargets(
  model: Module,
  config: LoraConfig,
  dir: string,
  adapterName?: string,
): Promise<string[] | undefined> {
  const fromFile = await adapterModules(model, dir, adapterName);
  if (fromFile.length === 0) return undefined;
  let fromConfig: string[];
  try {
    fromConfig = targetedModules(model, config);
  } catch {
    return fromFile;
  }
  const onlyConfig = fromConfig.filter((n) => !fromFile.includes(n));
  const onlyFile = fromFile.filter((n) => !fromConfig.includes(n));
  if (onlyConfig.length + onlyFile.length === 0) return fromFile;
  const list = (names: string[]): string =>
    `${names.slice(0, 5).join(', ')}${names.length > 5 ? `, ... (${names.length})` : ''}`;
  throw new Error(
    `${dir}: adapter_config.json and the weights disagree on the adapted modules: only in the config's targets: [${list(onlyConfig)}]; only in the weights: [${list(onlyFile)}]`,
  );
}
