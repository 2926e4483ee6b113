// Where a run's numbers go: the metrics jsonl (always), TensorBoard event files (report_to), the
// trainer_state log history, and the terminal (a progress bar on a TTY, plain lines otherwise).
import fs from 'node:fs';
import path from 'node:path';
import type { LogEntry } from './metrics_log.js';
import { MetricsLog } from './metrics_log.js';
import { TrainingProgress, type ProgressStream } from './progress.js';
import { TensorBoardWriter } from './tensorboard.js';

export const METRICS_FILE = 'metrics.jsonl';
export const COMPLETIONS_FILE = 'completions.jsonl';

export interface ReporterOptions {
  outputDir: string;
  /** TensorBoard's folder (HF's logging_dir); default outputDir/runs. */
  loggingDir: string | null;
  reportTo: readonly string[];
  totalSteps: number;
  /** The step a resumed run starts from: later lines of the jsonl are dropped. */
  startStep: number;
  stream?: ProgressStream;
}

export class Reporters {
  readonly history: LogEntry[];
  readonly #metrics: MetricsLog;
  readonly #tensorboard: TensorBoardWriter | null;
  readonly #progress: TrainingProgress;
  readonly #stream: ProgressStream;
  readonly #completionsFile: string;

  constructor(options: ReporterOptions, history: LogEntry[] = []) {
    this.history = [...history];
    this.#stream = options.stream ?? process.stderr;
    this.#completionsFile = path.join(options.outputDir, COMPLETIONS_FILE);
    this.#metrics = new MetricsLog(path.join(options.outputDir, METRICS_FILE), { resumeStep: options.startStep });
    const tensorboard = options.reportTo.includes('tensorboard');
    this.#tensorboard = tensorboard
      ? new TensorBoardWriter(
          options.loggingDir ?? path.join(options.outputDir, 'runs'),
          options.startStep > 0 ? { purgeStep: options.startStep + 1 } : {},
        )
      : null;
    this.#progress = new TrainingProgress(options.totalSteps, { stream: this.#stream, startStep: options.startStep });
  }

  /** The banner and the config, once at the start (TensorBoard's text tab gets the config too). */
  start(banner: string, config: unknown): void {
    this.#stream.write(banner);
    this.#tensorboard?.logText(0, 'args', `\`\`\`json\n${JSON.stringify(config, null, 2)}\n\`\`\``);
  }

  /** A line for the person watching (the terminal), outside the metrics. */
  note(line: string): void {
    this.#stream.write(`vlalign: ${line}\n`);
  }

  step(step: number, loss: number): void {
    this.#progress.update(step, { loss });
  }

  /** One log_history entry: the jsonl, TensorBoard (train/ or eval/ tags as HF), the terminal. */
  log(entry: LogEntry): void {
    this.history.push(entry);
    this.#metrics.append(entry);
    const scalars = Object.entries(entry).filter(
      (kv): kv is [string, number] => kv[0] !== 'step' && kv[0] !== 'epoch' && typeof kv[1] === 'number',
    );
    this.#tensorboard?.logScalars(entry.step, Object.fromEntries(scalars.map(([k, v]) => [tagOf(k), v])));
    if (this.#stream.isTTY !== true) this.#stream.write(`${JSON.stringify(entry)}\n`);
  }

  /** An online method's sampled completions (TRL's log_completions table): one jsonl line each, and TensorBoard text. */
  completions(step: number, rows: ReadonlyArray<Record<string, unknown>>): void {
    if (rows.length === 0) return;
    const lines = rows.map((row) => JSON.stringify({ step, ...row })).join('\n');
    fs.appendFileSync(this.#completionsFile, `${lines}\n`);
    this.#tensorboard?.logText(
      step,
      'completions',
      rows.map((row) => `\`\`\`json\n${JSON.stringify(row, null, 1)}\n\`\`\``).join('\n\n'),
    );
  }

  close(): void {
    this.#progress.stop();
    this.#metrics.close();
    this.#tensorboard?.close();
  }
}

// HF's TensorBoard callback: eval_x → eval/x, everything else → train/x.
function tagOf(key: string): string {
  return key.startsWith('eval_') ? `eval/${key.slice(5)}` : `train/${key}`;
}
