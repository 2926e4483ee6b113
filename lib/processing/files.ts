// Reading a checkpoint directory's JSON files, with errors that name the file.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readOptionalJsonFile, readOptionalTextFile } from '../util/json_file.js';

/** True when `dir/name` exists and is a regular file. */
export async function hasFile(dir: string, name: string): Promise<boolean> {
  try {
    return (await stat(join(dir, name))).isFile();
  } catch {
    return false;
  }
}

/** The text of `dir/name`, or null when the file does not exist. */
export const readOptionalText = (dir: string, name: string): Promise<string | null> =>
  readOptionalTextFile(join(dir, name));

/** The parsed JSON of `dir/name`, or null when the file does not exist. */
export const readOptionalJson = (dir: string, name: string): Promise<unknown> => readOptionalJsonFile(join(dir, name));

/** The parsed JSON of `dir/name`; `why` says what needs it when the file is missing. */
export async function readJson(dir: string, name: string, why: string): Promise<unknown> {
  const json = await readOptionalJson(dir, name);
  if (json === null) throw new Error(`${join(dir, name)} not found: ${why}`);
  return json;
}
