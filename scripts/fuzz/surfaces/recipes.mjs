// Recipe YAML: the example recipes with a key given a wrong type or value, misspelt, removed or
// added, nested blocks (dataset, peft, quantization, processor) broken the same way, the text
// mangled, and YAML's own hazards (alias bombs, deep nesting, tags, merge keys); checked with
// loadRecipe (parsing and validation, no model or data loaded). A clean error names the file and,
// when the case broke one key, that key.
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { loadRecipe } from '../../../dist/cli/recipe.js';
import { HOSTILE_VALUES, mutateText } from '../rng.mjs';
import { RECIPES, recipeFolder } from './recipe_copy.mjs';

const BLOCKS = ['dataset', 'peft', 'quantization', 'processor'];
const HAZARDS = [
  () =>
    `a: &a ["x","x","x","x","x","x","x","x","x"]\n${Array.from({ length: 9 }, (_, k) => `${String.fromCharCode(98 + k)}: &${String.fromCharCode(98 + k)} [*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)},*${String.fromCharCode(97 + k)}]`).join('\n')}\n`,
  (rng) => `deep: ${'['.repeat(rng.pick([100, 5000, 100000]))}${']'.repeat(rng.pick([100, 5000, 100000]))}\n`,
  () => 'learning_rate: !!js/function "function () { return 1 }"\n',
  () => 'learning_rate: !!binary aGVsbG8=\n',
  () => 'base: &base {learning_rate: 0.1}\n<<: *base\n',
  () => 'learning_rate: 1\nlearning_rate: 2\n',
  () => 'trainer: dpo\ntrainer: sft\n',
  () => '? [a, b]\n: complex key\n',
  () => '--- \nsecond: document\n',
  () => `long_key_${'x'.repeat(100000)}: 1\n`,
  () => '\t- tab indented\n',
];

// A misspelling the nearest-key suggestion should catch: swapped letters, camelCase, a dropped letter.
function misspell(rng, key) {
  const k = rng.int(Math.max(1, key.length - 1));
  switch (rng.int(3)) {
    case 0:
      return key.slice(0, k) + key[k + 1] + key[k] + key.slice(k + 2);
    case 1:
      return key.replace(/_(\w)/g, (_, c) => c.toUpperCase()) + (key.includes('_') ? '' : 'X');
    default:
      return key.slice(0, k) + key.slice(k + 1) || 'x';
  }
}

function breakKey(rng, recipe) {
  const blocks = BLOCKS.filter((b) => recipe[b] !== null && typeof recipe[b] === 'object');
  const [holder, prefix] = blocks.length > 0 && rng.chance(0.3) ? [recipe[rng.pick(blocks)], 'block'] : [recipe, 'top'];
  const keys = Object.keys(holder);
  const key = keys.length > 0 ? rng.pick(keys) : 'fresh_key';
  const edit = rng.int(4);
  if (edit === 0 || edit === 1) holder[key] = structuredClone(rng.pick(HOSTILE_VALUES));
  else if (edit === 2) delete holder[key];
  else {
    holder[misspell(rng, key)] = holder[key];
    delete holder[key];
    return { key: misspell(rng, key) === key ? key : null, what: `${prefix} ${key} misspelt` };
  }
  return { key, what: `${prefix} ${key} ${['hostile', 'hostile', 'removed'][edit]}: ${JSON.stringify(holder[key])}` };
}

export async function make(rng, { corpus, dir }) {
  const name = rng.pick(RECIPES);
  const text = recipeFolder(corpus, dir, name);
  const file = path.join(dir, name);
  const shape = rng.int(10);
  let what;
  let key = null;
  if (shape < 6) {
    const recipe = parse(text);
    ({ key, what } = breakKey(rng, recipe));
    fs.writeFileSync(file, stringify(recipe));
  } else if (shape < 8) {
    fs.writeFileSync(file, mutateText(rng, text), 'latin1');
    what = 'text mutated';
  } else {
    const hazard = rng.pick(HAZARDS)(rng);
    fs.writeFileSync(file, rng.chance(0.5) ? text + hazard : hazard + text);
    what = `YAML hazard: ${hazard.slice(0, 80).replaceAll('\n', '\\n')}`;
  }
  return {
    what: `${name}: ${what}`,
    names: [file],
    alsoNames: key === null ? [] : [key],
    run: () => {
      loadRecipe(file);
    },
  };
}
