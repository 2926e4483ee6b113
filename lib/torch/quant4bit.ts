// 4-bit weight quantisation compatible with bitsandbytes (NF4 / FP4, blocksize 64, optional double
// quantisation of the absmax), and the QLoRA linear layer that multiplies by such a weight a tile
// of rows at a time. The kernels are in cpp/kernels/cpu/quant4bit.{h,cc}, linear4bit.cc.
import { checkBoolean, checkInteger, invalidArgument, optionsArg } from './args.js';
import { dtypeCode, type DType } from './dtype.js';
import { native as N } from './native.js';
import { handleOf, optionalHandle, type Tensor, wrap } from './tensor.js';

export type QuantType = 'nf4' | 'fp4';

/**
 * A quantised weight, with bitsandbytes' QuantState fields: `packed` (uint8 [ceil(n/2), 1], first
 * element in the high nibble) is saved as `weight`, `absmax` as `weight.absmax`, `code` as
 * `weight.quant_map`, `nestedAbsmax` / `nestedCode` as `weight.nested_absmax` /
 * `weight.nested_quant_map`; `offset` goes into the JSON of `weight.quant_state.bitsandbytes__<type>`.
 */
export interface QuantState4bit {
  packed: Tensor;
  /** float32 [blocks], or uint8 codes [blocks] with double quantisation. */
  absmax: Tensor;
  /** Double quantisation: float32 [ceil(blocks / 256)], the 8-bit dynamic map (256) and the mean. */
  nestedAbsmax: Tensor | null;
  nestedCode: Tensor | null;
  offset: Tensor | null;
  /** The 16 code values (float32). */
  code: Tensor;
  quantType: QuantType;
  blocksize: number;
  shape: number[];
  dtype: DType;
}

export interface Quantize4bitOptions {
  quantType?: QuantType;
  blocksize?: number;
  doubleQuant?: boolean;
}

const BLOCKSIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096];
const QUANTIZABLE: readonly DType[] = ['float32', 'bfloat16', 'float16'];

/** Quantises a float32 / bf16 / f16 weight to 4 bits (bitsandbytes' quantize_4bit). */
export function quantize4bit(weight: Tensor, options: Quantize4bitOptions = {}): QuantState4bit {
  const handle = handleOf(weight, 'weight', 'quantize4bit');
  const o = optionsArg(options, 'quantize4bit');
  const quantType = o.quantType ?? 'nf4';
  if (quantType !== 'nf4' && quantType !== 'fp4')
    throw invalidArgument('quantType', "'nf4' or 'fp4'", quantType, 'quantize4bit');
  const blocksize = checkInteger(o.blocksize ?? 64, 'blocksize', 'quantize4bit');
  if (!BLOCKSIZES.includes(blocksize))
    throw invalidArgument('blocksize', `one of ${BLOCKSIZES.join(', ')}`, blocksize, 'quantize4bit');
  const doubleQuant = checkBoolean(o.doubleQuant ?? false, 'doubleQuant', 'quantize4bit');
  const dtype = weight.dtype;
  if (!QUANTIZABLE.includes(dtype))
    throw invalidArgument('weight', 'a float32, bfloat16 or float16 tensor', dtype, 'quantize4bit');
  const [packed, absmax, nestedAbsmax, nestedCode, offset, code] = N.quantize4bit(
    handle,
    quantType,
    blocksize,
    doubleQuant,
  ) as number[];
  const optional = (h: number | undefined): Tensor | null => (h ? wrap(h) : null);
  return {
    packed: wrap(packed!),
    absmax: wrap(absmax!),
    nestedAbsmax: optional(nestedAbsmax),
    nestedCode: optional(nestedCode),
    offset: optional(offset),
    code: wrap(code!),
    quantType,
    blocksize,
    shape: weight.shape,
    dtype,
  };
}

function stateHandles(state: QuantState4bit, op: string): number[] {
  if (typeof state !== 'object' || state === null) throw invalidArgument('state', 'a QuantState4bit', state, op);
  const nested = state.nestedAbsmax !== null && state.nestedAbsmax !== undefined;
  if (nested && (!state.nestedCode || !state.offset)) {
    throw new TypeError(`${op}: state: double quantisation needs nestedAbsmax, nestedCode and offset together`);
  }
  return [
    handleOf(state.packed, 'state.packed', op),
    handleOf(state.absmax, 'state.absmax', op),
    optionalHandle(state.nestedAbsmax, 'state.nestedAbsmax', op),
    optionalHandle(state.nestedCode, 'state.nestedCode', op),
    optionalHandle(state.offset, 'state.offset', op),
    handleOf(state.code, 'state.code', op),
  ];
}

/** The weight back in `dtype` (default: the dtype it was quantised from), bitsandbytes' dequantize_4bit. */
export function dequantize4bit(state: QuantState4bit, options: { dtype?: DType } = {}): Tensor {
  const handles = stateHandles(state, 'dequantize4bit');
  const o = optionsArg(options, 'dequantize4bit');
  const dtype = o.dtype ?? state.dtype;
  return wrap(
    N.dequantize4bit(
      ...handles,
      checkInteger(state.blocksize, 'state.blocksize', 'dequantize4bit'),
      state.shape,
      dtypeCode(dtype),
    ),
  );
}

export interface Linear4bitOptions {
  /** Bytes of dequantised weight per tile (default 16 MiB): the extra memory of the layer. Smaller tiles are slower. */
  tileBytes?: number;
}

/**
 * y = x W^T + b for a 4-bit W [out, in] (QLoRA's frozen base layer), computed in x's dtype
 * (float32, bfloat16, or float64 for gradient checks) without materialising W: each tile of output
 * rows is dequantised into one reused buffer and multiplied. Differentiable in x and bias.
 */
export function linear4bit(
  x: Tensor,
  state: QuantState4bit,
  bias?: Tensor | null,
  options: Linear4bitOptions = {},
): Tensor {
  const xh = handleOf(x, 'x', 'linear4bit');
  const handles = stateHandles(state, 'linear4bit');
  const o = optionsArg(options, 'linear4bit');
  if (!Array.isArray(state.shape) || state.shape.length !== 2)
    throw invalidArgument('state.shape', 'a 2-d weight shape', state.shape, 'linear4bit');
  const [outFeatures, inFeatures] = state.shape as [number, number];
  const tileBytes = checkInteger(o.tileBytes ?? 16 << 20, 'tileBytes', 'linear4bit');
  if (tileBytes <= 0) throw invalidArgument('tileBytes', 'a positive integer', tileBytes, 'linear4bit');
  return wrap(
    N.linear4bit(
      xh,
      optionalHandle(bias, 'bias', 'linear4bit'),
      handles[0],
      handles[1],
      handles[2],
      handles[3],
      handles[4],
      handles[5],
      checkInteger(state.blocksize, 'state.blocksize', 'linear4bit'),
      outFeatures,
      inFeatures,
      tileBytes,
    ),
  );
}
