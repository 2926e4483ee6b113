// Checkpoint directories that a kill cannot corrupt. A save writes everything into
// `checkpoint-N.tmp-<pid>/` (each file through the shared atomic writer), then trainer_state.json,
// then the completion marker, and only then renames the directory to `checkpoint-N` and fsyncs the
// output directory. A kill at any point leaves the previous checkpoints as they were; readers only
// see directories named `checkpoint-N` that hold the marker, and the next save removes the leftovers
// of dead processes. Rotation renames a checkpoint away before deleting it, for the same reason.
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonFile, readJsonObject } from '../util/json_file.js';
import { syncDirectory, writeAtomic } from '../util/atomic_write.js';
import type { LogEntry } from './metrics_log.js';

export const TRAINER_STATE_FILE = 'trainer_state.json';
/** Written last: a checkpoint without it is incomplete. Lists every file with its size in bytes. */
export const COMPLETE_MARKER = 'checkpoint_complete.json';

/** transformers' TrainerState, field for field (the file is read by HF tooling too). */
export interface TrainerState {
  epoch: number;
  global_step: number;
  max_steps: number;
  logging_steps: number;
  eval_steps: number;
  save_steps: number;
  train_batch_size: number | null;
  num_train_epochs: number;
  num_input_tokens_seen: number;
  total_flos: number;
  log_history: LogEntry[];
  best_metric: number | null;
  best_global_step: number | null;
  best_model_checkpoint: string | null;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  is_hyper_param_search: boolean;
  trial_name: string | null;
  trial_params: Record<string, unknown> | null;
  stateful_callbacks: Record<string, unknown>;
}

/** A TrainerState with HF's defaults for the fields not given. */
export function trainerState(fields: Partial<TrainerState> & Pick<TrainerState, 'global_step'>): TrainerState {
  return {
    epoch: 0,
    max_steps: 0,
    logging_steps: 500,
    eval_steps: 500,
    save_steps: 500,
    train_batch_size: null,
    num_train_epochs: 0,
    num_input_tokens_seen: 0,
    total_flos: 0,
    log_history: [],
    best_metric: null,
    best_global_step: null,
    best_model_checkpoint: null,
    is_local_process_zero: true,
    is_world_process_zero: true,
    is_hyper_param_search: false,
    trial_name: null,
    trial_params: null,
    stateful_callbacks: {},
    ...fields,
  };
}

/** Writes one part of a checkpoint (adapter, optimizer, ...) into the directory being filled. */
export type CheckpointWriter = (dir: string) => void | Promise<void>;

export interface SavedCheckpoint {
  dir: string;
  step: number;
}

export interface LoadedCheckpoint extends SavedCheckpoint {
  trainerState: TrainerState;
  /** Relative path → size in bytes, as the marker lists them (all checked to be present). */
  files: Record<string, number>;
}

const FINAL = /^checkpoint-(\d+)$/;
const LEFTOVER = /^(?:[a-z]+-)?checkpoint-\d+\.(?:tmp|old|deleted)-(\d+)$/;

/** The complete checkpoints in `outputDir`, oldest step first. */
export function listCheckpoints(outputDir: string): SavedCheckpoint[] {
  if (!fs.existsSync(outputDir)) return [];
  return fs
    .readdirSync(outputDir, { withFileTypes: true })
    .flatMap((entry) => {
      const step = FINAL.exec(entry.name)?.[1];
      const dir = path.join(outputDir, entry.name);
      const complete = entry.isDirectory() && step !== undefined && fs.existsSync(path.join(dir, COMPLETE_MARKER));
      return complete ? [{ dir, step: Number(step) }] : [];
    })
    .sort((a, b) => a.step - b.step);
}

/** The newest complete checkpoint in `outputDir`, or null. */
export function latestCheckpoint(outputDir: string): string | null {
  return listCheckpoints(outputDir).at(-1)?.dir ?? null;
}

/** `resume_from_checkpoint`: a path, true for the newest in outputDir (an error if none), false/undefined for none. */
export function resolveResume(outputDir: string, resume: string | boolean | undefined): string | null {
  if (resume === undefined || resume === false) return null;
  if (typeof resume === 'string') return resume;
  const latest = latestCheckpoint(outputDir);
  if (latest === null) throw new Error(`resume_from_checkpoint: no complete checkpoint-N in ${outputDir}`);
  return latest;
}

/** Reads a checkpoint's marker and trainer state, checking that every file the marker lists is there. */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const markerFile = path.join(dir, COMPLETE_MARKER);
  if (!fs.existsSync(markerFile)) throw new Error(`${dir}: not a complete checkpoint (no ${COMPLETE_MARKER})`);
  const marker = readJsonObject(markerFile) as { global_step: unknown; files: unknown };
  if (!Number.isInteger(marker.global_step) || typeof marker.files !== 'object' || marker.files === null) {
    throw new Error(`${markerFile}: expected { global_step: integer, files: { path: bytes } }`);
  }
  const files = marker.files as Record<string, number>;
  const problems = Object.entries(files).flatMap(([file, size]) => {
    const stat = fs.statSync(path.join(dir, file), { throwIfNoEntry: false });
    if (stat === undefined) return [`${file} is missing`];
    return stat.size === size ? [] : [`${file} has ${stat.size} bytes, the marker says ${size}`];
  });
  if (problems.length > 0) throw new Error(`${dir}: damaged checkpoint:\n  ${problems.join('\n  ')}`);
  const trainerState = readJsonObject(path.join(dir, TRAINER_STATE_FILE)) as unknown as TrainerState;
  return { dir, step: marker.global_step as number, trainerState, files };
}

