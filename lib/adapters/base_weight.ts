// The frozen layer a LoRA layer wraps, while it is wrapped: its weight and bias moved into the LoRA
// layer's own slots, in one of two forms (PEFT keeps them apart: lora/layer.py and lora/bnb.py).
// - dense: an [out, in] weight, as nn.Linear;
// - 4-bit (bitsandbytes' Linear4bit, QLoRA): the packed codes in the weight slot and the quant state in
//   buffers beside it. Its output comes from the 4-bit matmul in the base's compute dtype, its dense
//   weight is the dequantised one, and a dense weight stored back is re-quantised with the same
//   settings (lossy, as PEFT warns), or, asked to dequantize, kept: the form becomes dense.
// Either form gives the tensors back to the wrapped layer on release.
import * as torch from '../torch/index.js';
import type { DType, QuantState4bit, Tensor } from '../torch/index.js';
import { Linear } from '../nn/index.js';
import {
  forward4bit,
  Linear4bit,
  quantStateOf,
  stateTensors,
  type ComputeDtype,
  type QuantBufferName,
  type QuantLayerInfo,
  type QuantSpec,
} from '../quant/linear4bit.js';
import { cast } from './dtype.js';

/** The LoRA layer's own slots that the wrapped layer's tensors move into. */
export interface WeightSlots {
  weight: Tensor;
  bias: Tensor | null;
  /** Registers a buffer on the LoRA layer (the 4-bit quant state) and returns it. */
  registerBuffer(name: string, t: Tensor): Tensor;
}

export interface StoreOptions {
  /** 4-bit: keep `dense` as a dense weight instead of re-quantising it (the form becomes dense). */
  dequantize?: boolean;
}

export abstract class BaseWeight {
  abstract readonly quantized: boolean;

  protected constructor(
    /** The layer that lent its tensors; release() gives them back. */
    protected readonly wrapped: Linear,
    /** The LoRA layer's `weight` slot: the dense [out, in] weight, or the packed 4-bit codes. */
    readonly weight: Tensor,
    readonly bias: Tensor | null,
    /** requiresGrad of the wrapped layer's weight and bias, restored on release. */
    protected readonly requiresGrad: readonly [boolean, boolean],
  ) {}

  /** The dtype of the dense weight (of a 4-bit one: the dtype it was quantised from). */
  abstract get denseDtype(): DType;

  /** The wrapped layer's output. */
  abstract forward(x: Tensor): Tensor;

  /** The weight [out, in] as a dense tensor (a dense weight as is), in `dtype` (default denseDtype). */
  abstract dense(dtype?: DType): Tensor;

  /** Makes `dense` ([out, in], consumed) the weight; returns the form that now holds it. */
  abstract store(dense: Tensor, options?: StoreOptions): BaseWeight;

  /** The 4-bit state for checkpoints (null for a dense weight). */
  abstract quantInfo(): QuantLayerInfo | null;

  /** The wrapped layer's weight slot (and quant state) takes the tensors back, as they are now. */
  protected abstract releaseWeight(): Linear;

  /** The wrapped layer (or its dense replacement) holding the tensors again (merged, or converted by a `to()`). */
  release(): Linear {
    const layer = this.releaseWeight();
    if (layer.bias !== null && this.bias !== null) layer.bias.setData(this.bias).requiresGrad_(this.requiresGrad[1]);
    return layer;
  }
}

/**
 * The dtypes the LoRA layer needs before it exists: its weight slot's (over a 4-bit base, the packed
 * uint8 codes) and the adapters' default (the base weight's; float32 over a 4-bit base, as PEFT).
 */
export function baseWeightDtypes(base: Linear): { slot: DType; adapter: DType } {
  const { dtype } = base.weight;
  return base instanceof Linear4bit ? { slot: 'uint8', adapter: 'float32' } : { slot: dtype, adapter: dtype };
}

/** Moves `base`'s tensors into `slots` and returns the form that holds them. */
export function adoptBaseWeight(base: Linear, slots: WeightSlots): BaseWeight {
  const requiresGrad = [base.weight.requiresGrad, base.bias?.requiresGrad ?? false] as const;
  // The tensors move in rather than being aliased: a second handle would keep the old storage alive
  // after a model.to(dtype). The wrapped layer is empty until release() moves them back.
  slots.weight.requiresGrad_(false);
  slots.weight.setData(base.weight);
  if (slots.bias !== null && base.bias !== null) slots.bias.setData(base.bias);
  slots.bias?.requiresGrad_(false);
  if (base instanceof Linear4bit) return new FourBitWeight(base, slots, requiresGrad);
  return new DenseWeight(base, slots.weight, slots.bias, requiresGrad);
}

