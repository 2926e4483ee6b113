import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
import { runPythonText } from '../peers/python.js';

type Tensor = torch.Tensor;
type DType = torch.DType;
const ELEMENT: Record<DType, number> = {
  float64: 8,
  int64: 8,
  float32: 4,
  int32: 4,
  float16: 2,
  bfloat16: 2,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-safetensors-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const file = (name: string): string => path.join(dir, name);

/** A safetensors file built by hand: u64 LE header length, JSON (space padded), then data. */
function handBuilt(header: unknown, data: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  return withLength(Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]), data);
}

function withLength(header: Buffer, data: Uint8Array, length: bigint = BigInt(header.length)): Buffer {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(length);
  return Buffer.concat([prefix, header, data]);
}

function disposeAll(tensors: Record<string, Tensor>): void {
  for (const t of Object.values(tensors)) t.dispose();
}

function tempLeftovers(directory: string): string[] {
  return fs.readdirSync(directory).filter((name) => name.includes('.tmp-'));
}

// One tensor per dtype, plus a 0-d scalar, an empty tensor, and a non-contiguous view.
function sampleTensors(): Record<string, Tensor> {
  return {
    f32: torch.tensor([
      [1.5, -2, 3.25],
      [0, 1e-3, -7],
    ]),
    f64: torch.tensor([Math.PI, -1e300, 5e-324], { dtype: 'float64' }),
    f16: torch.tensor([1, -0.5, 65504, 6e-8], { dtype: 'float16' }),
    bf16: torch.tensor([1, -0.5, 3e38, 1e-30], { dtype: 'bfloat16' }),
    i64: torch.tensor(BigInt64Array.from([9007199254740993n, -1n, -(2n ** 63n)])),
    i32: torch.tensor([2147483647, -2147483648, 0], { dtype: 'int32' }),
    i16: torch.tensor([32767, -32768, 1], { dtype: 'int16' }),
    i8: torch.tensor([127, -128, 3], { dtype: 'int8' }),
    u8: torch.tensor([255, 0, 17], { dtype: 'uint8' }),
    bool: torch.tensor([true, false, true]),
    scalar: torch.tensor(42.5),
    empty: torch.zeros([0, 3]),
    transposed: torch.arange(12).reshape([3, 4]).t(),
  };
}

