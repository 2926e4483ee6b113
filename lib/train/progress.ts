// What a run prints: the start banner, then progress. On a terminal, one cli-progress bar redrawn in
// place (step, loss, it/s, ETA); elsewhere (a log file, CI) one plain line per update, since
// carriage returns would pile up there. Rate and ETA count only the steps of this process, so a
// resumed run does not report the restored steps as instantly done.
import cliProgress from 'cli-progress';

export interface ProgressStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  stream?: ProgressStream;
  /** The step this process starts from (a resumed run's global_step). */
  startStep?: number;
  /** Milliseconds; injectable for tests. */
  now?: () => number;
}

/** `1h02m03s`, `2m05s`, `7s`; `?` before any rate is known. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const [h, m, rest] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (h > 0) return `${h}h${pad(m)}m${pad(rest)}s`;
  return m > 0 ? `${m}m${pad(rest)}s` : `${rest}s`;
}

export class TrainingProgress {
  readonly #stream: ProgressStream;
  readonly #now: () => number;
  readonly #startStep: number;
  readonly #startTime: number;
  readonly #bar: cliProgress.SingleBar | null = null;

  constructor(
    readonly totalSteps: number,
    options: ProgressOptions = {},
  ) {
    this.#stream = options.stream ?? process.stderr;
    this.#now = options.now ?? Date.now;
    this.#startStep = options.startStep ?? 0;
    this.#startTime = this.#now();
    if (this.#stream.isTTY !== true) return;
    this.#bar = new cliProgress.SingleBar(
      {
        format: 'step {value}/{total} |{bar}| loss {loss} | {rate} it/s | ETA {etaText}',
        stream: this.#stream as NodeJS.WritableStream,
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    this.#bar.start(totalSteps, this.#startStep, { loss: '-', rate: '-', etaText: '?' });
  }

  /** The numbers shown for `step`: steps per second and seconds left. */
  rate(step: number): { itPerSec: number; etaSeconds: number } {
    const seconds = (this.#now() - this.#startTime) / 1000;
    const done = step - this.#startStep;
    const itPerSec = seconds > 0 && done > 0 ? done / seconds : Number.NaN;
    return { itPerSec, etaSeconds: (this.totalSteps - step) / itPerSec };
  }

  update(step: number, metrics: { loss?: number } = {}): void {
    const { itPerSec, etaSeconds } = this.rate(step);
    const loss = metrics.loss === undefined ? '-' : metrics.loss.toFixed(4);
    const rate = Number.isFinite(itPerSec) ? itPerSec.toFixed(2) : '-';
    const etaText = formatDuration(etaSeconds);
    if (this.#bar !== null) this.#bar.update(step, { loss, rate, etaText });
    else this.#stream.write(`step ${step}/${this.totalSteps} loss ${loss} ${rate} it/s ETA ${etaText}\n`);
  }

  stop(): void {
    this.#bar?.stop();
  }
}

export interface BannerInfo {
  /** The method (dpo, mpo, kto, grpo...). */
  method: string;
  /** The run's resolved config, printed as JSON. */
  config: unknown;
  trainableParams: number;
  totalParams: number;
  outputDir: string;
  /** Where metrics go besides the output directory (report_to). */
  reportTo: readonly string[];
  /** The checkpoint being resumed, if any. */
  resumeFrom?: string | null;
}

/** The lines printed once at the start: what runs, how many parameters train, where output goes. */
export function startBanner(info: BannerInfo): string {
  const count = (n: number): string => n.toLocaleString('en-US');
  const pct = info.totalParams === 0 ? 0 : (100 * info.trainableParams) / info.totalParams;
  const reports = info.reportTo.length === 0 ? 'none' : info.reportTo.join(', ');
  const lines = [
    `vlalign ${info.method}: trainable params ${count(info.trainableParams)} / total ${count(info.totalParams)} ` +
      `(${pct.toFixed(4)}%); output: ${info.outputDir}; report_to: ${reports}`,
  ];
  if (info.resumeFrom) lines.push(`resuming from ${info.resumeFrom}`);
  lines.push(`config: ${JSON.stringify(info.config)}`);
  return `${lines.join('\n')}\n`;
}
