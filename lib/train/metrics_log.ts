// The metrics jsonl: one JSON object per log call (HF's log_history entries: step, epoch and the
// metrics), appended and fsynced, so a killed run keeps every line it logged. Only the last line can
// be cut short by a kill; the reader drops it, and a resumed run first drops the lines logged after
// the checkpoint it resumes from, so the file reads as one uninterrupted run.
import fs from 'node:fs';
import path from 'node:path';
import { writeAll, writeAtomic } from '../util/atomic_write.js';

export interface LogEntry {
  step: number;
  [metric: string]: unknown;
}

/** Reads a metrics jsonl; a malformed line other than a cut-off last one names the file and line. */
export function readMetricsLog(file: string): LogEntry[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const entries: LogEntry[] = [];
  lines.forEach((line, i) => {
    if (line === '') return;
    const last = i === lines.length - 1; // no newline after it: the write was cut short
    try {
      const entry = JSON.parse(line) as LogEntry;
      if (!last) entries.push(checkEntry(entry, `${file}:${i + 1}`));
    } catch (error) {
      if (!last) throw new SyntaxError(`${file}:${i + 1}: invalid metrics line: ${(error as Error).message}`);
    }
  });
  return entries;
}

function checkEntry(entry: LogEntry, where: string): LogEntry {
  if (typeof entry !== 'object' || entry === null || !Number.isInteger(entry.step)) {
    throw new SyntaxError(`${where}: a metrics line must be an object with an integer step`);
  }
  return entry;
}

export class MetricsLog {
  #fd: number;

  /**
   * Opens `file` for appending. With `resumeStep`, lines logged after that step (by the run being
   * resumed, after its last checkpoint) are dropped first, atomically.
   */
  constructor(
    readonly file: string,
    options: { resumeStep?: number } = {},
  ) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (options.resumeStep !== undefined && fs.existsSync(file)) this.#truncateAfter(options.resumeStep);
    this.#fd = fs.openSync(file, 'a');
  }

  append(entry: LogEntry): void {
    if (this.#fd === -1) throw new Error(`${this.file}: the metrics log is closed`);
    checkEntry(entry, this.file);
    writeAll(this.#fd, Buffer.from(`${JSON.stringify(entry)}\n`, 'utf8'));
    fs.fsyncSync(this.#fd);
  }

  close(): void {
    if (this.#fd === -1) return;
    fs.closeSync(this.#fd);
    this.#fd = -1;
  }

  #truncateAfter(step: number): void {
    const kept = readMetricsLog(this.file).filter((e) => e.step <= step);
    writeAtomic(this.file, kept.map((e) => `${JSON.stringify(e)}\n`).join(''));
  }
}