describe('saveSafetensors / loadSafetensors round trip', () => {
  it('round-trips every dtype, a 0-d scalar, an empty tensor and a non-contiguous view exactly', async () => {
    const original = sampleTensors();
    const target = file('roundtrip.safetensors');
    await saveAndCheck(target, original);
    disposeAll(original);
  });

  async function saveAndCheck(target: string, original: Record<string, Tensor>): Promise<void> {
    await torch.saveSafetensors(target, original);
    const loaded = await torch.loadSafetensors(target);
    expect(Object.keys(loaded).sort()).toEqual(Object.keys(original).sort());
    for (const [name, t] of Object.entries(original)) {
      const back = loaded[name]!;
      expect(back.dtype, name).toBe(t.dtype);
      expect(back.shape, name).toEqual(t.shape);
      expect(back.device).toBe('cpu');
      expect(Buffer.from(back.data().buffer).equals(Buffer.from(t.data().buffer)), name).toBe(true);
      expect(back.equal(t), name).toBe(true);
    }
    expect(loaded.scalar!.shape).toEqual([]);
    expect(loaded.scalar!.item()).toBe(42.5);
    expect(loaded.i64!.data()).toEqual(BigInt64Array.from([9007199254740993n, -1n, -(2n ** 63n)]));
    disposeAll(loaded);
  }

  it('round-trips string metadata', async () => {
    const target = file('metadata.safetensors');
    const metadata = { format: 'pt', note: 'ünïcode ✓', empty: '' };
    const w = torch.ones(2);
    await torch.saveSafetensors(target, { w }, metadata);
    w.dispose();
    const header = await torch.readSafetensorsHeader(target);
    expect(header.metadata).toEqual(metadata);
    expect(header.tensors.w).toEqual({ dtype: 'float32', shape: [2], dataOffsets: [0, 8] });
    const noMetadata = file('no-metadata.safetensors');
    await torch.saveSafetensors(noMetadata, {});
    expect((await torch.readSafetensorsHeader(noMetadata)).metadata).toBeNull();
  });

  it('loaded tensors are ordinary tensors that tidy scopes can free', async () => {
    const target = file('tidy.safetensors');
    const a = torch.arange(4, { dtype: 'float32' });
    await torch.saveSafetensors(target, { a });
    a.dispose();
    const { a: loaded } = await torch.loadSafetensors(target);
    const sum = torch.tidy(() => loaded!.mul(2).sum().item());
    expect(sum).toBe(12);
    loaded!.dispose();
    expect(loaded!.isDisposed).toBe(true);
  });

  it('honours the device option (cpu always; cuda when available)', async () => {
    const target = file('device.safetensors');
    const a = torch.tensor([1, 2, 3], { dtype: 'int16' });
    await torch.saveSafetensors(target, { a });
    const onCpu = await torch.loadSafetensors(target, { device: 'cpu' });
    expect(onCpu.a!.device).toBe('cpu');
    expect(onCpu.a!.equal(a)).toBe(true);
    disposeAll(onCpu);
    if (torch.cuda.isAvailable()) {
      const onGpu = await torch.loadSafetensors(target, { device: 'cuda' });
      expect(onGpu.a!.device).toMatch(/^cuda/);
      expect(onGpu.a!.cpu().equal(a)).toBe(true);
      disposeAll(onGpu);
    }
    a.dispose();
  });

  it('rejects an invalid device option before touching the file', async () => {
    await expect(torch.loadSafetensors(file('missing.safetensors'), { device: 'tpu' as never })).rejects.toThrow(
      /device/,
    );
  });
});

