// Recipes: YAML → the trainer config (snake_case → camelCase), overrides, unknown keys with the
// nearest name, YAML errors with their line; --help lists the keys with the schemas' defaults.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRecipe, pairsOf } from '../../lib/cli/recipe.js';
import { program, recipeKeysHelp } from '../../lib/cli/main.js';
import type { DpoConfig } from '../../lib/train/config.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-recipe-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const RECIPE = `trainer: dpo
model_name_or_path: ./tiny/qwen2_5_vl
torch_dtype: float32
dataset:
  format: trl
  path: ./data/rlaif-v
  split: train[:50%]
  image_root: null
peft:
  r: 8
  lora_alpha: 16
  target_modules: auto
  use_dora: true
  init_lora_weights: gaussian
quantization:
  load_in_4bit: true
  bnb_4bit_quant_type: nf4
  bnb_4bit_use_double_quant: true
processor: { max_pixels: 50176 }
output_dir: ./runs/mpo
loss_type: [sigmoid, bco_pair, sft]
loss_weights: [0.8, 0.2, 1.0]
per_device_train_batch_size: 4
gradient_accumulation_steps: 8
`;

const write = (name: string, text: string): string => {
  const file = join(root, name);
  writeFileSync(file, text);
  return file;
};
const messageOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected a throw');
};

describe('loadRecipe', () => {
  it('maps the file onto the recipe and the trainer config, paths against the file', () => {
    const r = loadRecipe(write('a.yaml', RECIPE));
    const args = r.args as DpoConfig;
    expect(r.trainer).toBe('dpo');
    expect(r.modelNameOrPath).toBe(join(root, 'tiny/qwen2_5_vl'));
    expect(args.outputDir).toBe(join(root, 'runs/mpo'));
    expect(args.lossType).toEqual(['sigmoid', 'bco_pair', 'sft']);
    expect(args.lossWeights).toEqual([0.8, 0.2, 1.0]);
    expect([args.perDeviceTrainBatchSize, args.gradientAccumulationSteps, args.learningRate]).toEqual([4, 8, 1e-6]);
    expect(r.quantization).toEqual({
      loadIn_4bit: true,
      bnb_4bitQuantType: 'nf4',
      bnb_4bitUseDoubleQuant: true,
      bnb_4bitComputeDtype: 'float32',
      llmInt8SkipModules: null,
    });
    expect(r.peft).toMatchObject({ loraAlpha: 16, targetModules: 'auto', useDora: true });
    expect(r.dataset).toEqual({ format: 'trl', path: './data/rlaif-v', split: 'train[:50%]' });
    expect(r.processor).toEqual({ maxPixels: 50176 });
  });

  it('flags override the file, parsed as YAML values', () => {
    const r = loadRecipe(write('b.yaml', RECIPE), [
      '--learning_rate',
      '1e-5',
      '--loss_type',
      '[sigmoid,sft]',
      '--loss_weights=[1, 0.5]',
      '--bf16',
      'true',
    ]);
    const args = r.args as DpoConfig;
    expect([args.learningRate, args.bf16]).toEqual([1e-5, true]);
    expect(args.lossType).toEqual(['sigmoid', 'sft']);
    expect(pairsOf(['--max_steps', '2', '--report_to', 'none'])).toEqual({ max_steps: 2, report_to: 'none' });
  });

  it('unknown keys and flags name the nearest valid key', () => {
    const file = write('c.yaml', `${RECIPE}learning_rat: 1e-5\n`);
    expect(messageOf(() => loadRecipe(file))).toContain(
      "invalid learning_rat: unknown key (did you mean 'learning_rate'?)",
    );
    expect(messageOf(() => loadRecipe(write('d.yaml', RECIPE), ['--lerning_rate', '1']))).toContain(
      "invalid --lerning_rate: unknown option (did you mean 'learning_rate'?)",
    );
    const nested = write('e.yaml', RECIPE.replace('lora_alpha: 16', 'lora_alpah: 16'));
    expect(messageOf(() => loadRecipe(nested))).toContain(
      "invalid peft.lora_alpah: unknown key (did you mean 'lora_alpha'?)",
    );
    const data = write('i.yaml', RECIPE.replace('split: train', 'splt: train'));
    expect(messageOf(() => loadRecipe(data))).toContain("invalid dataset.splt: unknown key (did you mean 'split'?)");
    expect(messageOf(() => loadRecipe(write('f.yaml', `${RECIPE}learningRate: 1\n`)))).toContain(
      "write it in snake_case: 'learning_rate'",
    );
    expect(messageOf(() => loadRecipe(write('g.yaml', RECIPE.replace('[0.8, 0.2, 1.0]', '[0.8]'))))).toContain(
      'loss_weights has 1 entries but loss_type has 3',
    );
  });

  it('YAML errors name the file and line', () => {
    const file = write('h.yaml', 'trainer: dpo\noutput_dir: [unclosed\nseed: 1\n');
    expect(messageOf(() => loadRecipe(file))).toMatch(
      new RegExp(`^${file.replaceAll('/', '\\/')}: invalid line \\d+:\\d+`),
    );
  });
});

describe('help', () => {
  it('lists commands, and the recipe keys with their defaults from the schemas', () => {
    const top = program().helpInformation();
    expect(top).toContain('train');
    expect(top).toContain('merge-adapter');
    const keys = recipeKeysHelp('dpo');
    expect(keys).toContain('  learning_rate (default: 0.000001)');
    expect(keys).toContain('  logging_steps (default: 10)');
    expect(keys).toContain('  loss_type (default: ["sigmoid"])');
    expect(keys).toContain('  output_dir (required)');
    expect(keys).toContain('  model_name_or_path (required)');
    expect(recipeKeysHelp('sft')).toContain('  learning_rate (default: 0.00002)');
  });
});
