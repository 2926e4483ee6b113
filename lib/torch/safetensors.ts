// The safetensors checkpoint format: an 8-byte little-endian header length, a JSON header, then the
// raw little-endian tensor bytes. Files are never read whole (checkpoints exceed 2 GiB): the header
// is read by position and each tensor is pread by the addon straight into its storage.
import fs from 'node:fs';
import path from 'node:path';
import { writeAll, writeFileAtomic } from '../util/atomic_write.js';
import { checkDevice, type Device } from './args.js';
import { dtypeCode, ELEMENT_SIZE, type DType } from './dtype.js';
import { native as N } from './native.js';
import { Tensor, wrap } from './tensor.js';

export interface SafetensorsMetadata {
  [key: string]: string;
}
export interface SafetensorsTensorInfo {
  dtype: DType;
  shape: number[];
  dataOffsets: [number, number];
}
export interface SafetensorsHeader {
  tensors: Record<string, SafetensorsTensorInfo>;
  metadata: SafetensorsMetadata | null;
  /** Absolute file offset of the data section, which data_offsets are relative to. */
  dataStart: number;
}

const FROM_TAG: Record<string, DType> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};
const TAG = Object.fromEntries(Object.entries(FROM_TAG).map(([tag, dtype]) => [dtype, tag])) as Record<DType, string>;
// The Rust safetensors crate's Dtype enum order (increasing alignment). Writers sort by it
// descending, so with an 8-byte-padded header every tensor's bytes are aligned to its element size.
const ALIGNMENT_RANK: DType[] = [
  'bool',
  'uint8',
  'int8',
  'int16',
  'float16',
  'bfloat16',
  'int32',
  'float32',
  'float64',
  'int64',
];
const MAX_HEADER = 100_000_000; // the Python library's limit
const METADATA_KEY = '__metadata__';

const fail = (file: string, what: string, cause?: unknown): Error =>
  new Error(`safetensors: ${file}: ${what}`, cause === undefined ? undefined : { cause });
const cannotOpen = (file: string, error: unknown): Error =>
  fail(file, `cannot open (${(error as NodeJS.ErrnoException).code ?? String(error)})`, error);
// Runs `parse`, turning its exception into a refusal that names the file.
function attempt<T>(file: string, what: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw fail(file, `${what} (${(error as Error).message})`, error);
  }
}
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const nonStringKey = (o: Record<string, unknown>): string | undefined =>
  Object.keys(o).find((k) => typeof o[k] !== 'string');

// ---- reading ------------------------------------------------------------------------------------

async function withFile<T>(file: string, use: (fh: fs.promises.FileHandle) => Promise<T>): Promise<T> {
  const fh = await fs.promises.open(file, 'r').catch((error: unknown) => {
    throw cannotOpen(file, error);
  });
  try {
    return await use(fh);
  } finally {
    await fh.close();
  }
}

async function readAt(fh: fs.promises.FileHandle, file: string, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  // The size was checked first, so a short read (regular files give one only at EOF) means truncation.
  const { bytesRead } = await fh.read(buffer, 0, length, position);
  if (bytesRead !== length) throw fail(file, 'file was truncated while reading the header');
  return buffer;
}

