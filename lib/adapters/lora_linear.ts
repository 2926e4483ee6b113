// LoRA around a Linear (PEFT's lora.Linear). The layer is itself a Linear holding the wrapped layer's
// weight and bias, so the parent's typed field keeps working and the state dict keeps `...q_proj.weight`
// beside `...q_proj.lora_A.weight`, `...q_proj.lora_B.weight` and, for DoRA,
// `...q_proj.lora_magnitude_vector`. unload() hands the wrapped Linear object back.
//
// The wrapped layer's tensors are a BaseWeight (./base_weight.ts): dense, or 4-bit (a Linear4bit,
// QLoRA: PEFT's bnb.Linear4bit), which gives the base output, the dense weight a merge starts from, and
// takes the merged weight back (re-quantised, or with merge({ dequantize: true }) kept dense). What the
// adapter adds is a LoraVariant (./variant.ts): plain LoRA, or DoRA (./dora.ts). This class runs the
// two, so forward, merge and unmerge are written once for every combination.
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import { Linear } from '../nn/index.js';
import type { QuantLayerInfo } from '../quant/index.js';
import { adoptBaseWeight, baseWeightDtypes, type BaseWeight } from './base_weight.js';
import { DoraVariant, doraMagnitude } from './dora.js';
import { cast, isHalf } from './dtype.js';
import { PLAIN_LORA, type LoraVariant } from './variant.js';

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

const F = torch.nn.functional;

export class LoraLinear extends Linear {
  readonly lora_A: Linear;
  readonly lora_B: Linear;
  /** DoRA's magnitude m [out] (null for plain LoRA). */
  readonly lora_magnitude_vector: Tensor | null;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropout: number;
  // The wrapped layer's tensors (a dense form again after merge({ dequantize }) of a 4-bit base).
  #base: BaseWeight;
  readonly #variant: LoraVariant;
  #enabled = true;
  #merged = false;

  constructor(base: Linear, options: LoraLayerOptions) {
    if (base instanceof LoraLinear) throw new TypeError('LoraLinear: the layer already has an adapter');
    if (!Number.isInteger(options.r) || options.r < 1) {
      throw new RangeError(`LoraLinear: r must be a positive integer, got ${options.r}`);
    }
    const { device } = base.weight;
    const dtypes = baseWeightDtypes(base);
    const dtype = options.dtype ?? dtypes.adapter;
    super(base.inFeatures, base.outFeatures, { bias: base.bias !== null, dtype: dtypes.slot, device });
    const registerBuffer = (name: string, t: Tensor): Tensor => this.registerBuffer(name, t);
    this.#base = adoptBaseWeight(base, { weight: this.weight, bias: this.bias, registerBuffer });
    this.r = options.r;
    this.alpha = options.alpha;
    this.scaling = options.useRslora ? options.alpha / Math.sqrt(options.r) : options.alpha / options.r;
    this.dropout = options.dropout ?? 0;
    this.lora_A = this.registerModule('lora_A', new Linear(this.inFeatures, this.r, { bias: false, dtype, device }));
    this.lora_B = this.registerModule('lora_B', new Linear(this.r, this.outFeatures, { bias: false, dtype, device }));
    initAdapter(this.lora_A.weight, this.lora_B.weight, options.init ?? true);
    this.#variant = options.useDora ? this.#initDora(dtype) : PLAIN_LORA;
    this.lora_magnitude_vector = this.#variant.magnitude;
  }

  #initDora(dtype: DType): DoraVariant {
    const magnitude = doraMagnitude(this.#base, () => this.deltaWeight(), dtype);
    return new DoraVariant(this.registerParameter('lora_magnitude_vector', magnitude));
  }

  /** Whether the base layer is 4-bit (false again after a dequantising merge). */
  get quantized(): boolean {
    return this.#base.quantized;
  }

  /** The 4-bit base's state for checkpoints (null over a dense base). */
  quantInfo(): QuantLayerInfo | null {
    return this.#base.quantInfo();
  }

