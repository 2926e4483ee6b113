// HF `save_to_disk` folders read by our Arrow IPC stream reader from streams apache-arrow (a
// different implementation) wrote: ViRFT's {image struct, problem, solution} rows across shards and
// record batches, every column type `datasets` writes compared value by value with apache-arrow's own
// reader, splits and slices, bad rows and missing columns named, image paths kept inside the root,
// and laziness: opening reads message headers only, a row reads its own batch's body once.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Binary,
  Bool,
  Field,
  FixedSizeBinary,
  FixedSizeList,
  Float16,
  Float32,
  Float64,
  Int8,
  Int16,
  Int32,
  Int64,
  LargeBinary,
  LargeList,
  LargeUtf8,
  List,
  Null,
  RecordBatchStreamWriter,
  Struct,
  Table,
  Uint8,
  Uint32,
  Utf8,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
  type DataType,
} from 'apache-arrow';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ArrowStreamRows } from '../../lib/data/arrow.js';
import { R1_SYSTEM_PROMPT, openHfDisk } from '../../lib/data/hf_disk.js';
import { decodeRecordImages } from '../../lib/data/images.js';
import { openDataset } from '../../lib/data/open.js';
import type { PromptRecord } from '../../lib/data/records.js';

// Every file slice the readers ask hyparquet's file buffer for, to check what was read when.
const reads: { file: string; start: number; end: number }[] = [];
vi.mock('hyparquet', async (importOriginal) => {
  const original = await importOriginal<typeof import('hyparquet')>();
  return {
    ...original,
    asyncBufferFromFile: async (file: string) => {
      const buffer = await original.asyncBufferFromFile(file);
      return {
        byteLength: buffer.byteLength,
        slice: (start: number, end?: number) => {
          reads.push({ file, start, end: end ?? buffer.byteLength });
          return buffer.slice(start, end);
        },
      };
    },
  };
});

