// Linear4bit: bitsandbytes' nn.Linear4bit as a Linear subclass (so model fields typed Linear keep
// working and targeting / LoRA see it as a Linear). The frozen weight is stored 4-bit: `weight` is the
// packed uint8 [ceil(n/2), 1] tensor bitsandbytes saves under that name, and the rest of the quant
// state lives in buffers beside it. Module member names cannot contain dots, so the buffers are named
// `weight_absmax`, `weight_quant_map`, `weight_nested_absmax`, `weight_nested_quant_map` and
// `weight_nested_offset`; the checkpoint boundary (./serialization.ts) maps them to bitsandbytes'
// `weight.absmax`, ..., and the JSON `weight.quant_state.bitsandbytes__<type>`.
import * as torch from '../torch/index.js';
import type { Device, DType, QuantState4bit, QuantType, Tensor } from '../torch/index.js';
import { Linear } from '../nn/index.js';

export type ComputeDtype = 'float32' | 'bfloat16';

/** What a 4-bit weight is, apart from its tensors. */
export interface QuantSpec {
  quantType: QuantType;
  blocksize: number;
  doubleQuant: boolean;
  /** The dtype the weight was quantised from (bitsandbytes' quant_state.dtype; dequantize() returns it). */
  weightDtype: DType;
}

/** What the checkpoint code needs of a 4-bit layer (a Linear4bit, or a LoRA layer over one). */
export interface QuantLayerInfo {
  spec: QuantSpec;
  computeDtype: ComputeDtype;
  shape: [number, number];
  /** The packed codes (the layer's `weight` parameter). */
  weight: Tensor;
  buffers: ReadonlyMap<QuantBufferName, Tensor>;
}

export interface Linear4bitOptions {
  quantType?: QuantType;
  blocksize?: number;
  doubleQuant?: boolean;
  /** Dtype of the matmul (bitsandbytes' compute_dtype): x and bias are cast to it, y back to x's dtype. Default float32. */
  computeDtype?: ComputeDtype;
  /** See QuantSpec.weightDtype (default float32). */
  weightDtype?: DType;
  bias?: boolean;
  /** Dtype of the bias (default weightDtype). */
  biasDtype?: DType;
  device?: Device;
}

/** The quant-state buffers of a 4-bit layer, in registration order (the nested ones only with double quantisation). */
export const QUANT_BUFFERS = [
  'weight_absmax',
  'weight_quant_map',
  'weight_nested_absmax',
  'weight_nested_quant_map',
  'weight_nested_offset',
] as const;
export type QuantBufferName = (typeof QUANT_BUFFERS)[number];
export const quantBufferNames = (doubleQuant: boolean): QuantBufferName[] =>
  QUANT_BUFFERS.filter((n) => doubleQuant || !n.includes('nested'));

const COMPUTE_DTYPES: readonly string[] = ['float32', 'bfloat16'];
const cast = (t: Tensor, dtype: DType): Tensor => (t.dtype === dtype ? t : t.to(dtype));

export function checkComputeDtype(dtype: unknown): ComputeDtype {
  if (!COMPUTE_DTYPES.includes(dtype as string))
    throw new TypeError(`computeDtype must be 'float32' or 'bfloat16', got ${String(dtype)}`);
  return dtype as ComputeDtype;
}

/** The QuantState4bit that the torch 4-bit ops take, from a layer's tensors. */
export function quantStateOf(
  weight: Tensor,
  buffers: ReadonlyMap<string, Tensor>,
  spec: QuantSpec,
  shape: [number, number],
  where: string,
): QuantState4bit {
  const get = (name: QuantBufferName): Tensor => buffers.get(name)!;
  const code = get('weight_quant_map');
  const floats = [
    code,
    ...(spec.doubleQuant
      ? [get('weight_nested_absmax'), get('weight_nested_quant_map'), get('weight_nested_offset')]
      : [get('weight_absmax')]),
  ];
  const converted = floats.find((t) => t.dtype !== 'float32');
  if (converted !== undefined) {
    throw new Error(
      `${where}: the 4-bit quantisation state was converted to ${converted.dtype} (model.to({ dtype }) on a quantised model?); ` +
        'it must stay float32 (transformers refuses .to(dtype) on 4-bit models too)',
    );
  }
  return {
    packed: weight,
    absmax: get('weight_absmax'),
    code,
    nestedAbsmax: spec.doubleQuant ? get('weight_nested_absmax') : null,
    nestedCode: spec.doubleQuant ? get('weight_nested_quant_map') : null,
    offset: spec.doubleQuant ? get('weight_nested_offset') : null,
    quantType: spec.quantType,
    blocksize: spec.blocksize,
    shape: [...shape],
    dtype: spec.weightDtype,
  };
}

