// What a checkpoint holds for an exact resume, and where: the model in HF's layout (full fine-tune)
// or the adapter in PEFT's; optimizer.safetensors (optimizer + scheduler, lib/optim's file);
// rng_state.safetensors (libtorch's CPU generator); resume_state.json (the data position and every
// stateful part, e.g. a loss's running moments, which TRL forgets on resume). Each file goes through
// the writers the layers below already have; CheckpointManager makes the directory atomic.
import fs from 'node:fs';
import path from 'node:path';
import { readJsonObject, writeJsonFile } from '../util/json_file.js';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { savePretrained, weightFiles, type CausalLM } from '../models/index.js';
import type { LoraModel } from '../adapters/index.js';
import { loadOptimizer, saveOptimizer, type GroupOptions, type LRScheduler, type Optimizer } from '../optim/index.js';
import type { CheckpointWriter } from './checkpoint.js';

export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const RNG_FILE = 'rng_state.safetensors';
export const RESUME_STATE_FILE = 'resume_state.json';

/** Where the data loader stands: enough to replay the same shuffled order from the next sample. */
export interface DataPosition {
  epoch: number;
  /** Samples of this epoch already consumed. */
  index: number;
  /** The seed of this epoch's shuffle. */
  seed: number;
}

/** Anything with PyTorch's state-dict pair whose state is plain JSON (losses' running moments). */
export interface Stateful {
  stateDict(): unknown;
  loadStateDict(state: never): void;
}

export interface TrainingParts {
  /** Full fine-tuning: the whole model, in HF's layout. */
  model?: CausalLM;
  /** LoRA / DoRA: only the adapter, in PEFT's layout. */
  adapter?: LoraModel;
  optimizer?: Optimizer<GroupOptions>;
  scheduler?: LRScheduler;
  /** Saved and restored by name. */
  stateful?: Record<string, Stateful>;
}

interface ResumeState {
  data: DataPosition | null;
  stateful: Record<string, unknown>;
}

/** The writers of one save; `data` is the loader's position at this step. */
export function trainingWriters(parts: TrainingParts, data: DataPosition | null): CheckpointWriter[] {
  const writers: CheckpointWriter[] = [];
  if (parts.model !== undefined) writers.push((dir) => savePretrained(parts.model!, dir));
  if (parts.adapter !== undefined) writers.push((dir) => parts.adapter!.saveAdapter(dir));
  if (parts.optimizer !== undefined) {
    writers.push((dir) => saveOptimizer(path.join(dir, OPTIMIZER_FILE), parts.optimizer!, parts.scheduler));
  }
  writers.push(saveRng);
  writers.push((dir) => {
    const stateful = Object.fromEntries(Object.entries(parts.stateful ?? {}).map(([name, s]) => [name, s.stateDict()]));
    writeJsonFile(path.join(dir, RESUME_STATE_FILE), { data, stateful } satisfies ResumeState);
  });
  return writers;
}

/** Puts the checkpoint's state back into `parts`; returns the data position to continue from. */
export async function restoreTraining(dir: string, parts: TrainingParts): Promise<DataPosition | null> {
  if (parts.model !== undefined) await loadModelWeights(dir, parts.model);
  if (parts.adapter !== undefined) await parts.adapter.loadAdapterWeights(dir);
  if (parts.optimizer !== undefined)
    await loadOptimizer(path.join(dir, OPTIMIZER_FILE), parts.optimizer, parts.scheduler);
  await loadRng(dir);
  const file = path.join(dir, RESUME_STATE_FILE);
  const saved = readJsonObject(file) as unknown as ResumeState;
  for (const [name, part] of Object.entries(parts.stateful ?? {})) {
    if (!(name in saved.stateful))
      throw new Error(`${file}: no state for '${name}' (saved: ${Object.keys(saved.stateful).join(', ')})`);
    part.loadStateDict(saved.stateful[name] as never);
  }
  return saved.data;
}

async function saveRng(dir: string): Promise<void> {
  const cpu = torch.getRngState();
  try {
    await torch.saveSafetensors(path.join(dir, RNG_FILE), { cpu });
  } finally {
    cpu.dispose();
  }
}

async function loadRng(dir: string): Promise<void> {
  const file = path.join(dir, RNG_FILE);
  if (!fs.existsSync(file)) throw new Error(`${dir}: no ${RNG_FILE}`);
  const tensors = await torch.loadSafetensors(file);
  try {
    if (tensors.cpu === undefined) throw new Error(`${file}: no 'cpu' generator state`);
    torch.setRngState(tensors.cpu);
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

// In place, so the optimizer keeps its parameters; strict, every name checked by loadStateDict.
async function loadModelWeights(dir: string, model: CausalLM): Promise<void> {
  const given = new Map<string, Tensor>();
  try {
    for (const file of weightFiles(dir)) {
      for (const [name, t] of Object.entries(await torch.loadSafetensors(file))) given.set(name, t);
    }
    model.loadStateDict(given);
  } finally {
    for (const t of given.values()) t.dispose();
  }
}