class DenseWeight extends BaseWeight {
  readonly quantized = false;

  // Public, unlike the base class's: adoptBaseWeight and the 4-bit form's dequantising store make one.
  constructor(wrapped: Linear, weight: Tensor, bias: Tensor | null, requiresGrad: readonly [boolean, boolean]) {
    super(wrapped, weight, bias, requiresGrad);
  }

  get denseDtype(): DType {
    return this.weight.dtype;
  }

  forward(x: Tensor): Tensor {
    return torch.nn.functional.linear(x, this.weight, this.bias);
  }

  dense(dtype?: DType): Tensor {
    return dtype === undefined ? this.weight : cast(this.weight, dtype);
  }

  // In place, so every holder of the weight's storage sees the new values.
  store(dense: Tensor): BaseWeight {
    torch.noGrad(() => this.weight.copy_(dense));
    dense.dispose();
    return this;
  }

  quantInfo(): null {
    return null;
  }

  protected releaseWeight(): Linear {
    this.wrapped.weight.setData(this.weight).requiresGrad_(this.requiresGrad[0]);
    return this.wrapped;
  }
}

// A 4-bit base after a dequantising merge: dense from then on, and released as a new dense Linear
// (the emptied Linear4bit it wrapped is freed).
class DequantizedWeight extends DenseWeight {
  protected override releaseWeight(): Linear {
    const { inFeatures, outFeatures } = this.wrapped;
    this.wrapped.dispose();
    const { device } = this.weight;
    const layer = new Linear(inFeatures, outFeatures, { bias: this.bias !== null, dtype: 'uint8', device });
    layer.weight.setData(this.weight).requiresGrad_(this.requiresGrad[0]);
    return layer;
  }
}

class FourBitWeight extends BaseWeight {
  readonly quantized = true;
  readonly #spec: QuantSpec;
  readonly #computeDtype: ComputeDtype;
  readonly #shape: [number, number];
  readonly #buffers = new Map<QuantBufferName, Tensor>();

  constructor(base: Linear4bit, slots: WeightSlots, requiresGrad: readonly [boolean, boolean]) {
    super(base, slots.weight, slots.bias, requiresGrad);
    const { device } = slots.weight;
    for (const [name, t] of base.quantBuffers) {
      this.#buffers.set(name, slots.registerBuffer(name, torch.empty([0], { device })).setData(t));
    }
    this.#spec = base.spec;
    this.#computeDtype = base.computeDtype;
    this.#shape = [base.outFeatures, base.inFeatures];
  }

  get denseDtype(): DType {
    return this.#spec.weightDtype;
  }

  #state(): QuantState4bit {
    return quantStateOf(this.weight, this.#buffers, this.#spec, this.#shape, 'LoraLinear');
  }

  forward(x: Tensor): Tensor {
    return forward4bit(x, this.#state(), this.bias, this.#computeDtype);
  }

  dense(dtype?: DType): Tensor {
    return torch.noGrad(() => torch.dequantize4bit(this.#state(), { dtype: dtype ?? this.denseDtype }));
  }

  store(dense: Tensor, options: StoreOptions = {}): BaseWeight {
    if (options.dequantize) return this.#keepDense(dense);
    this.#requantize(dense);
    return this;
  }

  // PEFT's bnb Linear4bit.merge: quantise with the base's settings into this layer's 4-bit tensors.
  #requantize(dense: Tensor): void {
    const { quantType, blocksize, doubleQuant } = this.#spec;
    const state = torch.noGrad(() => torch.quantize4bit(dense, { quantType, blocksize, doubleQuant }));
    dense.dispose();
    this.weight.setData(state.packed);
    for (const [name, t] of stateTensors(state)) this.#buffers.get(name)!.setData(t);
  }

  // The weight slot takes `dense`; the 4-bit buffers are emptied.
  #keepDense(dense: Tensor): BaseWeight {
    const device = dense.device;
    this.weight.setData(dense);
    for (const t of this.#buffers.values()) t.setData(torch.empty([0], { device }));
    return new DequantizedWeight(this.wrapped, this.weight, this.bias, this.requiresGrad);
  }

  quantInfo(): QuantLayerInfo {
    const shape: [number, number] = [...this.#shape];
    return { spec: this.#spec, computeDtype: this.#computeDtype, shape, weight: this.weight, buffers: this.#buffers };
  }

  // The packed uint8 codes cannot require grad: nothing to restore.
  protected releaseWeight(): Linear {
    const buffers = (this.wrapped as Linear4bit).quantBuffers;
    for (const [name, t] of this.#buffers) buffers.get(name)!.setData(t);
    this.wrapped.weight.setData(this.weight);
    return this.wrapped;
  }
}
