// Command-line flags: `vlalign train RECIPE --key value ...` with known keys given wrong values,
// misspelt or unknown keys, flags without values or without dashes, and `merge-adapter` with
// missing or broken folders, run through the CLI's main() in-process. The recipe names a model
// folder that does not exist, so accepted flags stop at loading it (counted ok) and nothing trains.
// main() reports an error as one stderr line and exit code 1; a clean line names the flag, the
// recipe file or the folder at fault.
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { main } from '../../../dist/cli/main.js';
import { HOSTILE_VALUES } from '../rng.mjs';
import { RECIPES, recipeFolder } from './recipe_copy.mjs';

const KNOWN = [
  'learning_rate',
  'max_steps',
  'beta',
  'loss_type',
  'per_device_train_batch_size',
  'lr_scheduler_type',
  'gradient_accumulation_steps',
  'seed',
  'torch_dtype',
  'trainer',
  'dataset',
  'peft',
  'save_steps',
  'report_to',
  'max_length',
  'warmup_ratio',
  'output_dir',
  'model_name_or_path',
  'processor',
  'weight_decay',
];
const VALUES = [
  '1e-5',
  '0',
  '-1',
  'abc',
  '[1, 2]',
  '{a: 1}',
  'null',
  'true',
  '1.5',
  '',
  '[',
  'sigmoid',
  '2147483648',
  '{format: mmpr}',
];

function flag(rng) {
  const key = rng.chance(0.8)
    ? rng.pick(KNOWN)
    : rng.pick(['learning-rate', 'lerning_rate', 'LR', 'x', 'dataset.path', '']);
  const value = rng.chance(0.7) ? rng.pick(VALUES) : String(rng.pick(HOSTILE_VALUES));
  switch (rng.int(6)) {
    case 0:
      return { args: [`--${key}=${value}`], key };
    case 1:
      return { args: [`--${key}`], key };
    case 2:
      return { args: [key, value], key };
    default:
      return { args: [`--${key}`, value], key };
  }
}

class Exit extends Error {
  constructor(code) {
    super(`process.exit(${code})`);
    this.code = code;
  }
}

// main() with stderr captured and process.exit turned into a throw (commander exits on a usage error).
async function runMain(argv) {
  const { write } = process.stderr;
  const { exit } = process;
  let stderr = '';
  process.stderr.write = (chunk) => {
    stderr += String(chunk);
    return true;
  };
  process.exit = (code) => {
    throw new Exit(code ?? 0);
  };
  process.exitCode = 0;
  try {
    await main(['node', 'vlalign', ...argv]);
  } finally {
    process.stderr.write = write;
    process.exit = exit;
  }
  const code = process.exitCode;
  process.exitCode = 0;
  return { code, stderr };
}

export async function make(rng, { corpus, dir }) {
  const noModel = path.join(dir, 'no-such-model');
  let argv;
  let names;
  if (rng.chance(0.8)) {
    const name = rng.pick(RECIPES);
    const recipe = parse(recipeFolder(corpus, dir, name));
    recipe.model_name_or_path = noModel;
    const file = path.join(dir, name);
    fs.writeFileSync(file, stringify(recipe));
    const flags = Array.from({ length: rng.between(1, 3) }, () => flag(rng));
    argv = ['train', file, ...flags.flatMap((f) => f.args)];
    names = [file, ...flags.map((f) => f.key).filter((k) => k.length > 0)];
  } else {
    const options = {
      '--adapter': path.join(dir, 'adapter'),
      '--base': path.join(corpus, 'qwen2_vl'),
      '--output': path.join(dir, 'out'),
    };
    fs.mkdirSync(options['--adapter']);
    if (rng.chance(0.5))
      fs.writeFileSync(
        path.join(options['--adapter'], 'adapter_config.json'),
        rng.pick(['{}', '{', '[]', '{"r": -1}']),
      );
    if (rng.chance(0.3)) options[rng.pick(Object.keys(options))] = rng.pick(['', '/nonexistent', corpus]);
    const dropped = rng.chance(0.3) ? rng.pick(Object.keys(options)) : null;
    argv = [
      'merge-adapter',
      ...Object.entries(options)
        .filter(([k]) => k !== dropped)
        .flat(),
    ];
    // A folder names itself; an emptied or dropped one is named by its flag.
    const flagged = Object.entries(options).map(([k, v]) => (v.length > 0 ? v : k));
    names = [...flagged, ...(dropped ? [dropped] : [])];
  }
  return {
    what: `vlalign ${argv.map((a) => (path.relative(dir, a).startsWith('..') ? a : path.relative(dir, a))).join(' ')}`,
    names,
    run: async () => {
      const { code, stderr } = await runMain(argv);
      if (code === 0 || stderr.includes(noModel)) return; // accepted: stopped at the stand-in model
      throw new Error(stderr.trim() || `exit code ${code} without a message`);
    },
  };
}