const root = mkdtempSync(join(tmpdir(), 'vlalign-hfdisk-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const png = new Uint8Array(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'images', 'img_140x140.png')));
const imageType = () => new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);

/** A table of record batches of `batchRows` rows each, columns from `make(i)` typed by `types`. */
function batchedTable(
  from: number,
  to: number,
  batchRows: number,
  types: Record<string, DataType>,
  make: (i: number) => Record<string, unknown>,
): Table {
  const batches = [];
  for (let start = from; start < to; start += batchRows) {
    const ids = Array.from({ length: Math.min(batchRows, to - start) }, (_, k) => start + k);
    const columns = Object.fromEntries(
      Object.entries(types).map(([name, type]) => [
        name,
        vectorFromArray(
          ids.map((i) => make(i)[name]),
          type,
        ),
      ]),
    );
    batches.push(...new Table(columns).batches);
  }
  return new Table(batches);
}

/** A Dataset folder as save_to_disk lays it out: shards, state.json, dataset_info.json. */
function writeDataset(folder: string, shards: Table[], split: string | null = 'train'): string[] {
  mkdirSync(folder, { recursive: true });
  const names = shards.map(
    (_, k) => `data-${String(k).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.arrow`,
  );
  shards.forEach((table, k) => writeFileSync(join(folder, names[k] as string), tableToIPC(table, 'stream')));
  const state = {
    _data_files: names.map((filename) => ({ filename })),
    _fingerprint: 'f0',
    _format_columns: null,
    _format_kwargs: {},
    _format_type: null,
    _output_all_columns: false,
    _split: split,
  };
  writeFileSync(join(folder, 'state.json'), JSON.stringify(state));
  writeFileSync(join(folder, 'dataset_info.json'), JSON.stringify({ features: {} }));
  return names.map((n) => join(folder, n));
}

const virftTypes = () => ({ image: imageType(), problem: new Utf8(), solution: new Utf8() });
const virftRow = (i: number) => ({
  image: { bytes: png, path: `${i}.png` },
  problem: `Detect all objects belonging to the category 'cat${i}' in the image.`,
  solution: `<answer>[{'Position': [${i}, 2, 30, 40], 'Confidence': 1}]</answer>`,
});

describe('ViRFT DatasetDict (written by apache-arrow)', () => {
  const dict = join(root, 'virft');
  let trainFiles: string[] = [];
  beforeEach(() => {
    if (trainFiles.length > 0) return;
    mkdirSync(dict);
    writeFileSync(join(dict, 'dataset_dict.json'), JSON.stringify({ splits: ['train', 'test'] }));
    trainFiles = writeDataset(join(dict, 'train'), [
      batchedTable(0, 25, 10, virftTypes(), virftRow),
      batchedTable(25, 32, 4, virftTypes(), virftRow),
    ]);
    writeDataset(join(dict, 'test'), [batchedTable(100, 103, 10, virftTypes(), virftRow)], 'test');
  });

  it("reads rows as ViRFT's image conversation across shards and batches, images decoded", async () => {
    const data = await openHfDisk(dict);
    expect(data.length).toBe(32);
    for (const i of [0, 9, 10, 24, 25, 29, 31]) {
      const record = (await data.get(i)) as PromptRecord;
      const expected = virftRow(i);
      expect(record.kind).toBe('prompt');
      expect(record.prompt).toEqual([
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: expected.problem }] },
      ]);
      expect(record.columns).toEqual({ problem: expected.problem, solution: expected.solution });
      expect(record.images).toEqual([png]);
      expect(record.source).toEqual(i < 25 ? { file: trainFiles[0], row: i } : { file: trainFiles[1], row: i - 25 });
    }
    const [pixels] = await decodeRecordImages((await data.get(3)) as PromptRecord);
    expect([pixels?.width, pixels?.height, pixels?.data.length]).toEqual([140, 140, 140 * 140 * 3]);
  });

  it('selects splits and slices them; refuses unknown splits', async () => {
    expect((await openHfDisk(dict, { split: 'test' })).length).toBe(3);
    const head = await openHfDisk(dict, { split: 'train[:25%]' });
    expect(head.length).toBe(8);
    const tail = await openHfDisk(dict, { split: 'train[-2:]' });
    expect(((await tail.get(0)) as PromptRecord).columns.problem).toBe(virftRow(30).problem);
    await expect(openHfDisk(dict, { split: 'validation' })).rejects.toThrow(
      `${join(dict, 'dataset_dict.json')}: no split "validation" (splits: train, test)`,
    );
    // A Dataset folder opened directly; naming another split than it holds is an error.
    expect((await openHfDisk(join(dict, 'test'))).length).toBe(3);
    await expect(openHfDisk(join(dict, 'test'), { split: 'train' })).rejects.toThrow(
      'this folder holds split "test", not "train"',
    );
    await expect(openHfDisk(root)).rejects.toThrow(`${root}: not a save_to_disk folder`);
  });

  it('opens through openDataset with a split slice', async () => {
    const data = await openDataset({ format: 'hf_disk', path: 'virft', split: 'train[4:6]' }, { baseDir: root });
    expect(data.length).toBe(2);
    expect(await data.get(1)).toMatchObject({ kind: 'prompt', source: { row: 5 } });
  });

  it('reads headers only on open, and a row reads its own batch body once', async () => {
    // Four batches of 8 rows with ~40 kB images each: bodies dominate the file.
    const big = new Uint8Array(40_000).map((_, k) => k % 251);
    const file = writeDataset(join(root, 'lazy'), [
      batchedTable(0, 32, 8, virftTypes(), (i) => ({ ...virftRow(i), image: { bytes: big, path: null } })),
    ])[0] as string;
    const size = statSync(file).size;
    reads.length = 0;
    const data = await openHfDisk(join(root, 'lazy'));
    const opened = reads.reduce((sum, r) => sum + r.end - r.start, 0);
    expect(opened).toBeLessThan(size / 100);
    reads.length = 0;
    expect(((await data.get(1)) as PromptRecord).images).toEqual([big]);
    await data.get(7);
    // One slice: the first batch's body, within the first quarter of the file (plus headers).
    expect(reads).toHaveLength(1);
    expect((reads[0] as { end: number }).end).toBeLessThan(size / 4 + 4096);
    reads.length = 0;
    await data.get(31);
    expect(reads).toHaveLength(1);
    expect((reads[0] as { start: number }).start).toBeGreaterThan((3 * size) / 4 - 4096);
  });
});