describe('byte-level compatibility', () => {
  it('reads a hand-built file with several dtypes', async () => {
    const data = new DataView(new ArrayBuffer(8 + 6 + 4 + 2));
    data.setFloat32(0, 1.5, true);
    data.setFloat32(4, -0.25, true);
    data.setInt16(8, -2, true);
    data.setInt16(10, 300, true);
    data.setInt16(12, 7, true);
    data.setUint16(14, 0x3f80, true); // bfloat16 1.0
    data.setUint16(16, 0xc000, true); // bfloat16 -2.0
    data.setUint8(18, 1);
    data.setUint8(19, 0);
    const header = {
      __metadata__: { source: 'hand' },
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'I16', shape: [3, 1], data_offsets: [8, 14] },
      c: { dtype: 'BF16', shape: [2], data_offsets: [14, 18] },
      d: { dtype: 'BOOL', shape: [2], data_offsets: [18, 20] },
    };
    const target = file('hand.safetensors');
    fs.writeFileSync(target, handBuilt(header, new Uint8Array(data.buffer)));
    const loaded = await torch.loadSafetensors(target);
    expect(loaded.a!.toArray()).toEqual([1.5, -0.25]);
    expect(loaded.b!.dtype).toBe('int16');
    expect(loaded.b!.toArray()).toEqual([[-2], [300], [7]]);
    expect(loaded.c!.dtype).toBe('bfloat16');
    expect(loaded.c!.toArray()).toEqual([1, -2]);
    expect(loaded.d!.toArray()).toEqual([true, false]);
    const info = await torch.readSafetensorsHeader(target);
    expect(info.dataStart).toBe(8 + (fs.statSync(target).size - 8 - 20));
    expect(info.metadata).toEqual({ source: 'hand' });
    disposeAll(loaded);
  });

  it('reads a file whose tensors are listed out of offset order', async () => {
    const data = new Uint8Array([1, 2, 3, 4]);
    const header = {
      second: { dtype: 'U8', shape: [2], data_offsets: [2, 4] },
      first: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
    };
    const target = file('unordered.safetensors');
    fs.writeFileSync(target, handBuilt(header, data));
    const loaded = await torch.loadSafetensors(target);
    expect(loaded.first!.toArray()).toEqual([1, 2]);
    expect(loaded.second!.toArray()).toEqual([3, 4]);
    disposeAll(loaded);
  });

  // Expected bytes built independently: the JSON text the format prescribes, then raw LE floats.
  function expectedFile(json: string, values: number[]): Buffer {
    const header = Buffer.from(json.padEnd(Math.ceil(json.length / 8) * 8, ' '));
    return withLength(header, new Uint8Array(Float32Array.from(values).buffer));
  }

  it('writes the exact header layout: u64 length, compact JSON, space padding to 8, offsets', async () => {
    const cases: Array<[string, number[], string]> = [
      ['attn.0', [1, 2, 3], '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'], // 64 bytes, no padding
      ['attn0', [1, 1, 2, 3], '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}'], // 65 -> 72
    ];
    for (const [name, shape, json] of cases) {
      const target = file(`layout-${name}.safetensors`);
      const t = torch.arange(6, { dtype: 'float32' }).reshape(shape);
      await torch.saveSafetensors(target, { [name]: t });
      t.dispose();
      const bytes = fs.readFileSync(target);
      expect(bytes.equals(expectedFile(json, [0, 1, 2, 3, 4, 5])), name).toBe(true);
      expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    }
    const empty = file('layout-empty.safetensors');
    await torch.saveSafetensors(empty, {});
    expect(fs.readFileSync(empty)).toEqual(withLength(Buffer.from('{}      '), new Uint8Array(0)));
    await torch.saveSafetensors(empty, {}, { framework: 'pt' });
    expect(fs.readFileSync(empty)).toEqual(
      withLength(Buffer.from('{"__metadata__":{"framework":"pt"}}     '), new Uint8Array(0)),
    );
  });

  it('orders tensors like the Python library (dtype alignment descending, then name) so data is aligned', async () => {
    const target = file('order.safetensors');
    const dtypes: Record<string, DType> = {
      b: 'int8',
      a: 'int8',
      m: 'bool',
      z: 'float64',
      c: 'float32',
      h: 'bfloat16',
      f16: 'float16',
      i: 'int64',
      s: 'int16',
      u: 'uint8',
      j: 'int32',
      10: 'int8',
    };
    // Odd sizes, so a 1-byte tensor placed before a wider one would misalign it.
    const tensors = torch.tidy(() =>
      Object.fromEntries(Object.entries(dtypes).map(([name, dtype]) => [name, torch.ones(3, { dtype })])),
    );
    await torch.saveSafetensors(target, tensors);
    disposeAll(tensors);
    const header = await torch.readSafetensorsHeader(target);
    const byOffset = Object.entries(header.tensors).sort((x, y) => x[1].dataOffsets[0] - y[1].dataOffsets[0]);
    expect(byOffset.map(([name]) => name)).toEqual(['i', 'z', 'c', 'j', 'h', 'f16', 's', '10', 'a', 'b', 'u', 'm']);
    for (const [name, info] of byOffset)
      expect((header.dataStart + info.dataOffsets[0]) % ELEMENT[info.dtype], name).toBe(0);
    const raw = fs.readFileSync(target);
    const json = raw.subarray(8, 8 + Number(raw.readBigUInt64LE(0))).toString();
    expect(json.indexOf('"10"')).toBeGreaterThan(json.indexOf('"s"')); // not hoisted like an integer key
  });
});

