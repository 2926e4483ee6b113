// The meta.json entry that makes a pipeline's output an MMPR dataset (InternVL's meta format:
// `{name: {root, annotation, data_augment, repeat_time, length}}`, paths relative to the meta
// file's folder, as lib/data/mmpr.ts reads them). Other entries of an existing meta.json stay; the
// file is replaced atomically, so a reader never sees half of it.
import fs from 'node:fs';
import path from 'node:path';
import { writeAtomic } from '../util/atomic_write.js';

export interface MetaEntry {
  /** Folder the rows' image paths are relative to. */
  root: string;
  /** The jsonl file. */
  annotation: string;
  /** Rows in the annotation file. */
  length: number;
}

/** Adds (or replaces) entry `name` of `metaFile`. */
export function writeMetaEntry(metaFile: string, name: string, entry: MetaEntry): void {
  const meta = readMeta(metaFile);
  const base = path.dirname(path.resolve(metaFile));
  const relative = (p: string) => path.relative(base, path.resolve(p)) || '.';
  meta[name] = {
    root: relative(entry.root),
    annotation: relative(entry.annotation),
    data_augment: false,
    repeat_time: 1,
    length: entry.length,
  };
  fs.mkdirSync(base, { recursive: true });
  writeAtomic(metaFile, `${JSON.stringify(meta, null, 2)}\n`);
}

function readMeta(metaFile: string): Record<string, unknown> {
  if (!fs.existsSync(metaFile)) return {};
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
  } catch (error) {
    throw new Error(`${metaFile}: not valid JSON (${(error as Error).message}); fix or remove it`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${metaFile}: a meta.json is an object of datasets`);
  }
  return value as Record<string, unknown>;
}