async function readHeader(fh: fs.promises.FileHandle, file: string): Promise<SafetensorsHeader> {
  const { size } = await fh.stat();
  if (size < 8) throw fail(file, `file is ${size} bytes, too short for the 8-byte header length`);
  const n = (await readAt(fh, file, 8, 0)).readBigUInt64LE(0);
  if (n === 0n) throw fail(file, 'header length is 0');
  if (n > BigInt(MAX_HEADER)) throw fail(file, `header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  if (n > BigInt(size - 8)) throw fail(file, `header length ${n} runs past the end of the ${size}-byte file`);
  const headerLength = Number(n);
  const bytes = await readAt(fh, file, headerLength, 8);
  // ignoreBOM keeps a BOM in the text, so JSON.parse refuses it as the Python library does.
  const text = attempt(file, 'header is not valid UTF-8', () =>
    new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes),
  );
  const json: unknown = attempt(file, 'header is not valid JSON', () => JSON.parse(text));
  if (!isObject(json)) throw fail(file, 'header is not a JSON object');
  const duplicate = firstDuplicateKey(text);
  if (duplicate !== undefined) throw fail(file, `header repeats the key '${duplicate}'`);
  return parseHeader(file, json, 8 + headerLength, size - 8 - headerLength);
}

/**
 * The first key that appears twice in one object of `text` (valid JSON), or undefined. JSON.parse
 * silently keeps the last value of a repeated key; the reference reader refuses the file. Keys are
 * compared after unescaping, so "a" and "\u0061" are the same key.
 */
export function firstDuplicateKey(text: string): string | undefined {
  const stack: Array<Set<string> | null> = []; // one entry per open object (its keys) or array (null)
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = endOfString(text, i);
      const top = stack[stack.length - 1];
      if (top && expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return undefined;
}

// Index of the quote closing the string that opens at `start`.
function endOfString(text: string, start: number): number {
  let i = start + 1;
  while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
  return i;
}

function parseHeader(
  file: string,
  json: Record<string, unknown>,
  dataStart: number,
  dataLength: number,
): SafetensorsHeader {
  let metadata: SafetensorsMetadata | null = null;
  const entries: Array<[string, SafetensorsTensorInfo]> = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY)
      metadata = value === null ? null : parseMetadata(file, value); // null: serde's None
    else entries.push([name, parseEntry(file, name, value, dataLength)]);
  }
  checkTiling(file, entries, dataLength);
  return { tensors: Object.fromEntries(entries), metadata, dataStart };
}

function parseMetadata(file: string, value: unknown): SafetensorsMetadata {
  if (!isObject(value)) throw fail(file, `${METADATA_KEY} is not an object`);
  const key = nonStringKey(value);
  if (key !== undefined) throw fail(file, `${METADATA_KEY} value for key '${key}' is not a string`);
  return value as SafetensorsMetadata;
}

function parseEntry(file: string, name: string, entry: unknown, dataLength: number): SafetensorsTensorInfo {
  const bad = (what: string): Error => fail(file, `tensor '${name}': ${what}`);
  if (!isObject(entry)) throw bad('entry is not an object');
  const { dtype: tag, shape, data_offsets: offsets } = entry;
  if (typeof tag !== 'string') throw bad('dtype is missing or not a string');
  const dtype = Object.hasOwn(FROM_TAG, tag) ? FROM_TAG[tag]! : undefined;
  if (dtype === undefined) throw bad(`unsupported dtype '${tag}'`);
  if (!Array.isArray(shape)) throw bad('shape is missing or not an array');
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw bad(`shape ${JSON.stringify(shape)} must hold non-negative integers`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isSafeInteger)) {
    throw bad('data_offsets is missing or not [begin, end] integers');
  }
  const [begin, end] = offsets as [number, number];
  if (begin < 0 || end < begin) throw bad(`data_offsets [${begin}, ${end}] must satisfy 0 <= begin <= end`);
  if (end > dataLength) throw bad(`data_offsets end ${end} is beyond the ${dataLength}-byte data section`);
  if (elementCountOverflows(shape as number[]))
    throw bad(`shape ${JSON.stringify(shape)} overflows a 64-bit element count`);
  const nbytes = (shape as number[]).reduce((a, d) => a * d, 1) * ELEMENT_SIZE[dtype];
  if (end - begin !== nbytes) throw bad(`data_offsets span ${end - begin} bytes but shape and dtype need ${nbytes}`);
  return { dtype, shape: shape as number[], dataOffsets: [begin, end] };
}

// The reference reader multiplies the dims in order, refusing the file when a partial product leaves
// 64 bits (libtorch does the same, with a less helpful message); a later 0 does not undo that. Any
// other zero-element shape is valid however large its other dims.
function elementCountOverflows(shape: readonly number[]): boolean {
  let count = 1n;
  for (const d of shape) {
    count *= BigInt(d);
    if (count >= 1n << 64n) return true;
  }
  return false;
}

// Like the Python library, the ranges sorted by offset must tile the data section exactly:
// overlaps, holes and trailing bytes are all refused.
function checkTiling(file: string, entries: Array<[string, SafetensorsTensorInfo]>, dataLength: number): void {
  const sorted = entries
    .map(([name, info]) => [name, ...info.dataOffsets] as const)
    .sort((a, b) => a[1] - b[1] || a[2] - b[2]);
  let cursor = 0;
  let previous = '';
  for (const [name, begin, end] of sorted) {
    if (begin < cursor) throw fail(file, `tensor '${name}' overlaps tensor '${previous}' (bytes ${begin}..${cursor})`);
    if (begin > cursor)
      throw fail(
        file,
        `hole in the data section: bytes ${cursor}..${begin} before tensor '${name}' belong to no tensor`,
      );
    cursor = end;
    previous = name;
  }
  if (cursor !== dataLength)
    throw fail(file, `${dataLength - cursor} trailing bytes after the last tensor belong to no tensor`);
}

function readTensor(
  fd: number,
  file: string,
  name: string,
  info: SafetensorsTensorInfo,
  dataStart: number,
  device: Device,
): Tensor {
  const read = (): Tensor => wrap(N.readTensor(fd, dataStart + info.dataOffsets[0], dtypeCode(info.dtype), info.shape));
  const t = attempt(file, `tensor '${name}': cannot read`, read);
  if (device === 'cpu') return t;
  try {
    return t.to({ device });
  } finally {
    t.dispose();
  }
}

// Adds `names` (every tensor when null) from one file, opened once, to `out`.
function loadInto(
  out: Map<string, Tensor>,
  file: string,
  device: Device,
  names: string[] | null,
  indexFile?: string,
): Promise<void> {
  return withFile(file, async (fh) => {
    const header = await readHeader(fh, file);
    for (const name of names ?? Object.keys(header.tensors)) {
      const info = Object.hasOwn(header.tensors, name) ? header.tensors[name] : undefined;
      if (info === undefined)
        throw fail(file, `tensor '${name}' listed in ${indexFile}'s weight_map is not in this shard`);
      out.set(name, readTensor(fh.fd, file, name, info, header.dataStart, device));
    }
  });
}

