// A recipe of examples/recipes in a case folder, its `.data` linked to the fuzz corpus, so the
// relative paths it was written with resolve as they do for a user.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RECIPES_DIR = fileURLToPath(new URL('../../../examples/recipes/', import.meta.url));
export const RECIPES = fs
  .readdirSync(RECIPES_DIR)
  .filter((n) => n.endsWith('.yaml'))
  .sort();

/** The recipe's text, and the folder it will be written to with `.data` linked. */
export function recipeFolder(corpus, dir, name) {
  fs.symlinkSync(corpus, path.join(dir, '.data'));
  return fs.readFileSync(path.join(RECIPES_DIR, name), 'utf8');
}
