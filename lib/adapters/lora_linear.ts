// LoRA and DoRA around a Linear (PEFT's lora.Linear with its DoRA variant). The layer is itself a
// Linear holding the wrapped layer's weight and bias, so the parent's typed field keeps working and
// the state dict keeps `...q_proj.weight` beside `...q_proj.lora_A.weight`, `...q_proj.lora_B.weight`
// and, for DoRA, `...q_proj.lora_magnitude_vector`. unload() hands the wrapped Linear object back.
//
// Over a 4-bit base (a Linear4bit, QLoRA) the layer holds the base's packed weight and quant-state
// buffers the same way (PEFT's bnb.Linear4bit): the base output comes from the 4-bit matmul in the
// base's compute dtype, DoRA's norm uses the dequantised weight, and merge() dequantises, adds the
// delta and re-quantises (lossy, as PEFT warns); merge({ dequantize: true }) and
// mergeAndUnload({ dequantize: true }) give a dense layer instead (no re-quantisation).
import * as torch from '../torch/index.js';
import type { DType, QuantState4bit, Tensor } from '../torch/index.js';
import { Linear } from '../nn/index.js';
import { forward4bit, Linear4bit, quantStateOf, stateTensors, type ComputeDtype, type QuantBufferName, type QuantLayerInfo, type QuantSpec } from '../quant/index.js';

export interface LoraLayerOptions {
  r: number;
  alpha: number;
  dropout?: number;
  /** rsLoRA: scale by alpha / √r instead of alpha / r. */
  useRslora?: boolean;
  useDora?: boolean;
  /** PEFT's init_lora_weights: true, 'gaussian' or false. */
  init?: boolean | 'gaussian';
  /**
   * dtype of the adapter tensors: default the base weight's, and float32 over a 4-bit base (PEFT);
   * TRL trains them in bfloat16 over quantised bases (castAdapter / castAdapters do that later).
   */
  dtype?: DType;
}

export interface MergeOptions {
  /** Merge into a copy and refuse non-finite results before touching the weight (PEFT's safe_merge). */
  safeMerge?: boolean;
  /**
   * 4-bit base: merge into the dequantised weight and keep it dense (the layer, and what
   * mergeAndUnload returns, become dense Linear layers) instead of re-quantising (PEFT's merge).
   */
  dequantize?: boolean;
}

interface QuantBase {
  spec: QuantSpec;
  computeDtype: ComputeDtype;
  buffers: Map<QuantBufferName, Tensor>;
}

const F = torch.nn.functional;
const isHalf = (dtype: DType): boolean => dtype === 'float16' || dtype === 'bfloat16';
const cast = (t: Tensor, dtype: DType): Tensor => (t.dtype === dtype ? t : t.to(dtype));

export class LoraLinear extends Linear {
  readonly lora_A: Linear;
  readonly lora_B: Linear;
  /** DoRA's magnitude m [out] (null for plain LoRA). */
  readonly lora_magnitude_vector: Tensor | null;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropout: number;
  readonly #base: Linear;
  readonly #baseRequiresGrad: [boolean, boolean];
  // The 4-bit base's state (null for a dense base, and once merge({ dequantize }) made it dense).
  #quant: QuantBase | null = null;
  #enabled = true;
  #merged = false;
  // DoRA: the row norms a merge divided by; unmerge needs them, the merged weight no longer has them.
  #mergeNorm: Tensor | null = null;