export interface CheckpointManagerOptions {
  /** Keep only the newest this many complete checkpoints (HF's save_total_limit). */
  saveTotalLimit?: number | null;
  /**
   * Name prefixes of directories that belong to checkpoint-N beside it (`zero-` for ZeRO's
   * `zero-checkpoint-N` shards): rotation removes them with their checkpoint.
   */
  companions?: readonly string[];
}

export class CheckpointManager {
  constructor(
    readonly outputDir: string,
    readonly options: CheckpointManagerOptions = {},
  ) {
    const limit = options.saveTotalLimit;
    if (limit != null && (!Number.isInteger(limit) || limit < 1)) {
      throw new RangeError(`Expected a positive integer or null for save_total_limit but received ${limit}`);
    }
  }

  /** Writes `checkpoint-<state.global_step>` through `writers`, then the trainer state and the marker. */
  async save(state: TrainerState, writers: readonly CheckpointWriter[]): Promise<string> {
    const step = state.global_step;
    if (!Number.isInteger(step) || step < 0)
      throw new RangeError(`checkpoint: global_step must be an integer >= 0, got ${step}`);
    fs.mkdirSync(this.outputDir, { recursive: true });
    this.#removeLeftovers();
    const final = path.join(this.outputDir, `checkpoint-${step}`);
    const tmp = `${final}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    for (const write of writers) await write(tmp);
    writeTrainerState(tmp, state);
    writeJsonFile(path.join(tmp, COMPLETE_MARKER), { global_step: step, files: listFiles(tmp) });
    this.#publish(tmp, final);
    this.#rotate();
    return final;
  }

  // The rename is the commit point; an earlier save of the same step is moved aside first.
  #publish(tmp: string, final: string): void {
    const old = `${final}.old-${process.pid}`;
    const replacing = fs.existsSync(final);
    if (replacing) fs.renameSync(final, old);
    fs.renameSync(tmp, final);
    syncDirectory(this.outputDir);
    if (replacing) fs.rmSync(old, { recursive: true, force: true });
  }

  #rotate(): void {
    const limit = this.options.saveTotalLimit;
    if (limit == null) return;
    const all = listCheckpoints(this.outputDir);
    for (const { dir } of all.slice(0, Math.max(0, all.length - limit))) this.#remove(dir);
    this.#removeOrphanCompanions(all.at(-1)?.step ?? -1);
  }

  // A companion whose checkpoint is gone, from a step up to the newest checkpoint's: its checkpoint
  // was rotated out (this save's, or one cut short before it got to the companion). A later step's
  // companion without its checkpoint is a save in progress (ZeRO's shards are written first): kept.
  #removeOrphanCompanions(newestStep: number): void {
    for (const prefix of this.options.companions ?? []) {
      for (const name of fs.readdirSync(this.outputDir)) {
        const step = name.startsWith(prefix) ? FINAL.exec(name.slice(prefix.length))?.[1] : undefined;
        if (step === undefined || Number(step) > newestStep) continue;
        if (!fs.existsSync(path.join(this.outputDir, `checkpoint-${step}`)))
          this.#remove(path.join(this.outputDir, name));
      }
    }
  }

  // Renamed first, so a kill mid-removal leaves a leftover the next save clears, never half a directory.
  #remove(dir: string): void {
    const doomed = `${dir}.deleted-${process.pid}`;
    fs.renameSync(dir, doomed);
    syncDirectory(this.outputDir);
    fs.rmSync(doomed, { recursive: true, force: true });
  }

  // Temp, replaced and half-deleted directories of processes that no longer run.
  #removeLeftovers(): void {
    for (const name of fs.readdirSync(this.outputDir)) {
      const pid = LEFTOVER.exec(name)?.[1];
      if (pid !== undefined && !processAlive(Number(pid))) {
        fs.rmSync(path.join(this.outputDir, name), { recursive: true, force: true });
      }
    }
  }
}

/** trainer_state.json as HF writes it: keys sorted, indent 2, final newline. */
function writeTrainerState(dir: string, state: TrainerState): void {
  writeAtomic(path.join(dir, TRAINER_STATE_FILE), `${JSON.stringify(sortKeys(state), null, 2)}\n`);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sortKeys(v)]));
}

function listFiles(root: string, sub = ''): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of fs.readdirSync(path.join(root, sub), { withFileTypes: true })) {
    const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
    if (entry.isDirectory()) Object.assign(out, listFiles(root, rel));
    else out[rel] = fs.statSync(path.join(root, rel)).size;
  }
  return out;
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