describe('sharded checkpoints', () => {
  let shardDir: string;
  const shard1 = 'model-00001-of-00002.safetensors';
  const shard2 = 'model-00002-of-00002.safetensors';

  beforeAll(async () => {
    shardDir = fs.mkdtempSync(path.join(dir, 'sharded-'));
    const [a, b, c] = [torch.tensor([1, 2, 3]), torch.tensor([[0.5]]), torch.tensor([true])];
    await torch.saveSafetensors(path.join(shardDir, shard1), { a, b });
    await torch.saveSafetensors(path.join(shardDir, shard2), { c });
    [a, b, c].forEach((t) => t.dispose());
    writeIndex(shardDir, 'model.safetensors.index.json', { a: shard1, b: shard1, c: shard2 });
  });

  function writeIndex(directory: string, name: string, weightMap: Record<string, string>): string {
    const target = path.join(directory, name);
    fs.writeFileSync(target, JSON.stringify({ metadata: { total_size: 41 }, weight_map: weightMap }));
    return target;
  }

  async function expectShardedValues(source: string): Promise<void> {
    const loaded = await torch.loadSafetensors(source);
    expect(Object.keys(loaded)).toEqual(['a', 'b', 'c']);
    expect(loaded.a!.toArray()).toEqual([1, 2, 3]);
    expect(loaded.b!.toArray()).toEqual([[0.5]]);
    expect(loaded.c!.toArray()).toEqual([true]);
    disposeAll(loaded);
  }

  it('loads from the directory', () => expectShardedValues(shardDir));
  it('loads from the index path', () => expectShardedValues(path.join(shardDir, 'model.safetensors.index.json')));

  it('loads only the tensors the weight_map names', async () => {
    const index = writeIndex(shardDir, 'partial.safetensors.index.json', { c: shard2, a: shard1 });
    const loaded = await torch.loadSafetensors(index);
    expect(Object.keys(loaded)).toEqual(['c', 'a']);
    disposeAll(loaded);
  });

  it('loads model.safetensors from a directory without an index', async () => {
    const single = fs.mkdtempSync(path.join(dir, 'single-'));
    fs.copyFileSync(path.join(shardDir, shard2), path.join(single, 'model.safetensors'));
    const loaded = await torch.loadSafetensors(single);
    expect(loaded.c!.toArray()).toEqual([true]);
    disposeAll(loaded);
    await expect(torch.loadSafetensors(fs.mkdtempSync(path.join(dir, 'none-')))).rejects.toThrow(/holds neither/);
  });

  it('names the shard when a shard file is missing', async () => {
    const index = writeIndex(shardDir, 'missing-shard.index.json', {
      a: shard1,
      x: 'model-00003-of-00003.safetensors',
    });
    await expect(torch.loadSafetensors(index)).rejects.toThrow(
      /safetensors: .*model-00003-of-00003\.safetensors: cannot open \(ENOENT\), named by .*missing-shard\.index\.json's weight_map for 'x'/,
    );
  });

  it('names the tensor and shard when a tensor is missing from its shard', async () => {
    const index = writeIndex(shardDir, 'missing-tensor.index.json', { a: shard1, c: shard1 });
    await expect(torch.loadSafetensors(index)).rejects.toThrow(
      new RegExp(
        `safetensors: .*${shard1.replace(/\./g, '\\.')}: tensor 'c' listed in .*missing-tensor\\.index\\.json's weight_map is not in this shard`,
      ),
    );
  });

  it('refuses a weight_map that is missing or points outside the directory', async () => {
    const noMap = path.join(shardDir, 'nomap.index.json');
    fs.writeFileSync(noMap, '{"metadata":{}}');
    await expect(torch.loadSafetensors(noMap)).rejects.toThrow(/nomap\.index\.json: index has no weight_map/);
    const escaping = writeIndex(shardDir, 'escape.index.json', { a: '../outside.safetensors' });
    await expect(torch.loadSafetensors(escaping)).rejects.toThrow(/escape\.index\.json: weight_map entry for 'a'/);
  });
});

