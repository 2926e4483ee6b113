// Planning getPeftModel's changes before any is made: which modules take a LoRA layer (PEFT's
// inject_adapter checks and messages) and which modules_to_save get a trainable copy.
import { Linear, type Module } from '../nn/index.js';
import type { LoraConfig } from './config.js';
import { SavedModule, cloneModule } from './modules_to_save.js';
import { matchModule, resolveTargets, type TargetSpec } from './targeting.js';

export function planTargets(model: Module, config: LoraConfig, targets: TargetSpec): string[] {
  const found: string[] = [];
  let excluded = 0;
  for (const [name] of model.namedModules()) {
    if (name === '') continue;
    const match = matchModule(config, targets, name);
    if (match === 'excluded') excluded += 1;
    else if (match === 'target') found.push(name);
  }
  if (found.length === 0) throw new Error(noMatchMessage(model, config, targets, excluded));
  return checkTargets(model, found);
}

/** The module names `config` adapts in `model` (throws as getPeftModel would when none match). */
export const targetedModules = (model: Module, config: LoraConfig): string[] =>
  planTargets(model, config, resolveTargets(model, config));

export function checkTargets(model: Module, names: readonly string[]): string[] {
  for (const name of names) {
    const m = model.getSubmodule(name);
    if (!(m instanceof Linear))
      throw new TypeError(`LoRA: target '${name}' is a ${m.constructor.name}; only Linear layers take a LoRA adapter`);
  }
  return [...names];
}

function noMatchMessage(model: Module, config: LoraConfig, targets: TargetSpec, excluded: number): string {
  const parts = [`LoRA: targetModules ${JSON.stringify(targets)} matched no module of ${model.constructor.name}`];
  if (excluded > 0)
    parts.push(
      `${excluded} module(s) were excluded by excludeModules ${JSON.stringify(config.excludeModules)} or modulesToSave ${JSON.stringify(config.modulesToSave)}`,
    );
  if (config.layersToTransform !== null)
    parts.push(
      `layersToTransform is ${JSON.stringify(config.layersToTransform)}, layersPattern ${JSON.stringify(config.layersPattern)}`,
    );
  return parts.join('; ');
}

/** PEFT's _set_trainable: every module whose name ends with an entry (plain string suffix). */
export function planModulesToSave(model: Module, config: LoraConfig, targets: string[]): SavedModule[] {
  const entries = config.modulesToSave ?? [];
  const paths: string[] = [];
  for (const entry of entries) {
    const hits = [...model.namedModules()].map(([n]) => n).filter((n) => n !== '' && n.endsWith(entry));
    if (hits.length === 0) throw new Error(`LoRA: modulesToSave entry '${entry}' matched no module`);
    for (const hit of hits) if (!paths.some((p) => hit === p || hit.startsWith(`${p}.`))) paths.push(hit);
  }
  const clash = paths.find((p) => targets.some((t) => t === p || t.startsWith(`${p}.`)));
  if (clash !== undefined) throw new Error(`LoRA: '${clash}' is both a LoRA target and in modulesToSave`);
  const saved: SavedModule[] = [];
  try {
    for (const path of paths)
      saved.push(new SavedModule(path, model.getSubmodule(path), cloneModule(model.getSubmodule(path), path)));
  } catch (error) {
    saved.forEach((s) => s.copy.dispose());
    throw error;
  }
  return saved;
}