// The index's weight_map grouped by shard, each shard resolved next to the index and opened once.
async function loadSharded(out: Map<string, Tensor>, indexFile: string, device: Device): Promise<string[]> {
  const text = await fs.promises.readFile(indexFile, 'utf8').catch((error: unknown) => {
    throw cannotOpen(indexFile, error);
  });
  const json: unknown = attempt(indexFile, 'index is not valid JSON', () => JSON.parse(text));
  const weightMap = isObject(json) ? json.weight_map : undefined;
  if (!isObject(weightMap)) throw fail(indexFile, 'index has no weight_map object');
  const dir = path.dirname(path.resolve(indexFile));
  const shards = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    const shardPath = typeof shard === 'string' ? path.resolve(dir, shard) : '';
    if (!shardPath.startsWith(dir + path.sep))
      throw fail(indexFile, `weight_map entry for '${name}' is not a file name inside ${dir}`);
    shards.set(shardPath, [...(shards.get(shardPath) ?? []), name]);
  }
  for (const [shard, names] of shards) {
    // The shard's path alone does not say which file asked for it: name the index and the entry too.
    await fs.promises.access(shard, fs.constants.R_OK).catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw fail(shard, `cannot open (${code}), named by ${indexFile}'s weight_map for '${names[0]}'`, error);
    });
    await loadInto(out, shard, device, names, indexFile);
  }
  return Object.keys(weightMap);
}

// A directory holds either a sharded checkpoint (its index) or a single model.safetensors.
async function resolveSource(file: string): Promise<{ index: boolean; file: string }> {
  const stat = await fs.promises.stat(file).catch((error: unknown) => {
    throw cannotOpen(file, error);
  });
  if (!stat.isDirectory()) return { index: file.endsWith('.index.json'), file };
  for (const [name, index] of [
    ['model.safetensors.index.json', true],
    ['model.safetensors', false],
  ] as const) {
    if (fs.existsSync(path.join(file, name))) return { index, file: path.join(file, name) };
  }
  throw fail(file, 'directory holds neither model.safetensors.index.json nor model.safetensors');
}

