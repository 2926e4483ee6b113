// The reference policy of DPO / MPO / KTO, three ways, all giving summed completion log-probs per
// row without a graph: a separate frozen model; the policy itself with its adapters disabled (LoRA,
// DoRA, QLoRA: no second copy of the weights); or log-probs computed once before training and
// cached on disk, keyed by record and by model, so a second run with the same data reuses them.
// Unlike TRL (which refuses precompute_ref_log_probs for vision data), images are fine here: the
// pass runs the same packed forward as training.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { CausalLM } from '../models/index.js';
import type { LmHead } from '../nn/index.js';
import type { LoraModel } from '../adapters/index.js';

/** Runs `forward` (a packed or plain forward giving hidden states) as the reference, without a graph. */
export interface ReferencePolicy {
  readonly kind: 'model' | 'adapters-disabled';
  /** `fn` receives the reference model and its LM head; it runs under noGrad in eval mode. */
  run<T>(fn: (model: CausalLM, head: LmHead) => T): T;
}

/** A separate frozen model (TRL's ref_model, InternVL's frozen copy). */
export function frozenReference(model: CausalLM): ReferencePolicy {
  model.eval();
  model.requiresGrad_(false);
  return { kind: 'model', run: (fn) => torch.noGrad(() => fn(model, model.lmHead())) };
}

/**
 * The policy itself, as it stands (a full fine-tune's reference for the precompute pass, which runs
 * before the first step): no graph, dropout off, training mode restored after.
 */
export function policyReference(policy: CausalLM): ReferencePolicy {
  return { kind: 'model', run: (fn) => inEvalMode(policy, () => torch.noGrad(() => fn(policy, policy.lmHead()))) };
}

function inEvalMode<T>(model: CausalLM, fn: () => T): T {
  const training = model.training;
  model.eval();
  try {
    return fn();
  } finally {
    model.train(training);
  }
}

/**
 * The policy with its adapters disabled (PEFT's reference for LoRA / QLoRA). Dropout is switched
 * off for the pass and the policy's training mode restored after.
 */
export function adapterReference(policy: CausalLM, adapter: LoraModel): ReferencePolicy {
  return {
    kind: 'adapters-disabled',
    run: (fn) =>
      adapter.withAdaptersDisabled(() => inEvalMode(policy, () => torch.noGrad(() => fn(policy, policy.lmHead())))),
  };
}

/**
 * Reference log-probs by what the reference reads: each entry's key is a digest of one record's model
 * inputs (its tokens after templating and truncation, its images' pixel values; inputKey), so an
 * edited record, another processor setting or a same-named file elsewhere cannot reuse stale values,
 * and repeated records share one entry. One file per model key (referenceModelKey), appended as the
 * pass goes (one JSON line per entry; float64 numbers round-trip exactly): a killed pass keeps every
 * whole line it wrote, and a cut last line is ignored.
 */
export class ReferenceCache {
  readonly file: string;
  readonly #values = new Map<string, number[]>();
  #pending: string[] = [];

  constructor(dir: string, modelKey: string) {
    this.file = path.join(dir, `ref_logps-${modelKey}.jsonl`);
    if (!fs.existsSync(this.file)) return;
    for (const line of fs.readFileSync(this.file, 'utf8').split('\n')) {
      const entry = parseEntry(line);
      if (entry !== null) this.#values.set(entry.key, entry.logps);
    }
  }

  get size(): number {
    return this.#values.size;
  }

  /** Whether `key` has `width` values (a KTO row has 2 with its KL row, 1 without). */
  has(key: string, width: number): boolean {
    return this.#values.get(key)?.length === width;
  }

  /**
   * The cached values of `keys` as one float64 tensor [keys, width], column k = value k of each;
   * `ids[i]` names record i in the error when one is missing.
   */
  lookup(keys: readonly string[], width: number, ids: readonly string[] = keys): Tensor {
    const flat = new Float64Array(keys.length * width);
    keys.forEach((key, i) => {
      const values = this.#values.get(key);
      if (values === undefined || values.length !== width) {
        throw new Error(
          `${this.file}: no precomputed reference log-probs for record ${ids[i]} as it is now (its text, images ` +
            'or processing changed since the pass, or the pass did not run: it runs before the first step of a fresh run)',
        );
      }
      flat.set(values, i * width);
    });
    return torch.tensor(flat, { shape: [keys.length, width] });
  }

  set(key: string, values: readonly number[]): void {
    if (values.some((v) => !Number.isFinite(v))) {
      throw new RangeError(`reference log-probs must be finite numbers but received [${values.join(', ')}]`);
    }
    this.#values.set(key, [...values]);
    this.#pending.push(`${JSON.stringify({ key, logps: values })}\n`);
  }

