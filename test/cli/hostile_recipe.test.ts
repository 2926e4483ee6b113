// Hostile recipe YAML and flag values (issue #17, found by `npm run fuzz`): deep flow nesting is
// refused before the yaml parser (whose time grows faster than linearly with it) runs, an alias bomb
// and an unparsable flag value are refused naming the recipe and the flag, within a bounded time;
// merge-adapter names an empty folder flag.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { loadRecipe } from '../../lib/cli/recipe.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-hostile-recipe-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const sft = readFileSync(join(import.meta.dirname, '../../examples/recipes/sft.yaml'), 'utf8');
const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function recipe(name: string, text: string): string {
  const file = join(root, name);
  writeFileSync(file, text);
  return file;
}

// The error, and the milliseconds loadRecipe took to throw it.
function refusal(file: string, flags: string[] = []): { message: string; ms: number } {
  const start = performance.now();
  try {
    loadRecipe(file, flags);
  } catch (error) {
    return { message: (error as Error).message, ms: performance.now() - start };
  }
  throw new Error(`${file} was accepted`);
}

describe('hostile recipes', () => {
  it('the unedited recipe loads, and a flag with a flow value', () => {
    const file = recipe('ok.yaml', sft);
    expect(loadRecipe(file).args.maxSteps).toBe(3);
    expect(loadRecipe(file, ['--report_to', '[tensorboard]']).args.reportTo).toEqual(['tensorboard']);
  });

  it.each([
    ['100,000 deep, never closed', `${'['.repeat(100_000)}`],
    ['100,000 deep and closed', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
    ['65 deep in mappings', `${'{a: '.repeat(65)}1${'}'.repeat(65)}`],
  ])('refuses flow nesting %s at once, naming the file and the line', (_, nest) => {
    const file = recipe('deep.yaml', `${sft}deep: ${nest}\n`);
    const { message, ms } = refusal(file);
    const line = sft.split('\n').length;
    expect(message).toMatch(
      new RegExp(`^${escaped(file)}: invalid line ${line}: \\[ \\] / \\{ \\} nested \\d+ deep \\(limit 64\\)`),
    );
    expect(ms).toBeLessThan(1000);
  });

  it('refuses an alias bomb naming the file', () => {
    const bomb =
      'a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n';
    const { message } = refusal(recipe('bomb.yaml', bomb + sft));
    expect(message).toMatch(
      new RegExp(`^${escaped(join(root, 'bomb.yaml'))}: invalid \\(root\\): Excessive alias count`),
    );
  });

  it('refuses a recipe over 1 MiB naming the file', () => {
    const { message } = refusal(recipe('long.yaml', `${sft}# ${'x'.repeat(1 << 20)}\n`));
    expect(message).toMatch(/long\.yaml: invalid \(root\): \d+ characters is too long for a recipe \(limit 1048576\)/);
  });

  // Fuzz run 3: cross-field checks named the other key in the API's camelCase ("lossWeights has 3
  // entries but lossType has 1"); a recipe's error names the keys as the YAML spells them.
  it('a cross-field error names the keys in snake_case', () => {
    const recipes = join(import.meta.dirname, '../../examples/recipes');
    const mpo = readFileSync(join(recipes, 'shapes-mpo.yaml'), 'utf8').replace(/^loss_type:.*\n/m, '');
    expect(refusal(recipe('mpo.yaml', mpo)).message).toMatch(
      /invalid loss_weights: loss_weights has 3 entries but loss_type has 1$/,
    );
    const grpo = readFileSync(join(recipes, 'shapes-grpo.yaml'), 'utf8');
    expect(refusal(recipe('grpo.yaml', grpo), ['--reward_weights', '[1, 2]']).message).toMatch(
      /invalid reward_weights: reward_weights has 2 entries but reward_funcs has 1/,
    );
  });

  it('names the flag whose value does not parse, or nests too deep', () => {
    const file = recipe('flags.yaml', sft);
    expect(refusal(file, ['--report_to', '[']).message).toMatch(
      new RegExp(`^${escaped(file)}: invalid --report_to: cannot parse "\\[": Flow sequence must end with a \\]`),
    );
    expect(refusal(file, [`--report_to=${'['.repeat(5000)}`]).message).toMatch(
      /invalid --report_to: \[ \] \/ \{ \} nested 5000 deep \(limit 64\)/,
    );
  });
});

describe('vlalign merge-adapter with empty folders', () => {
  it.each(['adapter', 'base', 'output'])('names --%s when it is empty', async (flag) => {
    const folders: Record<string, string> = {
      adapter: join(root, 'a'),
      base: join(root, 'b'),
      output: join(root, 'o'),
    };
    folders[flag] = '';
    const previous = process.exitCode;
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => errors.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      const flags = Object.entries(folders).flatMap(([k, v]) => [`--${k}`, v]);
      await main(['node', 'vlalign', 'merge-adapter', ...flags]);
    } finally {
      process.stderr.write = write;
    }
    expect(process.exitCode).toBe(1);
    process.exitCode = previous;
    expect(errors).toEqual([`vlalign: --${flag} is empty: give a folder\n`]);
  });
});

// Fuzz run 3: `--model_name_or_path NaN` was refused naming the folder it resolved to (recipe
// folder + NaN), which is not what the user typed; the error now starts with the flag.
describe('vlalign train with a model folder that does not load', () => {
  async function stderrOf(argv: string[]): Promise<string[]> {
    const previous = process.exitCode;
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => errors.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      await main(['node', 'vlalign', ...argv]);
    } finally {
      process.stderr.write = write;
    }
    expect(process.exitCode).toBe(1);
    process.exitCode = previous;
    return errors;
  }

  it('names --model_name_or_path when the flag chose it, else the recipe key', async () => {
    const file = recipe('model.yaml', sft.replace(/^model_name_or_path:.*$/m, 'model_name_or_path: ./no-model'));
    const flagged = await stderrOf(['train', file, '--model_name_or_path', 'NaN']);
    expect(flagged).toEqual([
      expect.stringMatching(new RegExp(`^vlalign: --model_name_or_path: ${escaped(join(root, 'NaN'))}\\b`)),
    ]);
    const own = await stderrOf(['train', file]);
    expect(own).toEqual([
      expect.stringMatching(
        new RegExp(`^vlalign: ${escaped(file)}: model_name_or_path: ${escaped(join(root, 'no-model'))}\\b`),
      ),
    ]);
  }, 60_000);
});