describe('other row shapes', () => {
  it('puts the R1 system prompt before text-only problems', async () => {
    const folder = join(root, 'text');
    writeDataset(folder, [
      batchedTable(0, 2, 10, { problem: new Utf8(), solution: new Utf8() }, (i) => ({
        problem: `What is ${i}+1?`,
        solution: `<answer>${i + 1}</answer>`,
      })),
    ]);
    expect(await (await openHfDisk(folder)).get(1)).toMatchObject({
      prompt: [
        { role: 'system', content: R1_SYSTEM_PROMPT },
        { role: 'user', content: 'What is 1+1?' },
      ],
      images: [],
      columns: { problem: 'What is 1+1?', solution: '<answer>2</answer>' },
    });
  });

  it('reads TRL prompt-only rows with nested struct columns passed to the rewards', async () => {
    const folder = join(root, 'trl');
    const messages = new List(
      new Field('item', new Struct([new Field('role', new Utf8()), new Field('content', new Utf8())]), true),
    );
    const meta = new Struct([
      new Field('width', new Int64()),
      new Field('boxes', new List(new Field('item', new FixedSizeList(4, new Field('v', new Float64())), true))),
      new Field('source', new Utf8(), true),
    ]);
    writeDataset(folder, [
      batchedTable(
        0,
        3,
        2,
        { prompt: messages, images: new List(new Field('item', imageType(), true)), meta },
        (i) => ({
          prompt: [{ role: 'user', content: `<image>where is thing ${i}?` }],
          images: [{ bytes: png, path: null }],
          meta: { width: BigInt(640 + i), boxes: [[1, 2, 3, 4 + i]], source: i === 1 ? null : 'coco' },
        }),
      ),
    ]);
    expect(await (await openHfDisk(folder)).get(1)).toMatchObject({
      prompt: [{ role: 'user', content: '<image>where is thing 1?' }],
      images: [png],
      columns: { meta: { width: 641, boxes: [[1, 2, 3, 5]], source: null } },
    });
  });

  it('names bad rows by file and row, counts them when skipping, and keeps paths inside the root', async () => {
    const folder = join(root, 'bad');
    const [file] = writeDataset(folder, [
      batchedTable(0, 4, 3, virftTypes(), (i) => ({
        image: i === 3 ? { bytes: null, path: '../../etc/passwd' } : i === 2 ? null : { bytes: png, path: null },
        problem: i === 1 ? null : 'p',
        solution: 's',
      })),
    ]);
    const strict = await openHfDisk(folder);
    await expect(strict.get(1)).rejects.toThrow(`${file} row 1: missing or non-string "problem"`);
    await expect(strict.get(2)).rejects.toThrow(`${file} row 2: missing "image"`);
    await expect(strict.get(3)).rejects.toThrow(`${file} row 3: image "../../etc/passwd" escapes the image root`);
    const lenient = await openHfDisk(folder, { skipBadRows: true });
    const got = await Promise.all([0, 1, 2, 3].map((i) => lenient.get(i)));
    expect(got.map((r) => r === undefined)).toEqual([false, true, true, true]);
    expect(lenient.badRows.count).toBe(3);

    const other = join(root, 'other');
    writeDataset(other, [batchedTable(0, 1, 1, { question: new Utf8() }, () => ({ question: 'q' }))]);
    await expect(openHfDisk(other)).rejects.toThrow(`${other}: missing column "problem" (columns: question)`);
  });

  it('refuses truncated streams, dictionary columns and data files outside the folder', async () => {
    const folder = join(root, 'cut');
    const [file] = writeDataset(folder, [batchedTable(0, 4, 2, virftTypes(), virftRow)]);
    const bytes = readFileSync(file as string);
    writeFileSync(file as string, bytes.subarray(0, bytes.length - 100));
    await expect(openHfDisk(folder)).rejects.toThrow(`${file}: truncated Arrow stream`);

    const dictionary = join(root, 'dictionary.arrow');
    const table = new Table({ label: vectorFromArray(['a', 'b', 'a']) }); // strings become a dictionary column
    writeFileSync(dictionary, tableToIPC(table, 'stream'));
    await expect(ArrowStreamRows.open([dictionary])).rejects.toThrow(
      `${dictionary}: column label is dictionary-encoded (not supported)`,
    );

    const outside = join(root, 'escape');
    mkdirSync(outside);
    writeFileSync(join(outside, 'state.json'), JSON.stringify({ _data_files: [{ filename: '../cut/x.arrow' }] }));
    await expect(openHfDisk(outside)).rejects.toThrow('_data_files[0].filename must be a file name in');
  });
});

