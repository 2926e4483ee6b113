// JSON (and text) files: reading with errors that name the file (and the line and column of a JSON
// syntax error), writing through the shared atomic writer.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { writeAtomic } from './atomic_write.js';

export type JsonObject = Record<string, unknown>;

/** JSON.parse, with a syntax error that names `source` and, where the engine gives it, line:column. */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const message = (error as Error).message;
    const offset = errorOffset(message, text);
    const where = offset === undefined ? source : `${source}:${lineColumn(text, offset)}`;
    throw new SyntaxError(`${where}: invalid JSON: ${message}`, { cause: error });
  }
}

// V8 names the offset in most messages; "Unexpected token 'x', "..." is not valid JSON" quotes the text instead.
function errorOffset(message: string, text: string): number | undefined {
  const position = /at position (\d+)/.exec(message)?.[1];
  if (position !== undefined) return Number(position);
  return /end of JSON input/.test(message) ? text.length : undefined;
}

/** 1-based `line:column` of a character offset. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `${line}:${offset - before.lastIndexOf('\n')}`;
}

/** The parsed JSON of `file`. */
export function readJsonFile(file: string): unknown {
  return parseJson(readText(file), file);
}

/** The parsed JSON of `file`, which must be an object. */
export function readJsonObject(file: string): JsonObject {
  return asObject(readJsonFile(file), file);
}

/** readJsonFile without blocking; null when the file does not exist. */
export async function readOptionalJsonFile(file: string): Promise<unknown> {
  const text = await readOptionalTextFile(file);
  return text === null ? null : parseJson(text, file);
}

/** The UTF-8 text of `file`, or null when it does not exist; other failures name the file. */
export async function readOptionalTextFile(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw cannotRead(file, error);
  }
}

/** `value` when it is a JSON object; `source` names it in the error. */
export function asObject(value: unknown, source: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const found = Array.isArray(value) ? 'an array' : JSON.stringify(value);
    throw new TypeError(`${source}: expected a JSON object, found ${found}`);
  }
  return value as JsonObject;
}

/** Writes `value` as indented JSON with a final newline, atomically. */
export function writeJsonFile(file: string, value: unknown): void {
  writeAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw cannotRead(file, error);
  }
}

const cannotRead = (file: string, error: unknown): Error =>
  new Error(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