/** bitsandbytes' Linear4bit.forward: x and bias in the compute dtype, the 4-bit matmul, y back in x's dtype. */
export function forward4bit(x: Tensor, state: QuantState4bit, bias: Tensor | null, computeDtype: ComputeDtype): Tensor {
  return torch.tidy(() =>
    cast(torch.linear4bit(cast(x, computeDtype), state, bias === null ? null : cast(bias, computeDtype)), x.dtype),
  );
}

/** The tensors of a QuantState4bit under the layer's buffer names (the packed weight apart). */
export function stateTensors(state: QuantState4bit): Map<QuantBufferName, Tensor> {
  const out = new Map<QuantBufferName, Tensor>([
    ['weight_absmax', state.absmax],
    ['weight_quant_map', state.code],
  ]);
  if (state.nestedAbsmax !== null) {
    out.set('weight_nested_absmax', state.nestedAbsmax);
    out.set('weight_nested_quant_map', state.nestedCode!);
    out.set('weight_nested_offset', state.offset!);
  }
  return out;
}

export class Linear4bit extends Linear {
  quantType: QuantType;
  blocksize: number;
  readonly doubleQuant: boolean;
  computeDtype: ComputeDtype;
  weightDtype: DType;
  readonly #buffers = new Map<QuantBufferName, Tensor>();

  /**
   * An empty 4-bit layer (tensors uninitialised, sized for `blocksize`); `setState` or
   * `Linear4bit.fromLinear` fill it. The dense [out, in] weight that Linear's constructor makes is
   * allocated as uint8 and replaced before anything writes to it.
   */
  constructor(inFeatures: number, outFeatures: number, options: Linear4bitOptions = {}) {
    const device = options.device ?? 'cpu';
    super(inFeatures, outFeatures, { bias: false, dtype: 'uint8', device });
    this.quantType = options.quantType ?? 'nf4';
    if (this.quantType !== 'nf4' && this.quantType !== 'fp4')
      throw new TypeError(`Linear4bit: quantType must be 'nf4' or 'fp4', got ${String(this.quantType)}`);
    this.blocksize = options.blocksize ?? 64;
    this.doubleQuant = options.doubleQuant ?? true;
    this.computeDtype = checkComputeDtype(options.computeDtype ?? 'float32');
    this.weightDtype = options.weightDtype ?? 'float32';
    const n = inFeatures * outFeatures;
    const blocks = Math.ceil(n / this.blocksize);
    this.weight.setData(torch.empty([Math.ceil(n / 2), 1], { dtype: 'uint8', device }));
    if (options.bias ?? true) {
      // Linear's `bias` is readonly for users; this constructor is where it is made.
      (this as { bias: Tensor | null }).bias = this.registerParameter(
        'bias',
        torch.empty([outFeatures], { dtype: options.biasDtype ?? this.weightDtype, device }),
      );
    }
    const shapes: Record<QuantBufferName, [number[], DType]> = {
      weight_absmax: [[blocks], this.doubleQuant ? 'uint8' : 'float32'],
      weight_quant_map: [[16], 'float32'],
      weight_nested_absmax: [[Math.ceil(blocks / 256)], 'float32'],
      weight_nested_quant_map: [[256], 'float32'],
      weight_nested_offset: [[], 'float32'],
    };
    for (const name of quantBufferNames(this.doubleQuant)) {
      const [shape, dtype] = shapes[name];
      this.#buffers.set(name, this.registerBuffer(name, torch.empty(shape, { dtype, device })));
    }
  }

  /** Quantises `linear`'s weight into a new Linear4bit that shares its bias (`linear` is left intact). */
  static fromLinear(
    linear: Linear,
    options: Omit<Linear4bitOptions, 'bias' | 'biasDtype' | 'weightDtype' | 'device'> = {},
  ): Linear4bit {
    if (linear instanceof Linear4bit) throw new TypeError('Linear4bit.fromLinear: the layer is already 4-bit');
    const { dtype, device } = linear.weight;
    const layer = new Linear4bit(linear.inFeatures, linear.outFeatures, {
      ...options,
      weightDtype: dtype,
      device,
      bias: linear.bias !== null,
      biasDtype: linear.bias?.dtype,
    });
    layer.quantizeFrom(linear.weight);
    if (layer.bias !== null && linear.bias !== null)
      layer.bias.setData(linear.bias.detach()).requiresGrad_(linear.bias.requiresGrad);
    return layer;
  }