describe('Arrow column types, against apache-arrow reading its own stream', () => {
  const types: Record<string, DataType> = {
    null: new Null(),
    i8: new Int8(),
    i16: new Int16(),
    i32: new Int32(),
    i64: new Int64(),
    u8: new Uint8(),
    u32: new Uint32(),
    f16: new Float16(),
    f32: new Float32(),
    f64: new Float64(),
    flag: new Bool(),
    text: new Utf8(),
    largeText: new LargeUtf8(),
    blob: new Binary(),
    largeBlob: new LargeBinary(),
    fixedBlob: new FixedSizeBinary(3),
    list: new List(new Field('item', new Int32(), true)),
    largeList: new LargeList(new Field('item', new Utf8(), true)),
    pair: new FixedSizeList(2, new Field('item', new Float32(), true)),
    nested: new Struct([
      new Field('name', new Utf8(), true),
      new Field('tags', new List(new Field('item', new Utf8(), true)), true),
      new Field('inner', new Struct([new Field('x', new Int16(), true)]), true),
    ]),
  };
  const row = (i: number): Record<string, unknown> => {
    const missing = i % 5 === 4; // every column null on these rows
    const value = (v: unknown) => (missing ? null : v);
    return {
      null: null,
      i8: value(-100 + i),
      i16: value(-30000 + i),
      i32: value(-2_000_000_000 + i),
      i64: value(BigInt(i) * 1_000_000_007n - 3n),
      u8: value(250 - i),
      u32: value(4_000_000_000 + i),
      f16: value(0.5 + i),
      f32: value(1.25 * i),
      f64: value(Math.PI * i),
      flag: value(i % 3 === 0),
      text: value(`héllo ${i} ✓`),
      largeText: value(`large ${i}`),
      blob: value(new Uint8Array([i, 0, 255])),
      largeBlob: value(new Uint8Array([7, i])),
      fixedBlob: value(new Uint8Array([i, i + 1, i + 2])),
      list: value(i % 2 === 0 ? [] : [i, null, -i]),
      largeList: value([`a${i}`, null]),
      pair: value([i, -i]),
      nested: value({ name: i === 1 ? null : `n${i}`, tags: i === 2 ? null : ['t', `${i}`], inner: { x: i } }),
    };
  };

  it('decodes every value as apache-arrow does', async () => {
    const file = join(root, 'types.arrow');
    writeFileSync(file, tableToIPC(batchedTable(0, 13, 6, types, row), 'stream'));
    const ours = await ArrowStreamRows.open([file]);
    const theirs = tableFromIPC(readFileSync(file));
    expect(ours.length).toBe(13);
    expect(ours.columns()).toEqual(theirs.schema.fields.map((f) => f.name));
    for (let i = 0; i < 13; i += 1) {
      const { value } = await ours.row(i);
      expect(value).toEqual(plain(theirs.get(i)?.toJSON()));
    }
  });

  it('reads the pre-0.15 framing (no continuation marker) and ignores schema metadata', async () => {
    const table = batchedTable(0, 7, 3, virftTypes(), virftRow);
    table.schema.metadata.set('huggingface', JSON.stringify({ info: { features: { problem: { _type: 'Value' } } } }));
    const file = join(root, 'legacy.arrow');
    writeFileSync(file, new RecordBatchStreamWriter({ writeLegacyIpcFormat: true }).writeAll(table).toUint8Array(true));
    expect(readFileSync(file).readInt32LE(0)).toBeGreaterThan(0); // starts with the metadata length itself
    const rows = await ArrowStreamRows.open([file]);
    expect(rows.length).toBe(7);
    expect((await rows.row(5)).value).toEqual(virftRow(5));
  });
});

/** apache-arrow's row values as plain JS: vectors and struct rows to arrays and objects, int64 to number. */
function plain(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>).map(plain);
  // A Vector: iterate it (toArray would turn null ints into 0).
  if (typeof value === 'object' && 'toArray' in value && Symbol.iterator in value)
    return Array.from(value as Iterable<unknown>).map(plain);
  if (typeof value === 'object' && 'toJSON' in value && typeof value.toJSON === 'function')
    return plain(value.toJSON());
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}
