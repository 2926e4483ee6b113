// Arrow IPC stream files (what Hugging Face `datasets` writes as `data-0000k-of-0000n.arrow`) as
// random-access rows. Opening scans the message headers only (8-byte prefix + flatbuffer metadata,
// bodies skipped), so a multi-GB shard is never read whole; a row is read with its record batch,
// whose body alone stays in memory (one batch at a time; values are built per row). Written from the Arrow columnar format spec (Message.fbs, Schema.fbs):
// messages are `0xFFFFFFFF, int32 metadata length, Message flatbuffer, body`, ended by a zero
// length; the pre-0.15 framing without the 0xFFFFFFFF marker is read too. Little-endian,
// uncompressed, non-dictionary columns of the types `datasets` writes (ints, floats, bool,
// (large) string / binary, fixed-size binary, (large / fixed-size) lists, structs, null).
import { asyncBufferFromFile, type AsyncBuffer } from 'hyparquet';

/** A column type as far as decoding needs it. */
export interface ArrowType {
  /** The Type union's name (Schema.fbs), e.g. `Int`, `Utf8`, `Struct_`. */
  name: string;
  bitWidth?: number;
  signed?: boolean;
  precision?: number;
  /** FixedSizeList's listSize, FixedSizeBinary's byteWidth. */
  size?: number;
}

export interface ArrowField {
  name: string;
  nullable: boolean;
  type: ArrowType;
  children: ArrowField[];
}

// Schema.fbs `union Type`, in order (index = type id).
const TYPE_NAMES = [
  'NONE',
  'Null',
  'Int',
  'FloatingPoint',
  'Binary',
  'Utf8',
  'Bool',
  'Decimal',
  'Date',
  'Time',
  'Timestamp',
  'Interval',
  'List',
  'Struct_',
  'Union',
  'FixedSizeBinary',
  'FixedSizeList',
  'Map',
  'Duration',
  'LargeBinary',
  'LargeUtf8',
  'LargeList',
  'RunEndEncoded',
  'BinaryView',
  'Utf8View',
  'ListView',
  'LargeListView',
];
const SUPPORTED = new Set([
  'Null',
  'Int',
  'FloatingPoint',
  'Binary',
  'Utf8',
  'Bool',
  'List',
  'Struct_',
  'FixedSizeBinary',
  'FixedSizeList',
  'LargeBinary',
  'LargeUtf8',
  'LargeList',
]);

// Message.fbs `union MessageHeader` ids and MetadataVersion V4 (the first with today's layout).
const HEADER_SCHEMA = 1;
const HEADER_DICTIONARY_BATCH = 2;
const HEADER_RECORD_BATCH = 3;
const METADATA_V4 = 3;
const CONTINUATION = 0xffffffff;

/** A read-only view of one flatbuffer table (tables, vtables, vectors, strings; little-endian). */
class FlatTable {
  constructor(
    private readonly view: DataView,
    readonly position: number,
  ) {}

  static root(bytes: Uint8Array): FlatTable {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new FlatTable(view, view.getUint32(0, true));
  }

  /** Offset of field `id` from the table start, 0 when absent (its default applies). */
  private offset(id: number): number {
    const vtable = this.position - this.view.getInt32(this.position, true);
    const entry = 4 + 2 * id;
    return entry < this.view.getUint16(vtable, true) ? this.view.getUint16(vtable + entry, true) : 0;
  }

  uint8(id: number, fallback = 0): number {
    const o = this.offset(id);
    return o === 0 ? fallback : this.view.getUint8(this.position + o);
  }

  int16(id: number, fallback = 0): number {
    const o = this.offset(id);
    return o === 0 ? fallback : this.view.getInt16(this.position + o, true);
  }

  int32(id: number, fallback = 0): number {
    const o = this.offset(id);
    return o === 0 ? fallback : this.view.getInt32(this.position + o, true);
  }

  int64(id: number, fallback = 0): number {
    const o = this.offset(id);
    return o === 0 ? fallback : readInt64(this.view, this.position + o);
  }

