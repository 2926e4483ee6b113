// TensorBoard event files, written without TensorFlow: a TFRecord stream (per record: uint64 LE
// length, masked CRC32C of the length, the bytes, masked CRC32C of the bytes) of Event protobufs,
// the first one carrying file_version "brain.Event:2". The protobuf is encoded by hand: only the
// few fields below are needed. Field numbers are those of tensorflow/core/util/event.proto,
// framework/summary.proto and framework/tensor.proto.
import fs from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { writeAll } from '../util/atomic_write.js';

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table lookup per byte.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's mask: rotate right by 15 and add a constant, so CRCs of CRCs stay well distributed. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, data, footer]);
}

// Protobuf wire format: a key is (field << 3) | wire type; 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
function varint(value: bigint | number): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

const key = (field: number, wire: number): Buffer => varint((field << 3) | wire);
const bytesField = (field: number, data: Uint8Array | string): Buffer => {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return Buffer.concat([key(field, 2), varint(bytes.length), bytes]);
};
const varintField = (field: number, value: number): Buffer => Buffer.concat([key(field, 0), varint(value)]);

function doubleField(field: number, value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value, 0);
  return Buffer.concat([key(field, 1), b]);
}

function floatField(field: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value, 0);
  return Buffer.concat([key(field, 5), b]);
}

/** Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 | session_log = 6 }. */
function event(wallTime: number, step: number, body: Buffer): Buffer {
  return Buffer.concat([doubleField(1, wallTime), varintField(2, step), body]);
}

/** Summary.Value { tag = 1, simple_value = 2 }. */
const scalarValue = (tag: string, value: number): Buffer => Buffer.concat([bytesField(1, tag), floatField(2, value)]);

// Summary.Value { tag = 1, metadata = 9 { plugin_data = 1 { plugin_name = 1 } }, tensor = 8 }:
// the text plugin reads a DT_STRING (7) tensor of shape [] (TensorProto dtype = 1, string_val = 8).
function textValue(tag: string, text: string): Buffer {
  const metadata = bytesField(1, bytesField(1, 'text'));
  const tensor = Buffer.concat([varintField(1, 7), bytesField(2, Buffer.alloc(0)), bytesField(8, text)]);
  return Buffer.concat([bytesField(1, tag), bytesField(9, metadata), bytesField(8, tensor)]);
}

// SessionLog { status = 1 }, START = 1: TensorBoard drops the points earlier files hold at this step
// or later (what a killed run logged after the checkpoint a resumed run restarts from).
const sessionStart = (): Buffer => bytesField(6, varintField(1, 1));

export interface TensorBoardOptions {
  /** Clock in milliseconds (tests). */
  now?: () => number;
  /** A resumed run's first step: earlier files' events from here on are discarded (PyTorch's purge_step). */
  purgeStep?: number;
}

let filesOpened = 0;

/** Appends events to `events.out.tfevents.<seconds>.<host>.<pid>.<n>` in `logDir`; each log call is flushed. */
export class TensorBoardWriter {
  readonly file: string;
  #fd: number;

  private readonly now: () => number;

  constructor(logDir: string, options: TensorBoardOptions = {}) {
    const now = options.now ?? Date.now;
    this.now = now;
    fs.mkdirSync(logDir, { recursive: true });
    const seconds = Math.floor(now() / 1000);
    this.file = path.join(logDir, `events.out.tfevents.${seconds}.${hostname()}.${process.pid}.${filesOpened++}`);
    try {
      this.#fd = fs.openSync(this.file, 'a');
    } catch (error) {
      throw new Error(`cannot open the TensorBoard event file ${this.file}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.#write([event(now() / 1000, 0, bytesField(3, 'brain.Event:2'))]);
    if (options.purgeStep !== undefined) this.#write([event(now() / 1000, options.purgeStep, sessionStart())]);
  }

  /** One event per value, all at `step`; non-finite values are written as they are (TensorBoard shows them). */
  logScalars(step: number, values: Record<string, number>): void {
    const wallTime = this.now() / 1000;
    const events = Object.entries(values).map(([tag, v]) =>
      event(wallTime, step, bytesField(5, bytesField(1, scalarValue(tag, v)))),
    );
    this.#write(events);
  }

  /** A text summary (the run's config, say), shown in TensorBoard's Text tab. */
  logText(step: number, tag: string, text: string): void {
    this.#write([event(this.now() / 1000, step, bytesField(5, bytesField(1, textValue(tag, text))))]);
  }

  close(): void {
    if (this.#fd === -1) return;
    fs.closeSync(this.#fd);
    this.#fd = -1;
  }

  #write(events: Buffer[]): void {
    if (this.#fd === -1) throw new Error(`${this.file}: the TensorBoard writer is closed`);
    writeAll(this.#fd, Buffer.concat(events.map(tfRecord)));
    fs.fsyncSync(this.#fd);
  }
}