  constructor(base: Linear, options: LoraLayerOptions) {
    if (base instanceof LoraLinear) throw new TypeError('LoraLinear: the layer already has an adapter');
    if (!Number.isInteger(options.r) || options.r < 1) throw new RangeError(`LoraLinear: r must be a positive integer, got ${options.r}`);
    const quantized = base instanceof Linear4bit;
    const { device } = base.weight;
    // Over a 4-bit base, Linear's [out, in] weight is made uint8 and replaced by the packed one unwritten.
    const baseDtype = quantized ? 'uint8' : base.weight.dtype;
    const dtype = options.dtype ?? (quantized ? 'float32' : baseDtype);
    super(base.inFeatures, base.outFeatures, { bias: base.bias !== null, dtype: baseDtype, device });
    this.#base = base;
    this.#baseRequiresGrad = [base.weight.requiresGrad, base.bias?.requiresGrad ?? false];
    // The base tensors move in rather than being aliased: a second handle would keep the old storage
    // alive after a model.to(dtype). The wrapped Linear is empty until unload() moves them back.
    this.weight.requiresGrad_(false);
    this.weight.setData(base.weight);
    if (this.bias !== null && base.bias !== null) this.bias.setData(base.bias);
    this.bias?.requiresGrad_(false);
    if (base instanceof Linear4bit) {
      const buffers = new Map<QuantBufferName, Tensor>();
      for (const [name, t] of base.quantBuffers) buffers.set(name, this.registerBuffer(name, torch.empty([0], { device })).setData(t));
      this.#quant = { spec: base.spec, computeDtype: base.computeDtype, buffers };
    }
    this.r = options.r;
    this.alpha = options.alpha;
    this.scaling = options.useRslora ? options.alpha / Math.sqrt(options.r) : options.alpha / options.r;
    this.dropout = options.dropout ?? 0;
    this.lora_A = this.registerModule('lora_A', new Linear(this.inFeatures, this.r, { bias: false, dtype, device }));
    this.lora_B = this.registerModule('lora_B', new Linear(this.r, this.outFeatures, { bias: false, dtype, device }));
    initAdapter(this.lora_A.weight, this.lora_B.weight, options.init ?? true);
    this.lora_magnitude_vector = options.useDora
      ? this.registerParameter('lora_magnitude_vector', torch.noGrad(() => torch.tidy(() => cast(rowNorms(this.#denseWeight(), this.deltaWeight()), dtype))))
      : null;
  }

  /** Whether the base layer is 4-bit (false again after a dequantising merge). */
  get quantized(): boolean {
    return this.#quant !== null;
  }

  /** The 4-bit base's state for checkpoints (null over a dense base). */
  quantInfo(): QuantLayerInfo | null {
    const q = this.#quant;
    return q === null ? null : { spec: q.spec, computeDtype: q.computeDtype, shape: [this.outFeatures, this.inFeatures], weight: this.weight, buffers: q.buffers };
  }

  #quantState(): QuantState4bit {
    const q = this.#quant!;
    return quantStateOf(this.weight, q.buffers, q.spec, [this.outFeatures, this.inFeatures], 'LoraLinear');
  }

  // The dtype of the dense base weight (of a 4-bit base: the dtype it was quantised from).
  get #denseDtype(): DType {
    return this.#quant?.spec.weightDtype ?? this.weight.dtype;
  }

  /** The base weight [out, in] as a dense tensor (a 4-bit base dequantised; a dense one as is), in `dtype`. */
  #denseWeight(dtype?: DType): Tensor {
    if (this.#quant === null) return dtype === undefined ? this.weight : cast(this.weight, dtype);
    return torch.noGrad(() => torch.dequantize4bit(this.#quantState(), { dtype: dtype ?? this.#denseDtype }));
  }

  #baseForward(x: Tensor): Tensor {
    return this.#quant === null ? super.forward(x) : forward4bit(x, this.#quantState(), this.bias, this.#quant.computeDtype);
  }

  /** Converts the adapter tensors (A, B, DoRA's magnitude) to `dtype`, keeping requiresGrad (TRL's bf16 adapters over a 4-bit base). */
  castAdapter(dtype: DType): void {
    torch.noGrad(() => {
      for (const t of [this.lora_A.weight, this.lora_B.weight, this.lora_magnitude_vector]) if (t !== null && t.dtype !== dtype) t.setData(t.to(dtype));
    });
  }

  get adaptersEnabled(): boolean {
    return this.#enabled;
  }

  get merged(): boolean {
    return this.#merged;
  }

  get useDora(): boolean {
    return this.lora_magnitude_vector !== null;
  }

  /** Disabled, the layer computes the base Linear alone (the reference model of DPO). */
  enableAdapters(enabled = true): void {
    this.#enabled = enabled;
  }

  override forward(x: Tensor): Tensor {
    if (!this.#enabled && this.#merged) this.unmerge(); // as PEFT: disabled means the base weights
    if (!this.#enabled || this.#merged) return this.#baseForward(x);
    return torch.tidy(() => {
      const result = this.#baseForward(x);
      const xa = cast(x, this.lora_A.weight.dtype);
      const dropped = this.training && this.dropout > 0;
      const input = dropped ? F.dropout(xa, this.dropout, true) : xa;
      const lora = this.lora_B.forward(this.lora_A.forward(input));
      const out = this.lora_magnitude_vector === null
        ? result.add(lora.mul(this.scaling))
        : result.add(this.#doraTerm(result, input, lora, dropped));
      return cast(out, result.dtype);
    });
  }

  /**
   * DoRA's addition to base(x): (g − 1)·W0x + g·s·BAx with g = m / ‖W0 + s·BA‖_row, the norm detached
   * (DoRA §4.3), so base(x) plus this is g·(W0x + s·BAx) + bias. With active dropout W0x is recomputed
   * on dropout(x), whose LoRA branch it then matches (PEFT's DoraLinearVariant).
   */
  #doraTerm(result: Tensor, x: Tensor, lora: Tensor, dropped: boolean): Tensor {
    const weight = this.#denseWeight(x.dtype);
    const norm = torch.noGrad(() => rowNorms(weight, cast(this.deltaWeight(), x.dtype)));
    const g = this.lora_magnitude_vector!.div(norm);
    const base = dropped ? F.linear(x, weight) : this.bias === null ? result : result.sub(this.bias);
    return g.sub(1).mul(base).add(g.mul(lora).mul(this.scaling));
  }

  /** s·B@A [out, in] in the weight dtype; half-precision factors multiply in float32 (PEFT: slow CPU bf16 matmul). */
  deltaWeight(): Tensor {
    return torch.tidy(() => {
      const [a, b] = [this.lora_A.weight, this.lora_B.weight].map((w) => (isHalf(w.dtype) ? w.float() : w)) as [Tensor, Tensor];
      return cast(b.matmul(a).mul(this.scaling), this.#denseDtype);
    });
  }

  /** W ← W + s·BA (DoRA: W ← m/‖W + s·BA‖_row · (W + s·BA)); the forward then runs the base Linear. */
  merge(options: MergeOptions = {}): void {
    if (this.#merged) return;
    if (this.#quant !== null) {
      this.#merge4bit(options);
      return;
    }
    torch.noGrad(() => torch.tidy(() => {
      const delta = this.deltaWeight();
      let merged = this.weight.add(delta);
      if (this.lora_magnitude_vector !== null) {
        const norm = rowNorms(this.weight, delta).keep();
        merged = merged.mul(this.lora_magnitude_vector.div(norm).unsqueeze(1));
        this.#mergeNorm = norm;
      }
      if (options.safeMerge && !merged.isfinite().all().item()) {
        this.#mergeNorm?.dispose();
        this.#mergeNorm = null;
        throw new Error('LoraLinear.merge: the merged weights are not finite; the adapter seems to be broken');
      }
      this.weight.copy_(merged);
    }));
    this.#merged = true;
  }

  // PEFT's bnb Linear4bit.merge: dequantise, add the delta (DoRA: rescale), re-quantise with the same
  // settings; or, with `dequantize`, keep the merged weight dense and drop the 4-bit state.
  #merge4bit(options: MergeOptions): void {
    const dtype = this.#denseDtype;
    const merged = torch.noGrad(() => torch.tidy(() => {
      const dense = this.#denseWeight();
      const delta = this.deltaWeight();
      let w = dense.add(delta);
      if (this.lora_magnitude_vector !== null) {
        const norm = rowNorms(dense, delta).keep();
        w = w.mul(this.lora_magnitude_vector.div(norm).unsqueeze(1));
        this.#mergeNorm = norm;
      }
      if (options.safeMerge && !w.isfinite().all().item()) {
        this.#mergeNorm?.dispose();
        this.#mergeNorm = null;
        throw new Error('LoraLinear.merge: the merged weights are not finite; the adapter seems to be broken');
      }
      return cast(w, dtype);
    }));
    if (options.dequantize) this.#makeDense(merged);
    else this.#requantize(merged);
    this.#merged = true;
  }

  // Quantises `dense` (consumed) with the base's settings into this layer's 4-bit tensors.
  #requantize(dense: Tensor): void {
    const q = this.#quant!;
    const state = torch.noGrad(() => torch.quantize4bit(dense, { quantType: q.spec.quantType, blocksize: q.spec.blocksize, doubleQuant: q.spec.doubleQuant }));
    dense.dispose();
    this.weight.setData(state.packed);
    for (const [name, t] of stateTensors(state)) q.buffers.get(name)!.setData(t);
  }

  // The layer becomes a LoRA layer over a dense base holding `dense` (consumed); the 4-bit buffers are emptied.
  #makeDense(dense: Tensor): void {
    const device = dense.device;
    this.weight.setData(dense);
    for (const t of this.#quant!.buffers.values()) t.setData(torch.empty([0], { device }));
    this.#quant = null;
  }

  /** Undoes merge() (up to rounding; over a 4-bit base, up to a second quantisation, as PEFT warns). */
  unmerge(): void {
    if (!this.#merged) return;
    if (this.#quant !== null) {
      const dense = torch.noGrad(() => torch.tidy(() => {
        let weight = this.#denseWeight();
        if (this.lora_magnitude_vector !== null) weight = weight.div(this.lora_magnitude_vector.div(this.#mergeNorm!).unsqueeze(1));
        return cast(weight.sub(this.deltaWeight()), this.#denseDtype);
      }));
      this.#requantize(dense);
      this.#mergeNorm?.dispose();
      this.#mergeNorm = null;
      this.#merged = false;
      return;
    }
    torch.noGrad(() => torch.tidy(() => {
      let weight = this.weight;
      if (this.lora_magnitude_vector !== null) weight = weight.div(this.lora_magnitude_vector.div(this.#mergeNorm!).unsqueeze(1));
      this.weight.copy_(weight.sub(this.deltaWeight()));
    }));
    this.#mergeNorm?.dispose();
    this.#mergeNorm = null;
    this.#merged = false;
  }

  /**
   * The wrapped Linear with the base weights (unmerged first), the adapter freed. After a
   * dequantising merge of a 4-bit base, a new dense Linear instead of the wrapped Linear4bit.
   */
  unload(): Linear {
    this.unmerge();
    return this.#release();
  }

  /**
   * The wrapped Linear with the adapter merged into its weight, the adapter freed. Over a 4-bit
   * base: the Linear4bit re-quantised (PEFT), or with `dequantize` a new dense Linear.
   */
  mergeAndUnload(options: MergeOptions = {}): Linear {
    this.merge(options);
    return this.#release();
  }

  // The base Linear takes its tensors back, as they are now (merged, or converted by a `to()`).
  #release(): Linear {
    let base = this.#base;
    if (base instanceof Linear4bit && this.#quant === null) {
      // Made dense by merge({ dequantize }): a new Linear takes the tensors; the emptied Linear4bit goes.
      base.dispose();
      base = new Linear(this.inFeatures, this.outFeatures, { bias: this.bias !== null, dtype: 'uint8', device: this.weight.device });
    } else if (this.#quant !== null) {
      const buffers = (base as Linear4bit).quantBuffers;
      for (const [name, t] of this.#quant.buffers) buffers.get(name)!.setData(t);
    }
    base.weight.setData(this.weight);
    if (!(base instanceof Linear4bit)) base.weight.requiresGrad_(this.#baseRequiresGrad[0]);
    if (base.bias !== null && this.bias !== null) base.bias.setData(this.bias).requiresGrad_(this.#baseRequiresGrad[1]);
    this.#mergeNorm?.dispose();
    super.dispose();
    return base;
  }

  override dispose(): void {
    this.#mergeNorm?.dispose();
    super.dispose();
  }
}

/** PEFT's reset_lora_parameters; false keeps nn.Linear's default init (kaiming a=√5) for both. */
function initAdapter(a: Tensor, b: Tensor, init: boolean | 'gaussian'): void {
  const [r, inFeatures] = a.shape as [number, number];
  torch.noGrad(() => {
    if (init === 'gaussian') a.normal_(0, 1 / r);
    else a.uniform_(-1 / Math.sqrt(inFeatures), 1 / Math.sqrt(inFeatures)); // kaiming_uniform(a=√5) = U(±1/√fan_in)
    if (init === false) b.uniform_(-1 / Math.sqrt(r), 1 / Math.sqrt(r));
    else b.zero_();
  });
}

/** ‖W + delta‖ per output row [out], accumulated in float32 for half-precision weights. */
function rowNorms(weight: Tensor, delta: Tensor): Tensor {
  return torch.tidy(() => {
    const w = isHalf(weight.dtype) ? weight.float().add(delta.float()) : weight.add(delta);
    return cast(w.norm(2, 1), weight.dtype);
  });
}

/** castAdapter for every layer (e.g. `castAdapters(peft.layers.values(), 'bfloat16')`, TRL's bf16 adapters over a 4-bit base). */
export function castAdapters(layers: Iterable<LoraLinear>, dtype: DType): void {
  for (const layer of layers) layer.castAdapter(dtype);
}