  bool(id: number, fallback = false): boolean {
    return this.uint8(id, fallback ? 1 : 0) !== 0;
  }

  table(id: number): FlatTable | undefined {
    const o = this.offset(id);
    if (o === 0) return undefined;
    const at = this.position + o;
    return new FlatTable(this.view, at + this.view.getUint32(at, true));
  }

  string(id: number): string | undefined {
    const vector = this.vector(id);
    if (vector === undefined) return undefined;
    const bytes = new Uint8Array(this.view.buffer, this.view.byteOffset + vector.start, vector.length);
    return TEXT.decode(bytes);
  }

  /** Start (absolute in the view) and element count of a vector field. */
  vector(id: number): { start: number; length: number } | undefined {
    const o = this.offset(id);
    if (o === 0) return undefined;
    const at = this.position + o;
    const vector = at + this.view.getUint32(at, true);
    return { start: vector + 4, length: this.view.getUint32(vector, true) };
  }

  /** The tables of a vector-of-tables field. */
  tables(id: number): FlatTable[] {
    const vector = this.vector(id);
    if (vector === undefined) return [];
    return Array.from({ length: vector.length }, (_, k) => {
      const at = vector.start + 4 * k;
      return new FlatTable(this.view, at + this.view.getUint32(at, true));
    });
  }

  /** A vector of structs of `width` int64s (FieldNode, Buffer), as numbers. */
  int64Structs(id: number, width: number): number[][] {
    const vector = this.vector(id);
    if (vector === undefined) return [];
    return Array.from({ length: vector.length }, (_, k) =>
      Array.from({ length: width }, (_, w) => readInt64(this.view, vector.start + 8 * (width * k + w))),
    );
  }
}

const TEXT = new TextDecoder();

function readInt64(view: DataView, at: number): number {
  const value = view.getBigInt64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER))
    throw new RangeError(`int64 ${value} in Arrow metadata exceeds 2^53`);
  return Number(value);
}

/** The header of one record batch and where its body lies in the file. */
interface BatchEntry {
  shard: number;
  bodyStart: number;
  bodyLength: number;
  rows: number;
  nodes: number[][];
  buffers: number[][];
  /** First row of the batch within its shard, and across all shards. */
  shardStart: number;
  globalStart: number;
}

interface Shard {
  file: string;
  buffer: AsyncBuffer;
}

export class ArrowStreamRows {
  private cached: { batch: number; rows: Promise<RowReader> } | undefined;

  private constructor(
    private readonly shards: Shard[],
    readonly fields: ArrowField[],
    private readonly batches: BatchEntry[],
    readonly length: number,
  ) {}

  /** Scans the message headers of `files` (in order); every shard must have the first one's columns. */
  static async open(files: readonly string[]): Promise<ArrowStreamRows> {
    const shards: Shard[] = [];
    const batches: BatchEntry[] = [];
    let fields: ArrowField[] | undefined;
    let total = 0;
    for (const [shard, file] of files.entries()) {
      const buffer = await asyncBufferFromFile(file);
      shards.push({ file, buffer });
      const scanned = await scanStream(file, buffer);
      if (fields === undefined) fields = scanned.fields;
      else if (JSON.stringify(scanned.fields) !== JSON.stringify(fields))
        throw new Error(`${file}: its schema differs from ${files[0]}'s`);
      let start = 0;
      for (const batch of scanned.batches) {
        batches.push({ ...batch, shard, shardStart: start, globalStart: total });
        start += batch.rows;
        total += batch.rows;
      }
    }
    return new ArrowStreamRows(shards, fields ?? [], batches, total);
  }

  columns(): string[] {
    return this.fields.map((f) => f.name);
  }

