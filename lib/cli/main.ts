// The `vlalign` command: train from a recipe, merge an adapter into its base. Every user error ends
// as one line on stderr and exit code 1; --help lists the recipe keys with their schema defaults.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadAdapter } from '../adapters/index.js';
import { registerBuildCommand } from './build_addon.js';
import { fromPretrained, savePretrained } from '../models/pretrained.js';
import { copyProcessorFiles } from '../train/processor_files.js';
import { camelToSnake } from '../util/case.js';
import { loadRecipe, RECIPE_TRAINERS, recipeSchema, type RecipeTrainer } from './recipe.js';
import { registerEval } from './eval_command.js';
import { registerData } from './data.js';
import { registerLaunchCommand } from './launch.js';

/** "  key (default: value)" for each field of a method's recipe, from the zod schema. */
export function recipeKeysHelp(method: RecipeTrainer): string {
  const shape = recipeSchema(method).shape as Record<
    string,
    { safeParse(v: unknown): { success: boolean; data?: unknown } }
  >;
  return Object.entries(shape)
    .map(([key, field]) => {
      const probe = field.safeParse(undefined);
      return `  ${camelToSnake(key)} (${probe.success ? `default: ${JSON.stringify(probe.data)}` : 'required'})`;
    })
    .join('\n');
}

async function train(file: string, overrides: string[]): Promise<void> {
  const recipe = loadRecipe(file, overrides);
  // Loaded here, not at start-up: --help and bad recipes need no model code.
  const { buildTrainer } = await import('./build.js');
  const trainer = await buildTrainer(recipe);
  // Under a launcher with several processes, train() joins their group; rank 0 reports.
  const out = await trainer.train();
  if (trainer.place.rank === 0) process.stdout.write(`done: ${out.globalStep} steps, train_loss ${out.trainingLoss}\n`);
}

async function mergeAdapter(o: { adapter: string; base: string; output: string }): Promise<void> {
  // An empty value would resolve to the working folder and fail later on a bare 'config.json'.
  for (const [flag, value] of Object.entries(o)) {
    if (value.trim() === '') throw new Error(`--${flag} is empty: give a folder`);
  }
  if (fs.existsSync(o.output) && fs.readdirSync(o.output).length > 0) {
    throw new Error(`--output ${o.output} exists and is not empty`);
  }
  const model = await fromPretrained(o.base);
  const peft = await loadAdapter(model, o.adapter);
  const merged = peft.mergeAndUnload();
  fs.mkdirSync(o.output, { recursive: true });
  await savePretrained(merged as typeof model, o.output);
  copyProcessorFiles(o.base, o.output);
  process.stdout.write(`merged ${o.adapter} into ${o.base}: ${path.resolve(o.output)}\n`);
}

export function program(): Command {
  const cli = new Command('vlalign').description('Preference optimisation and fine-tuning of vision-language models');
  cli
    .command('train')
    .description('Train from a recipe YAML; --key value flags override its keys (snake_case)')
    .argument('<recipe>', 'the recipe file')
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption('-h, --help')
    .addHelpText(
      'after',
      RECIPE_TRAINERS.map((m) => `\nRecipe keys for trainer: ${m}\n${recipeKeysHelp(m)}`).join('\n'),
    )
    .action(async (file: string, _options: unknown, command: Command) => {
      await train(file, command.args.slice(1));
    });
  cli
    .command('merge-adapter')
    .description('Merge a PEFT adapter into its base model and save the result in HF layout')
    .requiredOption('--adapter <dir>', 'the adapter folder (adapter_config.json + adapter_model.safetensors)')
    .requiredOption('--base <dir>', 'the base checkpoint folder')
    .requiredOption('--output <dir>', 'where the merged checkpoint goes (must be empty or absent)')
    .action(mergeAdapter);
  registerBuildCommand(cli);
  registerEval(cli);
  registerData(cli);
  registerLaunchCommand(cli);
  return cli;
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  try {
    await program().parseAsync([...argv]);
  } catch (error) {
    process.stderr.write(`vlalign: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