describe('atomic writes', () => {
  it('replaces an existing file and leaves no temp files', async () => {
    const directory = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const target = path.join(directory, 'model.safetensors');
    const [first, second] = [torch.zeros(4), torch.tensor([7, 8], { dtype: 'int32' })];
    await torch.saveSafetensors(target, { w: first });
    await torch.saveSafetensors(target, { v: second });
    const loaded = await torch.loadSafetensors(target);
    expect(Object.keys(loaded)).toEqual(['v']);
    expect(loaded.v!.toArray()).toEqual([7, 8]);
    expect(fs.readdirSync(directory)).toEqual(['model.safetensors']);
    disposeAll({ first, second, ...loaded });
  });

  async function expectFailedSaveKeepsOld(
    run: (target: string) => Promise<void>,
    error: RegExp | typeof TypeError,
  ): Promise<void> {
    const directory = fs.mkdtempSync(path.join(dir, 'failing-'));
    const target = path.join(directory, 'model.safetensors');
    const old = torch.ones(3);
    await torch.saveSafetensors(target, { old });
    old.dispose();
    const before = fs.readFileSync(target);
    await expect(run(target)).rejects.toThrow(error);
    expect(fs.readFileSync(target).equals(before)).toBe(true);
    expect(tempLeftovers(directory)).toEqual([]);
  }

  it('leaves the old file untouched when a tensor was disposed', async () => {
    const gone = torch.ones(2);
    gone.dispose();
    const alive = torch.ones(2);
    await expectFailedSaveKeepsOld(
      (target) => torch.saveSafetensors(target, { alive, gone }),
      /tensor 'gone' was disposed/,
    );
    alive.dispose();
  });

  it('leaves the old file untouched when metadata holds a non-string (TypeError naming the key)', async () => {
    const t = torch.ones(2);
    const metadata = { ok: 'yes', step: 3 } as unknown as Record<string, string>;
    await expectFailedSaveKeepsOld((target) => torch.saveSafetensors(target, { t }, metadata), TypeError);
    await expect(torch.saveSafetensors(file('never.safetensors'), { t }, metadata)).rejects.toThrow(
      /metadata key 'step'/,
    );
    expect(fs.existsSync(file('never.safetensors'))).toBe(false);
    t.dispose();
  });

  it('removes the temp file when the final rename fails', async () => {
    const directory = fs.mkdtempSync(path.join(dir, 'rename-'));
    const target = path.join(directory, 'occupied');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'x'); // a non-empty directory cannot be renamed over
    const t = torch.ones(2);
    await expect(torch.saveSafetensors(target, { t })).rejects.toThrow(/safetensors: .*occupied: save failed/);
    t.dispose();
    expect(tempLeftovers(directory)).toEqual([]);
    expect(fs.readdirSync(target)).toEqual(['keep']);
  });
});