  /** Row `i` (across shards) with its file and row within that file. */
  async row(i: number): Promise<{ value: Record<string, unknown>; file: string; row: number }> {
    if (!Number.isInteger(i) || i < 0 || i >= this.length)
      throw new RangeError(`arrow row ${i} out of range [0, ${this.length})`);
    const batch = this.batchOf(i);
    const entry = this.batches[batch] as BatchEntry;
    const rows = await this.batchRows(batch);
    const offset = i - entry.globalStart;
    return {
      value: rows(offset),
      file: (this.shards[entry.shard] as Shard).file,
      row: entry.shardStart + offset,
    };
  }

  private batchOf(i: number): number {
    let [lo, hi] = [0, this.batches.length - 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.batches[mid] as BatchEntry).globalStart <= i) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private batchRows(batch: number): Promise<RowReader> {
    if (this.cached?.batch === batch) return this.cached.rows;
    const entry = this.batches[batch] as BatchEntry;
    const shard = this.shards[entry.shard] as Shard;
    const rows = readExactly(shard, entry.bodyStart, entry.bodyLength).then((body) =>
      decodeBatch(this.fields, entry, body, shard.file),
    );
    this.cached = { batch, rows };
    return rows;
  }
}

async function readExactly(shard: Shard, start: number, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(await shard.buffer.slice(start, start + length));
  if (bytes.length !== length)
    throw new Error(`${shard.file}: truncated Arrow stream (wanted ${length} bytes at offset ${start})`);
  return bytes;
}

/** The schema and the record batch headers of one stream, reading headers only. */
async function scanStream(
  file: string,
  buffer: AsyncBuffer,
): Promise<{ fields: ArrowField[]; batches: Omit<BatchEntry, 'shard' | 'shardStart' | 'globalStart'>[] }> {
  const shard = { file, buffer };
  let fields: ArrowField[] | undefined;
  const batches: Omit<BatchEntry, 'shard' | 'shardStart' | 'globalStart'>[] = [];
  let position = 0;
  while (position + 4 <= buffer.byteLength) {
    const prefix = new DataView((await readExactly(shard, position, Math.min(8, buffer.byteLength - position))).buffer);
    const marked = prefix.getUint32(0, true) === CONTINUATION;
    if (marked && prefix.byteLength < 8) throw new Error(`${file}: truncated Arrow stream at offset ${position}`);
    const metadataLength = marked ? prefix.getInt32(4, true) : prefix.getInt32(0, true);
    if (metadataLength === 0) break; // end-of-stream marker
    const metadataStart = position + (marked ? 8 : 4);
    const metadata = await readExactly(shard, metadataStart, metadataLength);
    const where = `${file}: message at offset ${position}`;
    const bodyStart = metadataStart + metadataLength;
    const bodyLength = namingWhere(where, () => {
      const message = FlatTable.root(metadata);
      if (message.int16(0) < METADATA_V4) throw new Error(`${where}: Arrow metadata before V4 is not supported`);
      const header = message.table(2);
      const kind = message.uint8(1);
      if (header === undefined) throw new Error(`${where}: no header`);
      if (kind === HEADER_SCHEMA) {
        if (fields !== undefined) throw new Error(`${where}: a second schema`);
        fields = readSchema(header, file);
      } else if (kind === HEADER_RECORD_BATCH) {
        if (fields === undefined) throw new Error(`${where}: a record batch before the schema`);
        batches.push(readBatchHeader(header, bodyStart, message.int64(3), where));
      } else if (kind === HEADER_DICTIONARY_BATCH) {
        throw new Error(`${where}: dictionary batches are not supported`);
      } else throw new Error(`${where}: unexpected message type ${kind}`);
      return message.int64(3);
    });
    position = bodyStart + bodyLength;
  }
  if (fields === undefined) throw new Error(`${file}: not an Arrow IPC stream (no schema message)`);
  if (position > buffer.byteLength) throw new Error(`${file}: truncated Arrow stream (last body ends past the file)`);
  return { fields, batches };
}

function readSchema(schema: FlatTable, file: string): ArrowField[] {
  if (schema.int16(0) !== 0) throw new Error(`${file}: big-endian Arrow data is not supported`);
  return schema.tables(1).map((field) => readField(field, file, ''));
}

