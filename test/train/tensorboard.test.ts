// The event file read back by a reader written here from the formats' documentation alone: TFRecord
// framing (tensorflow/core/lib/io/record_writer.h: uint64 LE length, masked CRC32C of it, data,
// masked CRC32C of the data), a bit-by-bit CRC32C checked against the standard check value, and the
// protobuf wire format parsed field by field into Event / Summary.Value / TensorProto.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TensorBoardWriter } from '../../lib/train/index.js';

const dir = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-tb-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// Bitwise CRC-32C: shift one bit at a time through the reflected Castagnoli polynomial, no table.
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return ~crc >>> 0;
}
const mask = (crc: number): number => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) % 2 ** 32;

function readRecords(bytes: Buffer): Buffer[] {
  const records: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const length = Number(bytes.readBigUInt64LE(at));
    expect(bytes.readUInt32LE(at + 8)).toBe(mask(crc32cBitwise(bytes.subarray(at, at + 8))));
    const data = bytes.subarray(at + 12, at + 12 + length);
    expect(bytes.readUInt32LE(at + 12 + length)).toBe(mask(crc32cBitwise(data)));
    records.push(data);
    at += 16 + length;
  }
  return records;
}

type Field = { field: number; varint?: bigint; bytes?: Buffer; fixed?: Buffer };

function parseMessage(bytes: Buffer): Field[] {
  const fields: Field[] = [];
  let at = 0;
  const readVarint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = bytes[at++]!;
      value |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    const key = Number(readVarint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) fields.push({ field, varint: readVarint() });
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      fields.push({ field, fixed: bytes.subarray(at, at + n) });
      at += n;
    } else if (wire === 2) {
      const n = Number(readVarint());
      fields.push({ field, bytes: bytes.subarray(at, at + n) });
      at += n;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return fields;
}

const one = (fields: Field[], n: number): Field | undefined => fields.find((f) => f.field === n);

interface DecodedValue {
  step: number;
  wallTime: number;
  tag: string;
  value?: number;
  text?: string;
  plugin?: string;
}

// Event: wall_time 1 (double), step 2 (int64), file_version 3, summary 5 → Summary.value 1 →
// Value: tag 1, simple_value 2 (float), tensor 8 (TensorProto: dtype 1, string_val 8), metadata 9.
function decodeEvents(file: string): { version: string; values: DecodedValue[]; sessionStarts: number[] } {
  let version = '';
  const values: DecodedValue[] = [];
  const sessionStarts: number[] = [];
  for (const record of readRecords(fs.readFileSync(file))) {
    const event = parseMessage(record);
    const wallTime = one(event, 1)!.fixed!.readDoubleLE(0);
    const step = Number(one(event, 2)?.varint ?? 0n);
    const fileVersion = one(event, 3);
    if (fileVersion) version = fileVersion.bytes!.toString('utf8');
    const sessionLog = one(event, 6); // SessionLog { status = 1 }: START = 1
    if (sessionLog && one(parseMessage(sessionLog.bytes!), 1)?.varint === 1n) sessionStarts.push(step);
    const summary = one(event, 5);
    if (!summary) continue;
    for (const v of parseMessage(summary.bytes!).filter((f) => f.field === 1)) {
      const value = parseMessage(v.bytes!);
      const decoded: DecodedValue = { step, wallTime, tag: one(value, 1)!.bytes!.toString('utf8') };
      const simple = one(value, 2);
      if (simple) decoded.value = simple.fixed!.readFloatLE(0);
      const tensor = one(value, 8);
      if (tensor) {
        const t = parseMessage(tensor.bytes!);
        expect(one(t, 1)!.varint).toBe(7n); // DT_STRING
        decoded.text = one(t, 8)!.bytes!.toString('utf8');
        const pluginData = one(parseMessage(one(value, 9)!.bytes!), 1)!;
        decoded.plugin = one(parseMessage(pluginData.bytes!), 1)!.bytes!.toString('utf8');
      }
      values.push(decoded);
    }
  }
  return { version, values, sessionStarts };
}

describe('TensorBoardWriter', () => {
  it("the test reader's CRC32C gives the standard check value", () => {
    expect(crc32cBitwise(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('writes brain.Event:2 first, then scalars and text that an independent reader decodes', () => {
    let clock = 1_700_000_000_500;
    const writer = new TensorBoardWriter(path.join(dir, 'run'), { now: () => clock });
    expect(path.basename(writer.file)).toMatch(/^events\.out\.tfevents\.1700000000\.[^.]+.*\.\d+\.\d+$/);
    expect(path.basename(writer.file)).toContain(`.${process.pid}.`);
    writer.logText(0, 'config', 'lr: 5e-7');
    for (let step = 1; step <= 3; step++) {
      clock += 1000;
      writer.logScalars(step, {
        'train/loss': 0.75 / step,
        'rewards/accuracies': step / 4,
        'train/learning_rate': 5e-7,
      });
    }
    writer.logScalars(2 ** 40, { 'train/loss': 0.125 }); // int64 steps beyond 32 bits
    // Flushed per log: readable before close.
    const { version, values } = decodeEvents(writer.file);
    writer.close();
    expect(version).toBe('brain.Event:2');
    expect(values[0]).toMatchObject({ step: 0, tag: 'config', text: 'lr: 5e-7', plugin: 'text' });
    const losses = values.filter((v) => v.tag === 'train/loss');
    expect(losses.map((v) => v.step)).toEqual([1, 2, 3, 2 ** 40]);
    expect(losses.map((v) => v.value)).toEqual([0.75, 0.375, 0.25, 0.125].map(Math.fround));
    expect(values.filter((v) => v.tag === 'train/learning_rate').map((v) => v.value)).toEqual(
      Array(3).fill(Math.fround(5e-7)),
    );
    expect(values.find((v) => v.tag === 'rewards/accuracies' && v.step === 3)).toMatchObject({
      value: 0.75,
      wallTime: 1_700_000_003.5,
    });
  });

  it("a resumed run's file starts with a session START at its first step (PyTorch's purge_step)", () => {
    const fresh = new TensorBoardWriter(path.join(dir, 'fresh'));
    const resumed = new TensorBoardWriter(path.join(dir, 'resumed'), { purgeStep: 4 });
    fresh.close();
    resumed.close();
    expect(decodeEvents(fresh.file).sessionStarts).toEqual([]);
    expect(decodeEvents(resumed.file)).toMatchObject({ version: 'brain.Event:2', sessionStarts: [4] });
  });

  it('refuses writes after close, naming the file', () => {
    const writer = new TensorBoardWriter(path.join(dir, 'closed'));
    writer.close();
    expect(() => writer.logScalars(1, { loss: 1 })).toThrow(writer.file);
  });
});
