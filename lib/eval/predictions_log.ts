// The per-record log an evaluation run appends to and resumes from: one JSON line per scored record
// (keyed by record id), fsynced after each batch. A run killed mid-append leaves at most one cut
// last line, which reopening drops (the file is truncated to its last whole line), so the record is
// scored again and the log ends as an uninterrupted run's does. A training evaluation writes the
// same lines as one whole file per step instead (writePredictions, atomic).
import fs from 'node:fs';
import { writeAll, writeAtomic } from '../util/atomic_write.js';

/** One scored record. */
export interface PredictionLine {
  id: string;
  /** The answer text (answers), or empty (preference pairs). */
  prediction: string;
  score: number;
  /** Named parts of the score (virft_detection; a pair's rewards). */
  parts?: Record<string, number>;
  /** The record's groups, when its columns name them. */
  data_source?: string;
  question_type?: string;
  finish_reason?: string;
  /**
   * What the answer was scored against (a training evaluation's files): the reference answers, the
   * refcoco box with the image size, or ViRFT's solution text.
   */
  reference?: unknown;
}

/** The lines as the files hold them: one JSON object a line. */
export function predictionText(lines: readonly PredictionLine[]): string {
  return lines.map((l) => `${JSON.stringify(l)}\n`).join('');
}

/** Writes `lines` as the whole of `file`, atomically (a training evaluation's predictions at one step). */
export function writePredictions(file: string, lines: readonly PredictionLine[]): void {
  writeAtomic(file, predictionText(lines));
}

export class PredictionsLog {
  readonly #lines = new Map<string, PredictionLine>();

  private constructor(readonly file: string) {}

  /** Opens (or creates) the log, keeping its whole lines and dropping a cut last one. */
  static open(file: string): PredictionsLog {
    const log = new PredictionsLog(file);
    if (!fs.existsSync(file)) return log;
    const text = fs.readFileSync(file, 'utf8');
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) fs.truncateSync(file, Buffer.byteLength(text.slice(0, end), 'utf8'));
    text
      .slice(0, end)
      .split('\n')
      .forEach((line, i) => {
        if (line === '') return;
        const entry = parseLine(line, `${file}:${i + 1}`);
        log.#lines.set(entry.id, entry);
      });
    return log;
  }

  has(id: string): boolean {
    return this.#lines.has(id);
  }

  get(id: string): PredictionLine | undefined {
    return this.#lines.get(id);
  }

  get size(): number {
    return this.#lines.size;
  }

  /** Appends `lines` and fsyncs: once this returns, they survive a kill. */
  append(lines: readonly PredictionLine[]): void {
    if (lines.length === 0) return;
    const fd = fs.openSync(this.file, 'a');
    try {
      writeAll(fd, Buffer.from(predictionText(lines), 'utf8'));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    for (const line of lines) this.#lines.set(line.id, line);
  }
}

function parseLine(line: string, where: string): PredictionLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new Error(`${where}: not a JSON line of an evaluation log (${(error as Error).message})`);
  }
  const entry = value as PredictionLine;
  if (typeof entry?.id !== 'string' || typeof entry.score !== 'number' || typeof entry.prediction !== 'string') {
    throw new Error(`${where}: an evaluation log line needs id, prediction and score`);
  }
  return entry;
}