function readField(field: FlatTable, file: string, parent: string): ArrowField {
  const name = field.string(0) ?? '';
  const path = parent === '' ? name : `${parent}.${name}`;
  const typeName = TYPE_NAMES[field.uint8(2)] ?? `type ${field.uint8(2)}`;
  if (field.table(4) !== undefined) throw new Error(`${file}: column ${path} is dictionary-encoded (not supported)`);
  if (!SUPPORTED.has(typeName)) throw new Error(`${file}: column ${path} has Arrow type ${typeName} (not supported)`);
  const detail = field.table(3);
  const type: ArrowType = { name: typeName };
  if (typeName === 'Int') Object.assign(type, { bitWidth: detail?.int32(0), signed: detail?.bool(1) });
  if (typeName === 'FloatingPoint') type.precision = detail?.int16(0);
  if (typeName === 'FixedSizeList' || typeName === 'FixedSizeBinary') type.size = detail?.int32(0);
  return {
    name,
    nullable: field.bool(1),
    type,
    children: field.tables(5).map((child) => readField(child, file, path)),
  };
}

function readBatchHeader(batch: FlatTable, bodyStart: number, bodyLength: number, where: string) {
  if (batch.table(3) !== undefined) throw new Error(`${where}: compressed record batches are not supported`);
  return {
    bodyStart,
    bodyLength,
    rows: batch.int64(0),
    nodes: batch.int64Structs(1, 2),
    buffers: batch.int64Structs(2, 2),
  };
}

/** A decoded column: the value at a row, null where the validity bitmap says so. */
type Column = (i: number) => unknown;

/** Walks the fields depth first, taking field nodes and buffers in the order the spec lays them out. */
class BatchCursor {
  private node = 0;
  private buffer = 0;

  constructor(
    private readonly entry: BatchEntry,
    private readonly body: Uint8Array,
    private readonly where: string,
  ) {}

  nextNode(): { length: number; nulls: number } {
    const node = this.entry.nodes[this.node++];
    if (node === undefined) throw new Error(`${this.where}: fewer field nodes than columns`);
    return { length: node[0] as number, nulls: node[1] as number };
  }

  nextBuffer(): DataView {
    const buffer = this.entry.buffers[this.buffer++];
    if (buffer === undefined) throw new Error(`${this.where}: fewer buffers than the columns need`);
    const [offset, length] = buffer as [number, number];
    if (offset + length > this.body.length) throw new Error(`${this.where}: a buffer lies past the batch body`);
    return new DataView(this.body.buffer, this.body.byteOffset + offset, length);
  }
}

/** A batch's rows, each built when asked for: only the body stays in memory, not a copy per row. */
type RowReader = (i: number) => Record<string, unknown>;

function decodeBatch(fields: ArrowField[], entry: BatchEntry, body: Uint8Array, file: string): RowReader {
  const where = `${file}: record batch at offset ${entry.bodyStart}`;
  const cursor = new BatchCursor(entry, body, where);
  const columns = namingWhere(where, () => fields.map((field) => decodeColumn(field, cursor)));
  return (i) =>
    namingWhere(`${where}, row ${i}`, () => {
      const row: Record<string, unknown> = {};
      for (const [k, field] of fields.entries()) row[field.name] = (columns[k] as Column)(i);
      return row;
    });
}

/**
 * Runs `read` over bytes from the file; an error that does not already say where (a DataView read
 * past its end, an offset or int64 out of range in damaged bytes) is rethrown naming `where`.
 */
function namingWhere<T>(where: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (message.startsWith(where.split(': ')[0] as string)) throw error;
    throw new Error(`${where}: cannot read the Arrow data (${message}); the file may be damaged`, { cause: error });
  }
}

