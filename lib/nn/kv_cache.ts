// The key/value cache of a decoder: per layer, keys and values [B, Hkv, S, hd] in buffers that grow
// by doubling, so a decode step appends in place instead of concatenating the whole history.
// Per-sequence state that positions depend on (Qwen's rope deltas) lives here too, never on the model.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

interface LayerCache {
  keys: Tensor;
  values: Tensor;
}

export class KVCache {
  readonly #layers: Array<LayerCache | undefined> = [];
  #length = 0;
  /** Qwen M-RoPE: position offset of generated tokens, per sequence [B, 1] (set at prefill). */
  ropeDeltas: Tensor | null = null;

  /** Tokens cached so far (the same in every layer once a forward has finished). */
  get length(): number {
    return this.#length;
  }

  /**
   * Appends this step's keys/values for `layer` and returns views of everything cached for it.
   * The views alias the cache buffers: use them before the next update.
   */
  update(layer: number, keys: Tensor, values: Tensor): [Tensor, Tensor] {
    const past = this.#length;
    const steps = keys.shape[2]!;
    const entry = this.#reserve(layer, keys, values, past + steps);
    torch.noGrad(() => {
      entry.keys.narrow(2, past, steps).copy_(keys);
      entry.values.narrow(2, past, steps).copy_(values);
    });
    return [entry.keys.narrow(2, 0, past + steps), entry.values.narrow(2, 0, past + steps)];
  }

  /** Marks the tokens of the step just run as cached; the model calls it after its last layer. */
  advance(steps: number): void {
    this.#length += steps;
  }

  #reserve(layer: number, keys: Tensor, values: Tensor, needed: number): LayerCache {
    const entry = this.#layers[layer];
    const capacity = entry?.keys.shape[2] ?? 0;
    if (entry !== undefined && capacity >= needed) return entry;
    const size = Math.max(needed, capacity * 2, 64);
    const grow = (old: Tensor | undefined, like: Tensor): Tensor => {
      const [b, h, , d] = like.shape as [number, number, number, number];
      const buffer = torch.empty([b, h, size, d], { dtype: like.dtype, device: like.device }).keep();
      if (old !== undefined) {
        torch.noGrad(() => buffer.narrow(2, 0, this.#length).copy_(old.narrow(2, 0, this.#length)));
        old.dispose();
      }
      return buffer;
    };
    const grown = { keys: grow(entry?.keys, keys), values: grow(entry?.values, values) };
    this.#layers[layer] = grown;
    return grown;
  }

  /** Keeps only the batch rows in `index` (int64 [B']), e.g. to drop finished sequences. */
  selectRows(index: Tensor): void {
    for (const entry of this.#layers) {
      if (entry === undefined) continue;
      entry.keys.setData(entry.keys.indexSelect(0, index).keep());
      entry.values.setData(entry.values.indexSelect(0, index).keep());
    }
    if (this.ropeDeltas !== null) this.ropeDeltas.setData(this.ropeDeltas.indexSelect(0, index).keep());
  }

  dispose(): void {
    for (const entry of this.#layers) {
      entry?.keys.dispose();
      entry?.values.dispose();
    }
    this.#layers.length = 0;
    this.ropeDeltas?.dispose();
    this.ropeDeltas = null;
    this.#length = 0;
  }
}
