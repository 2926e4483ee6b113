// The resumable streaming loop the generating pipelines share. Input rows are read one at a
// time and handled in batches; each batch's output lines are appended to the output jsonl with
// one write and an fsync, every input row's lines together and in input order. A restarted run
// reads the output back, checks that its rows are the input's first rows (by row key), cuts it
// back to the last whole batch (a torn last write and a half-done batch go), and carries on from
// there. Batches are numbered from the input's start and seeded by that number, so the finished
// file is byte for byte the one an uninterrupted run writes.
//
// runStreaming is the same contract for an engine that batches continuously: rows are handed out
// as it asks for them and come back in the order they finish; a reorder buffer holds them until
// every row before them is back, then appends them in input order. A row's output depends only on
// the row and its index (its own random stream), so a resumed run keeps every whole row and goes on
// from the next one.
import fs from 'node:fs';
import readline from 'node:readline';
import { DataError, type RecordSource } from '../data/records.js';
import { inBatches } from '../eval/record_source.js';
import type { GenerationEngine } from './engine.js';
import { readJsonlRows, type InputRow } from './input.js';

/** What both generating pipelines take. */
export interface GeneratingOptions {
  input: string;
  /** The output jsonl; an existing one is resumed. */
  output: string;
  engine: GenerationEngine;
  /** Image paths resolve here (default: the input's folder). */
  imageRoot?: string;
  /** Output lines per input row (MMPR's --num-return-sequences). */
  numReturnSequences?: number;
  /** InternVL tiles per image (MMPR's --max-num). */
  maxNum?: number;
  /** Rows generated together (default 8); batch b is seeded with the engine's seed + b. */
  batchSize?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface ResumableRun<T> {
  input: string;
  output: string;
  batchSize: number;
  /** Output lines per input row. */
  linesPerRow: number;
  /** Checks an input row (throwing a DataError naming its line) and prepares it. */
  parse(row: Record<string, unknown>, source: RecordSource): T;
  /** The row key of an input row ... */
  inputKey(item: T): string;
  /** ... and of an output line, which must agree for the line's row. */
  outputKey(line: Record<string, unknown>): string;
  /** The output lines of each row of a batch (linesPerRow each); `batchIndex` counts from the input's start. */
  process(batch: readonly T[], batchIndex: number): Promise<Record<string, unknown>[][]>;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** The pipeline's name in progress lines. */
  name: string;
}

export interface RunSummary {
  /** Input rows in the output at the end. */
  rows: number;
  /** Of those, rows found done in an existing output and kept. */
  resumed: number;
  /** Output lines at the end. */
  lines: number;
}

/** A run whose rows come back one by one, in any order (continuous batching). */
export interface StreamingRun<T> extends Omit<ResumableRun<T>, 'process' | 'batchSize'> {
  /**
   * Turns the rows (pulled lazily, `index` counting from the input's start) into each row's output
   * lines (linesPerRow), yielded as rows finish, in any order.
   */
  stream(items: AsyncIterable<IndexedItem<T>>): AsyncIterable<{ index: number; lines: Record<string, unknown>[] }>;
}

export interface IndexedItem<T> {
  /** The row's position among the input's rows (0 = the first row). */
  index: number;
  item: T;
}

/** Runs (or resumes) `run` to the end of its input. */
export async function runResumable<T>(run: ResumableRun<T>): Promise<RunSummary> {
  checkPositive(run.batchSize, 'batchSize');
  checkPositive(run.linesPerRow, 'linesPerRow');
  if (!fs.existsSync(run.input)) throw new Error(`input file ${run.input} does not exist`);
  const done = await doneRows(run);
  const resumed = Math.floor(done.rows / run.batchSize) * run.batchSize;
  fs.truncateSync(run.output, done.ends[resumed - 1] ?? 0);
  const fd = fs.openSync(run.output, 'a');
  const started = Date.now();
  let rows = 0;
  try {
    const items = skipRows(readJsonlRows(run.input), resumed);
    let batchIndex = resumed / run.batchSize;
    for await (const batch of inBatches(items, run.batchSize)) {
      const parsed = batch.map(({ row, source }) => run.parse(row, source));
      const out = await run.process(parsed, batchIndex);
      appendLines(fd, out, run.linesPerRow);
      rows += batch.length;
      batchIndex += 1;
      const rate = rows / Math.max((Date.now() - started) / 1000, 1e-3);
      run.log?.(`${run.name}: ${resumed + rows} rows done (${resumed} resumed), ${rate.toFixed(2)} rows/s`);
    }
  } finally {
    fs.closeSync(fd);
  }
  const total = resumed + rows;
  return { rows: total, resumed, lines: total * run.linesPerRow };
}

/** Runs (or resumes) a streaming `run` to the end of its input; every whole row of an existing output is kept. */
export async function runStreaming<T>(run: StreamingRun<T>): Promise<RunSummary> {
  checkPositive(run.linesPerRow, 'linesPerRow');
  if (!fs.existsSync(run.input)) throw new Error(`input file ${run.input} does not exist`);
  const done = await doneRows(run);
  const resumed = done.rows;
  fs.truncateSync(run.output, done.ends[resumed - 1] ?? 0);
  const fd = fs.openSync(run.output, 'a');
  const started = Date.now();
  let next = resumed; // the next row to append
  let pulled = resumed; // rows handed to the stream so far
  const waiting = new Map<number, Record<string, unknown>[]>(); // the reorder buffer
  async function* items(): AsyncGenerator<IndexedItem<T>> {
    for await (const { row, source } of skipRows(readJsonlRows(run.input), resumed)) {
      const item = run.parse(row, source);
      pulled += 1;
      yield { index: pulled - 1, item };
    }
  }
  try {
    for await (const { index, lines } of run.stream(items())) {
      if (!Number.isInteger(index) || index < next || index >= pulled || waiting.has(index)) {
        throw new Error(`${run.name}: the engine returned row ${index} twice or before it was handed out`);
      }
      waiting.set(index, lines);
      const ready: Record<string, unknown>[][] = [];
      for (let lines = waiting.get(next); lines !== undefined; lines = waiting.get(next)) {
        ready.push(lines);
        waiting.delete(next);
        next += 1;
      }
      if (ready.length === 0) continue;
      appendLines(fd, ready, run.linesPerRow);
      const rate = (next - resumed) / Math.max((Date.now() - started) / 1000, 1e-3);
      run.log?.(`${run.name}: ${next} rows done (${resumed} resumed), ${rate.toFixed(2)} rows/s`);
    }
  } finally {
    fs.closeSync(fd);
  }
  if (waiting.size > 0 || next !== pulled) {
    throw new Error(`${run.name}: the engine ended with rows ${next}..${pulled - 1} not returned`);
  }
  return { rows: next, resumed, lines: next * run.linesPerRow };
}

function checkPositive(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`Expected a positive integer for ${name} but received ${value}`);
}

