// JSON files: errors name the file (and the line and column of a syntax error); writes are atomic.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  parseJson,
  readJsonFile,
  readJsonObject,
  readOptionalJsonFile,
  readOptionalTextFile,
  writeJsonFile,
} from '../../lib/util/index.js';

const dir = mkdtempSync(join(tmpdir(), 'vlalign-json-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fileWith = (name: string, text: string): string => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};

describe('reading', () => {
  it('parses a file', async () => {
    const file = fileWith('ok.json', '{"a": [1, 2]}');
    expect(readJsonFile(file)).toEqual({ a: [1, 2] });
    expect(await readOptionalJsonFile(file)).toEqual({ a: [1, 2] });
  });

  it('names the file, line and column of a syntax error', () => {
    const file = fileWith('comma.json', '{\n  "a": 1,\n}');
    // The offending '}' is the first character of line 3.
    expect(() => readJsonFile(file)).toThrow(new RegExp(`^${file}:3:1: invalid JSON: `));
    expect(() => parseJson('[1, 2', 'x.json')).toThrow(/^x\.json:1:6: invalid JSON/);
    expect(() => parseJson('{"a": }', 'y.json')).toThrow(/^y\.json(:\d+:\d+)?: invalid JSON/);
  });

  it('names a missing or non-object file', async () => {
    const missing = join(dir, 'missing.json');
    expect(() => readJsonFile(missing)).toThrow(`cannot read ${missing}`);
    expect(await readOptionalJsonFile(missing)).toBeNull();
    expect(await readOptionalTextFile(missing)).toBeNull();
    await expect(readOptionalTextFile(dir)).rejects.toThrow(`cannot read ${dir}: EISDIR`);
    const list = fileWith('list.json', '[1]');
    expect(() => readJsonObject(list)).toThrow(`${list}: expected a JSON object, found an array`);
  });
});

describe('writeJsonFile', () => {
  it('writes indented JSON with a final newline and leaves no temp file', () => {
    const sub = mkdtempSync(join(dir, 'write-'));
    const file = join(sub, 'state.json');
    writeJsonFile(file, { step: 3, lrs: [0.1] });
    expect(readFileSync(file, 'utf8')).toBe('{\n  "step": 3,\n  "lrs": [\n    0.1\n  ]\n}\n');
    expect(readdirSync(sub)).toEqual(['state.json']);
  });
});
