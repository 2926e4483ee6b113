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
import { readJsonObject, writeJsonFile } from '../util/json_file.js';

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
 * Reference log-probs by record id, on disk as JSON (float64 numbers round-trip exactly). One file
 * per model key; every update is written atomically, so a killed precompute pass keeps what it had.
 */
export class ReferenceCache {
  readonly file: string;
  readonly #values = new Map<string, number[]>();

  constructor(dir: string, modelKey: string) {
    this.file = path.join(dir, `ref_logps-${modelKey}.json`);
    if (!fs.existsSync(this.file)) return;
    const saved = readJsonObject(this.file) as { logps?: Record<string, number[]> };
    for (const [id, values] of Object.entries(saved.logps ?? {})) this.#values.set(id, values);
  }

  get size(): number {
    return this.#values.size;
  }

  has(id: string): boolean {
    return this.#values.has(id);
  }

  /** The cached values of `ids` as one float64 tensor [ids, width], column k = value k of each. */
  lookup(ids: readonly string[], width: number): Tensor {
    const flat = new Float64Array(ids.length * width);
    ids.forEach((id, i) => {
      const values = this.#values.get(id);
      if (values === undefined || values.length !== width) {
        throw new Error(`${this.file}: no reference log-probs for record ${id} (run the precompute pass)`);
      }
      flat.set(values, i * width);
    });
    return torch.tensor(flat, { shape: [ids.length, width] });
  }

  set(id: string, values: readonly number[]): void {
    this.#values.set(id, [...values]);
  }

  save(): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeJsonFile(this.file, { logps: Object.fromEntries(this.#values) });
  }
}

/**
 * What identifies the reference's log-probs besides the record: the checkpoint (its config and the
 * size and modification time of every weight file, or the parameters' bytes for a model built in
 * memory) and the settings that change the tokens (max length, dtype, processor options).
 */
export function referenceModelKey(model: CausalLM, modelPath: string | undefined, settings: unknown): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(model.rawConfig));
  hash.update(JSON.stringify(settings));
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