  /**
   * Converts the adapter tensors (A, B, DoRA's magnitude) to `dtype`, keeping requiresGrad (TRL's bf16
   * adapters over a 4-bit base).
   */
  castAdapter(dtype: DType): void {
    torch.noGrad(() => {
      for (const t of [this.lora_A.weight, this.lora_B.weight, this.lora_magnitude_vector]) {
        if (t !== null && t.dtype !== dtype) t.setData(t.to(dtype));
      }
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
    if (!this.#enabled || this.#merged) return this.#base.forward(x);
    return torch.tidy(() => {
      const result = this.#base.forward(x);
      const xa = cast(x, this.lora_A.weight.dtype);
      const dropped = this.training && this.dropout > 0;
      const input = dropped ? F.dropout(xa, this.dropout, true) : xa;
      const lora = this.lora_B.forward(this.lora_A.forward(input));
      const added = this.#variant.forward({
        result,
        input,
        lora,
        dropped,
        scaling: this.scaling,
        base: this.#base,
        deltaWeight: () => this.deltaWeight(),
      });
      return cast(result.add(added), result.dtype);
    });
  }

  /**
   * s·B@A [out, in] in the base weight's dense dtype; half-precision factors multiply in float32
   * (PEFT: slow CPU bf16 matmul).
   */
  deltaWeight(): Tensor {
    return torch.tidy(() => {
      const factor = (w: Tensor): Tensor => (isHalf(w.dtype) ? w.float() : w);
      const delta = factor(this.lora_B.weight).matmul(factor(this.lora_A.weight)).mul(this.scaling);
      return cast(delta, this.#base.denseDtype);
    });
  }

  /**
   * W ← W + s·BA (DoRA: W ← m/‖W + s·BA‖_row · (W + s·BA)); the forward then runs the base layer. Over a
   * 4-bit base (PEFT's bnb Linear4bit.merge): dequantise, merge, re-quantise with the same settings, or
   * with `dequantize` keep the merged weight dense and drop the 4-bit state.
   */
  merge(options: MergeOptions = {}): void {
    if (this.#merged) return;
    const merged = torch.noGrad(() =>
      torch.tidy(() => {
        const weight = this.#variant.merge(this.#base.dense(), this.deltaWeight());
        if (options.safeMerge && !weight.isfinite().all().item()) {
          this.#variant.forgetMerge();
          throw new Error('LoraLinear.merge: the merged weights are not finite; the adapter seems to be broken');
        }
        return cast(weight, this.#base.denseDtype);
      }),
    );
    this.#base = this.#base.store(merged, options);
    this.#merged = true;
  }

  /** Undoes merge() (up to rounding; over a 4-bit base, up to a second quantisation, as PEFT warns). */
  unmerge(): void {
    if (!this.#merged) return;
    const weight = torch.noGrad(() =>
      torch.tidy(() => cast(this.#variant.unmerge(this.#base.dense(), this.deltaWeight()), this.#base.denseDtype)),
    );
    this.#base = this.#base.store(weight);
    this.#variant.forgetMerge();
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

  #release(): Linear {
    const base = this.#base.release();
    this.#variant.forgetMerge();
    super.dispose();
    return base;
  }

  override dispose(): void {
    this.#variant.forgetMerge();
    super.dispose();
  }
}

/** PEFT's reset_lora_parameters; false keeps nn.Linear's default init (kaiming a=√5) for both. */
function initAdapter(a: Tensor, b: Tensor, init: boolean | 'gaussian'): void {
  const [r, inFeatures] = a.shape as [number, number];
  torch.noGrad(() => {
    if (init === 'gaussian') a.normal_(0, 1 / r);
    else a.uniform_(-1 / Math.sqrt(inFeatures), 1 / Math.sqrt(inFeatures)); // kaiming_uniform(a=√5): U(±1/√fan_in)
    if (init === false) b.uniform_(-1 / Math.sqrt(r), 1 / Math.sqrt(r));
    else b.zero_();
  });
}

/**
 * castAdapter for every layer (e.g. `castAdapters(peft.layers.values(), 'bfloat16')`, TRL's bf16
 * adapters over a 4-bit base).
 */
export function castAdapters(layers: Iterable<LoraLinear>, dtype: DType): void {
  for (const layer of layers) layer.castAdapter(dtype);
}
