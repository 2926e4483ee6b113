// buildTrainer: the recipe's processor, model (quantised, frozen, with adapters), reference and data,
// handed to createTrainer. Apart from recipe.ts so that --help and recipe checks load no model code.
import path from 'node:path';
import * as torch from '../torch/index.js';
import { getPeftModel, type LoraModel } from '../adapters/index.js';
import { openDataset } from '../data/open.js';
import { openPromptSet } from '../eval/prompt_set.js';
import type { RecordDataset } from '../data/records.js';
import { fromPretrained as loadModel } from '../models/pretrained.js';
import type { CausalLM } from '../models/causal_lm.js';
import { fromPretrained as loadProcessor, type ProcessorOptions } from '../processing/index.js';
import type { QuantizationOptions } from '../quant/index.js';
import type { DpoConfig } from '../train/config.js';
import type { GrpoConfig } from '../train/grpo/config.js';
import { createTrainer } from '../train/create.js';
import { applyFreezing } from '../train/freeze.js';
import type { Trainer } from '../train/trainer.js';
import type { Recipe } from './recipe.js';

const quantizationOf = (q: Recipe['quantization']): QuantizationOptions | undefined =>
  q === null
    ? undefined
    : {
        quantType: q.bnb_4bitQuantType,
        doubleQuant: q.bnb_4bitUseDoubleQuant,
        computeDtype: q.bnb_4bitComputeDtype,
        skipModules: q.llmInt8SkipModules,
      };

const processorOptionsOf = (p: Recipe['processor']): ProcessorOptions => {
  const image = { minPixels: p.minPixels, maxPixels: p.maxPixels };
  const tiling = { maxNum: p.maxDynamicPatch, minNum: p.minDynamicPatch, useThumbnail: p.useThumbnail };
  const defined = <T extends object>(o: T): Partial<T> =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  return defined({
    paddingSide: p.paddingSide,
    addVisionId: p.addVisionId,
    systemMessage: p.systemMessage,
    chatTemplateName: p.chatTemplateName,
    image: Object.keys(defined(image)).length > 0 ? defined(image) : undefined,
    tiling: Object.keys(defined(tiling)).length > 0 ? defined(tiling) : undefined,
  }) as ProcessorOptions;
};

// InternVL has one --max_dynamic_patch: the processor's tiling and the datasets' default budget
// (a meta.json entry's own still wins). A recipe's processor block sets it for both unless the
// dataset block gives its own.
export function withTileDefault(
  block: Record<string, unknown>,
  processor: Recipe['processor'],
): Record<string, unknown> {
  const tiled = block.format === 'mmpr' || block.format === 'internvl_sft' || block.format === 'verl';
  const own = 'max_dynamic_patch' in block || 'maxDynamicPatch' in block;
  if (!tiled || own || processor.maxDynamicPatch === undefined) return block;
  const key = Object.keys(block).some((k) => k.includes('_')) ? 'max_dynamic_patch' : 'maxDynamicPatch';
  return { ...block, [key]: processor.maxDynamicPatch };
}

/** Processor, model (quantised, frozen, adapters), reference and data as the recipe says; then the trainer. */
export async function buildTrainer(recipe: Recipe): Promise<Trainer> {
  // Before anything random: a new adapter's initial weights are drawn while it is built.
  torch.manualSeed(recipe.args.seed);
  const baseDir = path.dirname(path.resolve(recipe.file));
  const modelKey = 'model_name_or_path';
  const processor = await namedByKey(recipe, modelKey, () =>
    loadProcessor(recipe.modelNameOrPath, processorOptionsOf(recipe.processor)),
  );
  const loadOptions = { dtype: recipe.torchDtype, quantization: quantizationOf(recipe.quantization) };
  const model = await namedByKey(recipe, modelKey, () => loadModel(recipe.modelNameOrPath, loadOptions));
  applyFreezing(model, recipe.args);
  let adapter: LoraModel | undefined;
  if (recipe.peft !== null) {
    const peft = { ...recipe.peft, baseModelNameOrPath: recipe.modelNameOrPath, taskType: 'CAUSAL_LM' as const };
    adapter = getPeftModel(model, peft);
  }
  const refModel = await referenceOf(recipe, adapter !== undefined);
  const open = (block: Record<string, unknown>, root: string) =>
    openDataset(withTileDefault(block, recipe.processor), { baseDir, source: recipe.file, root });
  const trainDataset = await open(recipe.dataset, 'dataset');
  const evalDataset: RecordDataset | null =
    recipe.evalDataset === null ? null : await open(recipe.evalDataset, 'eval_dataset');
  const generation = recipe.evalGenerationDataset;
  const evalGenerationDataset =
    generation === null
      ? null
      : await openPromptSet(withTileDefault(generation, recipe.processor), {
          baseDir,
          source: recipe.file,
          root: 'eval_generation_dataset',
        });
  return createTrainer({
    method: recipe.trainer,
    args: recipe.args,
    model,
    processor,
    adapter,
    refModel,
    modelPath: recipe.modelNameOrPath,
    trainDataset,
    evalDataset,
    evalGenerationDataset,
  });
}

/**
 * A checkpoint folder that fails to load names the key that chose it: `--key` when a flag set it
 * (the folder a flag value resolved to is not what the user typed), else the recipe's key.
 */
async function namedByKey<T>(recipe: Recipe, key: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const where = recipe.flagKeys?.includes(key) ? `--${key}` : `${recipe.file}: ${key}`;
    throw new Error(`${where}: ${(error as Error).message}`, { cause: error });
  }
}

// A given reference checkpoint; else for a full fine-tune of dpo / kto without precomputed
// log-probs, a frozen second copy of the policy's checkpoint; with adapters none (they are disabled).
async function referenceOf(recipe: Recipe, withAdapter: boolean): Promise<CausalLM | null> {
  const args = recipe.args as Partial<DpoConfig & GrpoConfig>;
  // GRPO's KL term needs a reference only when beta > 0 (TRL loads none otherwise).
  if (recipe.trainer === 'grpo' && (args.beta === 0 || withAdapter)) return null;
  let dir = recipe.refModelNameOrPath;
  if (dir === null && recipe.trainer !== 'sft' && !withAdapter && args.precomputeRefLogProbs !== true) {
    dir = recipe.modelNameOrPath;
  }
  if (dir === null || recipe.trainer === 'sft') return null;
  const key = recipe.refModelNameOrPath === null ? 'model_name_or_path' : 'ref_model_name_or_path';
  const options = { dtype: recipe.torchDtype, quantization: quantizationOf(recipe.quantization) };
  const ref = await namedByKey(recipe, key, () => loadModel(dir, options));
  ref.requiresGrad_(false);
  return ref.eval();
}