function decodeColumn(field: ArrowField, cursor: BatchCursor): Column {
  const node = cursor.nextNode();
  const { name } = field.type;
  if (name === 'Null') return () => null;
  const validity = cursor.nextBuffer();
  const valid = (i: number) =>
    node.nulls === 0 || validity.byteLength === 0 || ((validity.getUint8(i >> 3) >> (i & 7)) & 1) === 1;
  const values = decodeValues(field, cursor);
  return (i) => (valid(i) ? values(i) : null);
}

function decodeValues(field: ArrowField, cursor: BatchCursor): Column {
  const { type } = field;
  switch (type.name) {
    case 'Int':
      return intValues(cursor.nextBuffer(), type.bitWidth ?? 32, type.signed ?? true);
    case 'FloatingPoint':
      return floatValues(cursor.nextBuffer(), type.precision ?? 2);
    case 'Bool': {
      const bits = cursor.nextBuffer();
      return (i) => ((bits.getUint8(i >> 3) >> (i & 7)) & 1) === 1;
    }
    case 'Binary':
    case 'Utf8':
    case 'LargeBinary':
    case 'LargeUtf8': {
      const offsets = offsetReader(cursor.nextBuffer(), type.name.startsWith('Large'));
      const data = cursor.nextBuffer();
      const bytes = (i: number) => bytesOf(data, offsets(i), offsets(i + 1));
      return type.name.endsWith('Utf8') ? (i) => TEXT.decode(bytes(i)) : (i) => bytes(i).slice();
    }
    case 'FixedSizeBinary': {
      const data = cursor.nextBuffer();
      const width = type.size ?? 0;
      return (i) => bytesOf(data, i * width, (i + 1) * width).slice();
    }
    case 'List':
    case 'LargeList': {
      const offsets = offsetReader(cursor.nextBuffer(), type.name === 'LargeList');
      const child = decodeColumn(onlyChild(field), cursor);
      return (i) => range(offsets(i), offsets(i + 1)).map(child);
    }
    case 'FixedSizeList': {
      const child = decodeColumn(onlyChild(field), cursor);
      const size = type.size ?? 0;
      return (i) => range(i * size, (i + 1) * size).map(child);
    }
    case 'Struct_': {
      const children = field.children.map((child) => [child.name, decodeColumn(child, cursor)] as const);
      return (i) => Object.fromEntries(children.map(([name, column]) => [name, column(i)]));
    }
    default:
      throw new Error(`column ${field.name}: Arrow type ${type.name} is not supported`);
  }
}

function onlyChild(field: ArrowField): ArrowField {
  if (field.children.length !== 1)
    throw new Error(`column ${field.name}: a list has ${field.children.length} children, expected 1`);
  return field.children[0] as ArrowField;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, k) => from + k);
}

function bytesOf(data: DataView, from: number, to: number): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset + from, to - from);
}

function offsetReader(buffer: DataView, large: boolean): (i: number) => number {
  return large ? (i) => readInt64(buffer, 8 * i) : (i) => buffer.getInt32(4 * i, true);
}

/** Integers as numbers; 64-bit values beyond 2^53 stay bigint rather than lose digits. */
function intValues(data: DataView, bitWidth: number, signed: boolean): Column {
  const width = bitWidth / 8;
  if (bitWidth === 64) {
    return (i) => {
      const value = signed ? data.getBigInt64(8 * i, true) : data.getBigUint64(8 * i, true);
      return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
        ? Number(value)
        : value;
    };
  }
  const read = {
    1: signed ? data.getInt8 : data.getUint8,
    2: signed ? data.getInt16 : data.getUint16,
    4: signed ? data.getInt32 : data.getUint32,
  }[width];
  if (read === undefined) throw new Error(`Arrow Int of bit width ${bitWidth} is not supported`);
  return (i) => read.call(data, width * i, true);
}

function floatValues(data: DataView, precision: number): Column {
  if (precision === 2) return (i) => data.getFloat64(8 * i, true);
  if (precision === 1) return (i) => data.getFloat32(4 * i, true);
  return (i) => halfToNumber(data.getUint16(2 * i, true));
}

/** IEEE 754 binary16 → number. */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