/** The parsed, validated header of a .safetensors file (no tensor data is read). */
export function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  return withFile(file, (fh) => readHeader(fh, file));
}

/** Loads a .safetensors file, or a sharded checkpoint from its directory or *.index.json. */
export async function loadSafetensors(
  file: string,
  options: { device?: Device } = {},
): Promise<Record<string, Tensor>> {
  const device = checkDevice(options.device ?? 'cpu');
  const source = await resolveSource(file);
  const out = new Map<string, Tensor>();
  try {
    if (!source.index) await loadInto(out, source.file, device, null);
    const order = source.index ? await loadSharded(out, source.file, device) : [...out.keys()];
    return Object.fromEntries(order.map((name) => [name, out.get(name)!]));
  } catch (error) {
    for (const t of out.values()) t.dispose(); // a failed load leaks nothing
    throw error;
  }
}

// ---- writing ------------------------------------------------------------------------------------

// Sorted as the Python library writes: by dtype alignment descending, then by name as UTF-8 bytes.
function layout(tensors: Record<string, Tensor>): Array<[string, Tensor, DType]> {
  const entries = Object.entries(tensors).map(([name, t]): [string, Tensor, DType] => {
    if (!Tensor.isTensor(t)) throw new TypeError(`saveSafetensors: '${name}' is not a Tensor`);
    if (t.isDisposed) throw new TypeError(`saveSafetensors: tensor '${name}' was disposed`);
    if (name === METADATA_KEY) throw new TypeError(`saveSafetensors: '${METADATA_KEY}' cannot name a tensor`);
    return [name, t, t.dtype];
  });
  const rank = (d: DType): number => ALIGNMENT_RANK.indexOf(d);
  return entries.sort((a, b) => rank(b[2]) - rank(a[2]) || Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
}

function checkMetadata(metadata: SafetensorsMetadata): void {
  if (!isObject(metadata)) throw new TypeError('saveSafetensors: metadata must be an object of strings');
  const key = nonStringKey(metadata);
  if (key !== undefined)
    throw new TypeError(`saveSafetensors: metadata key '${key}' must map to a string, not ${typeof metadata[key]}`);
}

// JSON text built by hand: JS objects would move integer-like keys ("0", "1") first.
const jsonObject = (pairs: Array<[string, string]>): string =>
  `{${pairs.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;

function headerBytes(entries: Array<[string, Tensor, DType]>, metadata?: SafetensorsMetadata): Buffer {
  const pairs: Array<[string, string]> = [];
  if (metadata !== undefined)
    pairs.push([METADATA_KEY, jsonObject(Object.entries(metadata).map(([k, v]) => [k, JSON.stringify(v)]))]);
  let offset = 0;
  for (const [name, t, dtype] of entries) {
    const shape = t.shape;
    const end = offset + shape.reduce((a, d) => a * d, 1) * ELEMENT_SIZE[dtype];
    pairs.push([name, JSON.stringify({ dtype: TAG[dtype], shape, data_offsets: [offset, end] })]);
    offset = end;
  }
  const json = Buffer.from(jsonObject(pairs), 'utf8');
  const padded = Buffer.alloc(8 + Math.ceil(json.length / 8) * 8, ' ');
  padded.writeBigUInt64LE(BigInt(padded.length - 8), 0);
  json.copy(padded, 8);
  return padded;
}

/** Writes tensors (and string metadata) to `file` through the shared atomic writer (lib/util/atomic_write.ts). */
export async function saveSafetensors(
  file: string,
  tensors: Record<string, Tensor>,
  metadata?: SafetensorsMetadata,
): Promise<void> {
  if (metadata !== undefined) checkMetadata(metadata);
  const entries = layout(tensors);
  const header = headerBytes(entries, metadata);
  try {
    writeFileAtomic(file, (fd) => {
      writeAll(fd, header);
      for (const [, t] of entries) N.writeTensor(fd, t.handle);
    });
  } catch (error) {
    throw fail(file, `save failed: ${(error as Error).message}`, error);
  }
}