describe('malformed files', () => {
  const f32 = (offsets: [number, number], shape = [1]): object => ({ dtype: 'F32', shape, data_offsets: offsets });
  const bytes = (n: number): Uint8Array => new Uint8Array(n);
  const prefixOnly = (length: bigint, rest: Buffer): Buffer => withLength(rest, bytes(0), length);

  const corpus: Array<[string, Buffer, RegExp]> = [
    ['short', Buffer.from([1, 0, 0, 0, 0]), /file is 5 bytes, too short/],
    ['zero-length', prefixOnly(0n, Buffer.from('{}')), /header length is 0/],
    ['huge-header', prefixOnly(100_000_001n, Buffer.from('{}')), /header length 100000001 exceeds/],
    ['past-eof', prefixOnly(64n, Buffer.from('{}      ')), /header length 64 runs past the end of the 16-byte file/],
    [
      'bad-utf8',
      withLength(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20, 0x20]), bytes(0)),
      /header is not valid UTF-8/,
    ],
    ['bad-json', handBuilt('{"a": {"dtype": '), /header is not valid JSON/],
    ['not-object', handBuilt('[1, 2, 3]'), /header is not a JSON object/],
    ['entry-not-object', handBuilt({ a: 5 }), /tensor 'a': entry is not an object/],
    ['no-dtype', handBuilt({ a: { shape: [1], data_offsets: [0, 4] } }, bytes(4)), /tensor 'a': dtype is missing/],
    [
      'dtype-number',
      handBuilt({ a: { dtype: 7, shape: [1], data_offsets: [0, 4] } }, bytes(4)),
      /tensor 'a': dtype is missing or not a string/,
    ],
    [
      'unknown-dtype',
      handBuilt({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, bytes(8)),
      /tensor 'a': unsupported dtype 'C64'/,
    ],
    ['no-shape', handBuilt({ a: { dtype: 'F32', data_offsets: [0, 4] } }, bytes(4)), /tensor 'a': shape is missing/],
    [
      'shape-string',
      handBuilt({ a: { dtype: 'F32', shape: '1', data_offsets: [0, 4] } }, bytes(4)),
      /tensor 'a': shape is missing or not an array/,
    ],
    [
      'negative-dim',
      handBuilt({ a: f32([0, 4], [-1]) }, bytes(4)),
      /tensor 'a': shape \[-1\] must hold non-negative integers/,
    ],
    [
      'fractional-dim',
      handBuilt({ a: f32([0, 4], [1.5]) }, bytes(4)),
      /tensor 'a': shape \[1\.5\] must hold non-negative integers/,
    ],
    ['no-offsets', handBuilt({ a: { dtype: 'F32', shape: [1] } }, bytes(4)), /tensor 'a': data_offsets is missing/],
    [
      'offsets-strings',
      handBuilt({ a: { dtype: 'F32', shape: [1], data_offsets: ['0', '4'] } }, bytes(4)),
      /tensor 'a': data_offsets .*\[begin, end\] integers/,
    ],
    [
      'offsets-three',
      handBuilt({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, bytes(4)),
      /tensor 'a': data_offsets .*\[begin, end\] integers/,
    ],
    [
      'negative-begin',
      handBuilt({ a: f32([-4, 0]) }, bytes(4)),
      /tensor 'a': data_offsets \[-4, 0\] must satisfy 0 <= begin <= end/,
    ],
    [
      'end-before-begin',
      handBuilt({ a: f32([4, 0]) }, bytes(4)),
      /tensor 'a': data_offsets \[4, 0\] must satisfy 0 <= begin <= end/,
    ],
    [
      'end-past-data',
      handBuilt({ a: f32([0, 8], [2]) }, bytes(4)),
      /tensor 'a': data_offsets end 8 is beyond the 4-byte data section/,
    ],
    [
      'size-mismatch',
      handBuilt({ a: f32([0, 4], [2]) }, bytes(4)),
      /tensor 'a': data_offsets span 4 bytes but shape and dtype need 8/,
    ],
    ['overlap', handBuilt({ a: f32([0, 8], [2]), b: f32([4, 12], [2]) }, bytes(12)), /tensor 'b' overlaps tensor 'a'/],
    [
      'hole',
      handBuilt({ a: f32([0, 4]), b: f32([8, 12]) }, bytes(12)),
      /hole in the data section: bytes 4\.\.8 before tensor 'b'/,
    ],
    ['trailing', handBuilt({ a: f32([0, 4]) }, bytes(8)), /4 trailing bytes after the last tensor/],
    ['metadata-number', handBuilt({ __metadata__: { n: 1 } }), /__metadata__ value for key 'n' is not a string/],
    ['metadata-array', handBuilt({ __metadata__: ['x'] }), /__metadata__ is not an object/],
  ];

  it.each(corpus)('refuses %s', async (name, content, problem) => {
    const target = file(`bad-${name}.safetensors`);
    fs.writeFileSync(target, content);
    const message = new RegExp(`^safetensors: ${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `);
    await expect(torch.loadSafetensors(target)).rejects.toThrow(message);
    await expect(torch.loadSafetensors(target)).rejects.toThrow(problem);
    await expect(torch.readSafetensorsHeader(target)).rejects.toThrow(problem);
  });

  it('names a missing file', async () => {
    await expect(torch.loadSafetensors(file('absent.safetensors'))).rejects.toThrow(
      /absent\.safetensors: cannot open \(ENOENT\)/,
    );
  });
});

