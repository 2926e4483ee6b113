// A jsonl file as random-access lines: one streaming pass records where each non-blank line
// starts and how long it is (typed arrays, ~12 bytes a line), and a line is read by offset on demand,
// so a 1.2M-line annotation file never sits whole in memory.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { parseJson } from '../util/json_file.js';
import { DataError } from './records.js';

const NEWLINE = 0x0a;

export class JsonlIndex {
  private constructor(
    readonly file: string,
    private readonly starts: Float64Array,
    private readonly lengths: Uint32Array,
    private readonly lineNumbers: Uint32Array,
  ) {}

  /** Indexes `file` in one pass; blank lines are not rows. */
  static async build(file: string): Promise<JsonlIndex> {
    const builder = new IndexBuilder();
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) builder.scan(chunk as Buffer);
    builder.finish();
    return new JsonlIndex(file, ...builder.arrays());
  }

  get length(): number {
    return this.starts.length;
  }

  /** 1-based line number of row `i`. */
  lineNumber(i: number): number {
    return this.lineNumbers[i] as number;
  }

  /** The text of row `i`. */
  async text(i: number): Promise<string> {
    if (!Number.isInteger(i) || i < 0 || i >= this.length)
      throw new RangeError(`${this.file}: row ${i} out of range [0, ${this.length})`);
    const buffer = Buffer.allocUnsafe(this.lengths[i] as number);
    const handle = await open(this.file, 'r');
    try {
      await handle.read(buffer, 0, buffer.length, this.starts[i] as number);
    } finally {
      await handle.close();
    }
    return buffer.toString('utf8');
  }

  /** Row `i` parsed as a JSON object; a malformed line is a DataError naming file:line. */
  async object(i: number): Promise<Record<string, unknown>> {
    const source = { file: this.file, line: this.lineNumber(i) };
    let value: unknown;
    try {
      value = parseJson(await this.text(i), `${this.file}:${source.line}`);
    } catch (error) {
      throw new DataError(source, `malformed JSON line (${(error as Error).message.split(': invalid JSON: ')[1]})`, {
        cause: error,
      });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new DataError(source, 'expected a JSON object');
    return value as Record<string, unknown>;
  }
}

/** Growable typed arrays filled while scanning bytes. */
class IndexBuilder {
  private starts = new Float64Array(1024);
  private lengths = new Uint32Array(1024);
  private lines = new Uint32Array(1024);
  private count = 0;
  private position = 0;
  private lineStart = 0;
  private lineNumber = 1;
  private blank = true;

  scan(chunk: Buffer): void {
    for (let k = 0; k < chunk.length; k += 1) {
      const byte = chunk[k] as number;
      if (byte === NEWLINE) {
        this.endLine(this.position + k);
        this.lineStart = this.position + k + 1;
        this.lineNumber += 1;
        this.blank = true;
      } else if (this.blank && byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) this.blank = false;
    }
    this.position += chunk.length;
  }

  finish(): void {
    this.endLine(this.position);
  }

  arrays(): [Float64Array, Uint32Array, Uint32Array] {
    return [this.starts.slice(0, this.count), this.lengths.slice(0, this.count), this.lines.slice(0, this.count)];
  }

  private endLine(end: number): void {
    if (this.blank) return;
    if (this.count === this.starts.length) this.grow();
    this.starts[this.count] = this.lineStart;
    this.lengths[this.count] = end - this.lineStart;
    this.lines[this.count] = this.lineNumber;
    this.count += 1;
  }

  private grow(): void {
    const size = this.starts.length * 2;
    const starts = new Float64Array(size);
    const lengths = new Uint32Array(size);
    const lines = new Uint32Array(size);
    starts.set(this.starts);
    lengths.set(this.lengths);
    lines.set(this.lines);
    [this.starts, this.lengths, this.lines] = [starts, lengths, lines];
  }
}