async function* skipRows(rows: AsyncIterable<InputRow>, count: number): AsyncGenerator<InputRow> {
  let seen = 0;
  for await (const row of rows) if (seen++ >= count) yield row;
}

function appendLines(fd: number, out: Record<string, unknown>[][], linesPerRow: number): void {
  let text = '';
  out.forEach((lines, i) => {
    if (lines.length !== linesPerRow)
      throw new Error(`row ${i} of the write gave ${lines.length} lines, not ${linesPerRow}`);
    for (const line of lines) text += `${JSON.stringify(line)}\n`;
  });
  fs.writeSync(fd, text);
  fs.fsyncSync(fd);
}

interface DoneRows {
  /** Leading input rows whose linesPerRow lines are all in the output. */
  rows: number;
  /** Byte offset in the output after each such row. */
  ends: number[];
}

// Reads an existing output against the input: whole rows in input order count as done; a last
// line without its newline (a torn write) or a row with too few lines ends the scan. A line that
// belongs to another row than the input's next one means the output is another run's.
async function doneRows<T>(run: Omit<ResumableRun<T>, 'process' | 'batchSize'>): Promise<DoneRows> {
  const result: DoneRows = { rows: 0, ends: [] };
  if (!fs.existsSync(run.output)) {
    fs.writeFileSync(run.output, '');
    return result;
  }
  const inputRows = readJsonlRows(run.input)[Symbol.asyncIterator]();
  let offset = 0;
  let lineNumber = 0;
  let linesOfRow = 0;
  let expected: string | null = null;
  for await (const { text, complete } of outputLines(run.output)) {
    lineNumber += 1;
    const line = complete ? parseOutputLine(text, { file: run.output, line: lineNumber }) : null;
    if (line === null) break;
    if (linesOfRow === 0) {
      const next = await inputRows.next();
      if (next.done)
        throw new DataError({ file: run.output, line: lineNumber }, `more rows than the input ${run.input} has`);
      expected = run.inputKey(run.parse(next.value.row, next.value.source));
    }
    if (run.outputKey(line) !== expected) {
      throw new DataError(
        { file: run.output, line: lineNumber },
        `belongs to another row than line ${result.rows + 1}'s row of ${run.input}: the output is from another input; remove it or choose another output`,
      );
    }
    offset += Buffer.byteLength(text) + 1;
    linesOfRow += 1;
    if (linesOfRow === run.linesPerRow) {
      result.rows += 1;
      result.ends.push(offset);
      linesOfRow = 0;
    }
  }
  await inputRows.return?.(undefined);
  return result;
}

function parseOutputLine(text: string, source: RecordSource): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    throw new DataError(source, 'is not JSON; the output is damaged (not by a killed run: those cut at a newline)');
  }
}

// Lines of a file with whether each ended with a newline (only the last may not).
async function* outputLines(file: string): AsyncGenerator<{ text: string; complete: boolean }> {
  const size = fs.statSync(file).size;
  const endsWithNewline = size > 0 && lastByte(file, size) === 0x0a;
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let pending: string | null = null;
  for await (const text of lines) {
    if (pending !== null) yield { text: pending, complete: true };
    pending = text;
  }
  if (pending !== null) yield { text: pending, complete: endsWithNewline };
}

function lastByte(file: string, size: number): number {
  const fd = fs.openSync(file, 'r');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, size - 1);
    return byte[0]!;
  } finally {
    fs.closeSync(fd);
  }
}
