// Reading a checkpoint directory's JSON files, with errors that name the file.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson } from '../util/json_file.js';

/** True when `dir/name` exists and is a regular file. */
export async function hasFile(dir: string, name: string): Promise<boolean> {
  try {
    return (await stat(join(dir, name))).isFile();
  } catch {
    return false;
  }
}

/** The text of `dir/name`, or null when the file does not exist. */
export async function readOptionalText(dir: string, name: string): Promise<string | null> {
  const file = join(dir, name);
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
}

/** The parsed JSON of `dir/name`, or null when the file does not exist. */
export async function readOptionalJson(dir: string, name: string): Promise<unknown> {
  const text = await readOptionalText(dir, name);
  if (text === null) return null;
  return parseJson(text, join(dir, name));
}

/** The parsed JSON of `dir/name`; `why` says what needs it when the file is missing. */
export async function readJson(dir: string, name: string, why: string): Promise<unknown> {
  const json = await readOptionalJson(dir, name);
  if (json === null) throw new Error(`${join(dir, name)} not found: ${why}`);
  return json;
}