  /** Quantises a dense [out, in] weight into this layer (its dtype becomes weightDtype). */
  quantizeFrom(weight: Tensor): void {
    if (weight.shape.length !== 2 || weight.shape[0] !== this.outFeatures || weight.shape[1] !== this.inFeatures) {
      throw new Error(
        `Linear4bit: weight has shape [${weight.shape.join(', ')}], expected [${this.outFeatures}, ${this.inFeatures}]`,
      );
    }
    this.weightDtype = weight.dtype;
    this.setState(
      torch.noGrad(() =>
        torch.quantize4bit(weight, {
          quantType: this.quantType,
          blocksize: this.blocksize,
          doubleQuant: this.doubleQuant,
        }),
      ),
    );
  }

  /** Takes `state`'s tensors as this layer's (they are consumed). */
  setState(state: QuantState4bit): void {
    if (state.shape.length !== 2 || state.shape[0] !== this.outFeatures || state.shape[1] !== this.inFeatures) {
      throw new Error(
        `Linear4bit: state has shape [${state.shape.join(', ')}], expected [${this.outFeatures}, ${this.inFeatures}]`,
      );
    }
    if ((state.nestedAbsmax !== null) !== this.doubleQuant) {
      throw new Error(
        `Linear4bit: the state is ${state.nestedAbsmax !== null ? '' : 'not '}double-quantised but the layer ${this.doubleQuant ? 'is' : 'is not'}`,
      );
    }
    this.quantType = state.quantType;
    this.blocksize = state.blocksize;
    this.weightDtype = state.dtype;
    this.weight.requiresGrad_(false);
    this.weight.setData(state.packed);
    for (const [name, t] of stateTensors(state)) this.#buffers.get(name)!.setData(t);
  }

  get spec(): QuantSpec {
    return {
      quantType: this.quantType,
      blocksize: this.blocksize,
      doubleQuant: this.doubleQuant,
      weightDtype: this.weightDtype,
    };
  }

  /** The live quant-state tensors by buffer name. */
  get quantBuffers(): ReadonlyMap<QuantBufferName, Tensor> {
    return this.#buffers;
  }

  quantInfo(): QuantLayerInfo {
    return {
      spec: this.spec,
      computeDtype: this.computeDtype,
      shape: [this.outFeatures, this.inFeatures],
      weight: this.weight,
      buffers: this.#buffers,
    };
  }

  /** The state the torch 4-bit ops take (live tensors, not copies). */
  quantState(): QuantState4bit {
    return quantStateOf(this.weight, this.#buffers, this.spec, [this.outFeatures, this.inFeatures], 'Linear4bit');
  }

  override forward(x: Tensor): Tensor {
    return forward4bit(x, this.quantState(), this.bias, this.computeDtype);
  }

  /** The dense weight [out, in] (bitsandbytes' dequantize_4bit), in `dtype` (default weightDtype). */
  dequantize(dtype?: DType): Tensor {
    return torch.noGrad(() => torch.dequantize4bit(this.quantState(), { dtype: dtype ?? this.weightDtype }));
  }

  /** A dense Linear with the dequantised weight, sharing this layer's bias. */
  toLinear(): Linear {
    const weight = this.dequantize();
    const linear = new Linear(this.inFeatures, this.outFeatures, {
      bias: this.bias !== null,
      dtype: 'uint8',
      device: weight.device,
    });
    linear.weight.requiresGrad_(false).setData(weight);
    if (linear.bias !== null && this.bias !== null)
      linear.bias.setData(this.bias.detach()).requiresGrad_(this.bias.requiresGrad);
    return linear;
  }

  /** Bytes of the 4-bit weight and its state (the packed weight, absmax and nested state, the code tables), bias excluded. */
  quantizedBytes(): number {
    const bytes = (t: Tensor): number => t.numel() * (t.dtype === 'uint8' ? 1 : 4);
    return bytes(this.weight) + [...this.#buffers.values()].reduce((n, t) => n + bytes(t), 0);
  }
}
