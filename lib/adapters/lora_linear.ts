// LoRA and DoRA around a Linear (PEFT's lora.Linear with its DoRA variant). The layer is itself a
// Linear holding the wrapped layer's weight and bias, so the parent's typed field keeps working and
// the state dict keeps `...q_proj.weight` beside `...q_proj.lora_A.weight`, `...q_proj.lora_B.weight`
// and, for DoRA, `...q_proj.lora_magnitude_vector`. unload() hands the wrapped Linear object back.
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import { Linear } from '../nn/index.js';

export interface LoraLayerOptions {
  r: number;
  alpha: number;
  dropout?: number;
  /** rsLoRA: scale by alpha / √r instead of alpha / r. */
  useRslora?: boolean;
  useDora?: boolean;
  /** PEFT's init_lora_weights: true, 'gaussian' or false. */
  init?: boolean | 'gaussian';
}

export interface MergeOptions {
  /** Merge into a copy and refuse non-finite results before touching the weight (PEFT's safe_merge). */
  safeMerge?: boolean;
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
  #enabled = true;
  #merged = false;
  // DoRA: the row norms a merge divided by; unmerge needs them, the merged weight no longer has them.
  #mergeNorm: Tensor | null = null;

  constructor(base: Linear, options: LoraLayerOptions) {
    if (base instanceof LoraLinear) throw new TypeError('LoraLinear: the layer already has an adapter');
    if (!Number.isInteger(options.r) || options.r < 1) throw new RangeError(`LoraLinear: r must be a positive integer, got ${options.r}`);
    const { dtype, device } = base.weight;
    super(base.inFeatures, base.outFeatures, { bias: base.bias !== null, dtype, device });
    this.#base = base;
    this.#baseRequiresGrad = [base.weight.requiresGrad, base.bias?.requiresGrad ?? false];
    // The base tensors move in rather than being aliased: a second handle would keep the old storage
    // alive after a model.to(dtype). The wrapped Linear is empty until unload() moves them back.
    this.weight.setData(base.weight);
    if (this.bias !== null && base.bias !== null) this.bias.setData(base.bias);
    this.weight.requiresGrad_(false);
    this.bias?.requiresGrad_(false);
    this.r = options.r;
    this.alpha = options.alpha;
    this.scaling = options.useRslora ? options.alpha / Math.sqrt(options.r) : options.alpha / options.r;
    this.dropout = options.dropout ?? 0;
    this.lora_A = this.registerModule('lora_A', new Linear(this.inFeatures, this.r, { bias: false, dtype, device }));
    this.lora_B = this.registerModule('lora_B', new Linear(this.r, this.outFeatures, { bias: false, dtype, device }));
    initAdapter(this.lora_A.weight, this.lora_B.weight, options.init ?? true);
    this.lora_magnitude_vector = options.useDora
      ? this.registerParameter('lora_magnitude_vector', torch.noGrad(() => torch.tidy(() => rowNorms(this.weight, this.deltaWeight()))))
      : null;
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
    if (!this.#enabled || this.#merged) return super.forward(x);
    return torch.tidy(() => {
      const result = super.forward(x);
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
    const weight = cast(this.weight, x.dtype);
    const norm = torch.noGrad(() => rowNorms(weight, cast(this.deltaWeight(), x.dtype)));
    const g = this.lora_magnitude_vector!.div(norm);
    const base = dropped ? F.linear(x, weight) : this.bias === null ? result : result.sub(this.bias);
    return g.sub(1).mul(base).add(g.mul(lora).mul(this.scaling));
  }

  /** s·B@A [out, in] in the weight dtype; half-precision factors multiply in float32 (PEFT: slow CPU bf16 matmul). */
  deltaWeight(): Tensor {
    return torch.tidy(() => {
      const [a, b] = [this.lora_A.weight, this.lora_B.weight].map((w) => (isHalf(w.dtype) ? w.float() : w)) as [Tensor, Tensor];
      return cast(b.matmul(a).mul(this.scaling), this.weight.dtype);
    });
  }

  /** W ← W + s·BA (DoRA: W ← m/‖W + s·BA‖_row · (W + s·BA)); the forward then runs the base Linear. */
  merge(options: MergeOptions = {}): void {
    if (this.#merged) return;
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

  /** Undoes merge() (up to rounding). */
  unmerge(): void {
    if (!this.#merged) return;
    torch.noGrad(() => torch.tidy(() => {
      let weight = this.weight;
      if (this.lora_magnitude_vector !== null) weight = weight.div(this.lora_magnitude_vector.div(this.#mergeNorm!).unsqueeze(1));
      this.weight.copy_(weight.sub(this.deltaWeight()));
    }));
    this.#mergeNorm?.dispose();
    this.#mergeNorm = null;
    this.#merged = false;
  }

  /** The wrapped Linear with the base weights (unmerged first), the adapter freed. */
  unload(): Linear {
    this.unmerge();
    return this.#release();
  }

  /** The wrapped Linear with the adapter merged into its weight, the adapter freed. */
  mergeAndUnload(options: MergeOptions = {}): Linear {
    this.merge(options);
    return this.#release();
  }

  // The base Linear takes its tensors back, as they are now (merged, or converted by a `to()`).
  #release(): Linear {
    const base = this.#base;
    base.weight.setData(this.weight).requiresGrad_(this.#baseRequiresGrad[0]);
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