  /** Appends the entries set since the last save. */
  save(): void {
    if (this.#pending.length === 0) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    fs.appendFileSync(this.file, this.#pending.join(''));
    this.#pending = [];
  }
}

function parseEntry(line: string): { key: string; logps: number[] } | null {
  if (line.trim() === '') return null;
  try {
    const entry = JSON.parse(line) as { key?: unknown; logps?: unknown };
    const { key, logps } = entry;
    if (typeof key !== 'string' || !Array.isArray(logps) || !logps.every((v) => typeof v === 'number')) return null;
    return { key, logps };
  } catch {
    return null; // a line cut short by a kill
  }
}

/** A model batch's tokens and vision inputs, as the collators and packPairs lay them out. */
export interface ReferenceInputs {
  inputIds: Tensor;
  attentionMask: Tensor;
  pixelValues: Tensor | null;
  /** Qwen2-VL / Qwen2.5-VL: (t, h, w) per image, t·h·w pixel rows each. */
  imageGridThw: Tensor | null;
  /** InternVL: tiles (pixel rows) per image. */
  tilesPerImage: number[];
}

/** Each row's tokens without its padding. */
export function unpaddedTokens(batch: Pick<ReferenceInputs, 'inputIds' | 'attentionMask'>): BigInt64Array[] {
  return torch.tidy(() => {
    const [rows, length] = batch.inputIds.shape as [number, number];
    const ids = batch.inputIds.contiguous().data() as BigInt64Array;
    const mask = batch.attentionMask.contiguous().data() as BigInt64Array;
    return Array.from({ length: rows }, (_, r) => {
      const row = ids.subarray(r * length, (r + 1) * length);
      return row.filter((_, t) => mask[r * length + t] !== 0n);
    });
  });
}

/** Each record's pixel values (the bytes of its images' rows), given how many images each record has. */
export function pixelsPerRecord(batch: ReferenceInputs, imagesPerRecord: readonly number[]): Uint8Array[] {
  const none = imagesPerRecord.map(() => new Uint8Array(0));
  if (batch.pixelValues === null) return none;
  return torch.tidy(() => {
    const rowsPerImage =
      batch.imageGridThw !== null
        ? Array.from({ length: batch.imageGridThw.shape[0]! }, (_, k) =>
            Number(batch.imageGridThw!.select(0, k).prod().item()),
          )
        : batch.tilesPerImage;
    const pixels = batch.pixelValues!.contiguous();
    const rows = pixels.shape[0]!;
    const flat = pixels.data() as unknown as ArrayBufferView;
    const bytes = new Uint8Array(flat.buffer, flat.byteOffset, flat.byteLength);
    const rowBytes = bytes.length / rows;
    let [image, row] = [0, 0];
    const out = imagesPerRecord.map((n) => {
      const start = row;
      for (const end = image + n; image < end; image++) row += rowsPerImage[image] ?? Number.NaN;
      return bytes.slice(start * rowBytes, row * rowBytes);
    });
    if (image !== rowsPerImage.length || row !== rows) {
      throw new Error(
        `reference cache: the records' ${image} images cover ${row} pixel rows but the batch has ` +
          `${rowsPerImage.length} images and ${rows} rows`,
      );
    }
    return out;
  });
}

/** The cache key of one record: a digest of its token rows, their layout and its pixels. */
export function inputKey(tokens: readonly BigInt64Array[], layout: unknown, pixels: Uint8Array): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ layout, rows: tokens.map((t) => t.length), pixels: pixels.length }));
  for (const t of tokens) hash.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  hash.update(pixels);
  return hash.digest('hex').slice(0, 32);
}

/**
 * What identifies the reference itself besides its inputs: its config, every parameter's name, dtype
 * and shape (a float64 or quantised load of the same files differs), the weights (the size and
 * modification time of each file of its checkpoint folder, or the parameters' bytes for a model
 * without one), and the settings that change the values (method, max length).
 */
export function referenceModelKey(model: CausalLM, modelPath: string | undefined, settings: unknown): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(model.rawConfig));
  hash.update(JSON.stringify(settings));
  for (const [name, p] of model.namedParameters()) hash.update(`${name}:${p.dtype}:${p.shape.join('x')}\n`);
  if (modelPath !== undefined && fs.existsSync(modelPath)) {
    for (const name of fs.readdirSync(modelPath).sort()) {
      if (!name.endsWith('.safetensors') && !name.endsWith('.json')) continue;
      const stat = fs.statSync(path.join(modelPath, name));
      hash.update(`${name}:${stat.size}:${stat.mtimeMs}\n`);
    }
  } else {
    torch.noGrad(() => {
      for (const [name, p] of model.namedParameters()) {
        hash.update(name);
        const bytes = p.detach().contiguous().to({ dtype: 'float64' }).data() as Float64Array;
        hash.update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      }
    });
  }
  return hash.digest('hex').slice(0, 16);
}