describe('cross-check with PyTorch', () => {
  // Parses a file with plain struct/json + torch.frombuffer (no safetensors package needed).
  const reader = `
import json, struct, sys, torch
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n])
types = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64,
         'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}
out = {'n': n, 'padding': raw[8:8 + n].rstrip(b' ').endswith(b'}'), 'tensors': {}}
for name, info in header.items():
    if name == '__metadata__': out['metadata'] = info; continue
    b, e = info['data_offsets']
    dtype = types[info['dtype']]
    t = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), dtype=dtype) if e > b else torch.empty(0, dtype=dtype)
    t = t.reshape(info['shape'])
    out['tensors'][name] = (t.float() if dtype in (torch.float16, torch.bfloat16) else t).tolist()
print(json.dumps(out))
`;

  // Writes a file by hand from torch tensors: the reverse direction.
  const writer = `
import json, struct, sys, torch
ts = {'x': torch.tensor([[1.25, -3.5]], dtype=torch.float32), 'k': torch.tensor([5, -6], dtype=torch.int64),
      'h': torch.tensor([0.5, 2.0], dtype=torch.bfloat16)}
header, data, off = {'__metadata__': {'by': 'python'}}, b'', 0
for name, t in ts.items():
    raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
    header[name] = {'dtype': {torch.float32: 'F32', torch.int64: 'I64', torch.bfloat16: 'BF16'}[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
    data += raw; off += len(raw)
h = json.dumps(header).encode(); h += b' ' * (-len(h) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + data)
`;

  const python = (script: string, arg: string): string => runPythonText(script, { args: [arg] });

  it('PyTorch parses the file we wrote to the same values', async () => {
    const target = file('for-python.safetensors');
    const tensors = torch.tidy(() => ({
      f32: torch.tensor([
        [1.5, -2],
        [0.125, 1e-3],
      ]),
      f64: torch.tensor([Math.PI], { dtype: 'float64' }),
      f16: torch.tensor([1, -0.5, 65504], { dtype: 'float16' }),
      bf16: torch.tensor([1, -0.5, 3e38], { dtype: 'bfloat16' }),
      i64: torch.tensor([2 ** 40, -1]),
      i32: torch.tensor([7, -8], { dtype: 'int32' }),
      i16: torch.tensor([-32768], { dtype: 'int16' }),
      i8: torch.tensor([-5], { dtype: 'int8' }),
      u8: torch.tensor([200], { dtype: 'uint8' }),
      bool: torch.tensor([true, false]),
      scalar: torch.tensor(3.5),
      empty: torch.zeros([0, 3], { dtype: 'int32' }),
    }));
    await torch.saveSafetensors(target, tensors, { framework: 'pt' });
    const parsed = JSON.parse(python(reader, target)) as {
      n: number;
      padding: boolean;
      metadata: unknown;
      tensors: Record<string, unknown>;
    };
    expect(parsed.n % 8).toBe(0);
    expect(parsed.padding).toBe(true);
    expect(parsed.metadata).toEqual({ framework: 'pt' });
    for (const [name, t] of Object.entries(tensors)) expect(parsed.tensors[name], name).toEqual(t.toArray());
    disposeAll(tensors);
  });

  it('we read a file PyTorch wrote by hand', async () => {
    const target = file('from-python.safetensors');
    python(writer, target);
    const loaded = await torch.loadSafetensors(target);
    expect(loaded.x!.toArray()).toEqual([[1.25, -3.5]]);
    expect(loaded.k!.dtype).toBe('int64');
    expect(loaded.k!.toArray()).toEqual([5, -6]);
    expect(loaded.h!.dtype).toBe('bfloat16');
    expect(loaded.h!.toArray()).toEqual([0.5, 2]);
    expect((await torch.readSafetensorsHeader(target)).metadata).toEqual({ by: 'python' });
    disposeAll(loaded);
  });
});
