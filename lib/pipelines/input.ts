// Reading a pipeline's input jsonl one line at a time (files of millions of rows never sit in
// memory), and the row checks every pipeline shares; a bad row's error names its file and line.
import fs from 'node:fs';
import readline from 'node:readline';
import { DataError, type RecordSource } from '../data/records.js';

export interface InputRow {
  row: Record<string, unknown>;
  source: RecordSource;
}

/** The rows of a jsonl file in order (blank lines skipped, still counted in line numbers). */
export async function* readJsonlRows(file: string): AsyncGenerator<InputRow> {
  if (!fs.existsSync(file)) throw new Error(`input file ${file} does not exist`);
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let line = 0;
  for await (const text of lines) {
    line += 1;
    if (text.trim() === '') continue;
    const source = { file, line };
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (error) {
      throw new DataError(source, `not valid JSON (${(error as Error).message})`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new DataError(source, 'a row must be a JSON object');
    }
    yield { row: row as Record<string, unknown>, source };
  }
}

/** A string field, refused by name when missing or of another type. */
export function textField(row: Record<string, unknown>, key: string, source: RecordSource): string {
  const value = row[key];
  if (typeof value !== 'string') {
    throw new DataError(source, `"${key}" must be a string, got ${value === undefined ? 'nothing' : typeof value}`);
  }
  return value;
}

/** `image` as MMPR's scripts take it: absent / null / empty (text only), one path or a list of paths. */
export function imageField(row: Record<string, unknown>, source: RecordSource): string[] {
  const value = row.image;
  if (value === undefined || value === null || value === '') return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '')) return value as string[];
  throw new DataError(source, '"image" must be a path or a list of paths');
}

/** Python's `str()` of an `image` value, as MMPR's keys use it (lists as `['a.jpg', 'b.jpg']`). */
export function pythonStr(value: unknown): string {
  if (value === undefined || value === null) return 'None';
  if (typeof value === 'string') return value;
  if (Array.isArray(value))
    return `[${value.map((v) => (typeof v === 'string' ? pythonRepr(v) : pythonStr(v))).join(', ')}]`;
  return String(value);
}

function pythonRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('\t', '\\t');
  return quote + (quote === "'" ? escaped.replaceAll("'", "\\'") : escaped) + quote;
}
