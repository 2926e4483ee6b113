// `torch`: the tensor API, mirroring PyTorch's names in camelCase.
export { Tensor, type Scalar, type ToOptions } from './tensor.js';
export type { DType, TypedArray } from './dtype.js';
export type { Device } from './args.js';
export * from './creation.js';
export * from './functional.js';
export { tidy, keep, memory, type MemoryInfo } from './scope.js';
export { noGrad, enableGrad, isGradEnabled, setGradEnabled, checkpoint } from './autograd.js';
export {
  quantize4bit,
  dequantize4bit,
  linear4bit,
  type QuantState4bit,
  type QuantType,
  type Quantize4bitOptions,
  type Linear4bitOptions,
} from './quant4bit.js';
export { adamwStep_, type AdamwStepOptions } from './fused_optim.js';
export {
  linearLogprobs,
  linearLogprobStats,
  linearLogprobStatsChunk,
  linearLogprobGradChunk,
  attachGradients,
  type LinearLogprobStats,
  type LinearLogprobOptions,
  type StatsGradients,
  type HeadGradients,
} from './fused_linear.js';
export * as autograd from './autograd.js';
export * as nn from './nn.js';
export * as cuda from './cuda.js';
export { setNumThreads, getNumThreads } from './threads.js';
export { loadSafetensors, saveSafetensors, readSafetensorsHeader, type SafetensorsMetadata } from './safetensors.js';
import { native } from './native.js';

/** What the loaded addon was built from: its source hash, libtorch version, and CUDA support. */
export const buildInfo = (): { sourceHash: string; torchVersion: string; cuda: boolean } => native.buildInfo();

export const float32 = 'float32';
export const float64 = 'float64';
export const float16 = 'float16';
export const bfloat16 = 'bfloat16';
export const int64 = 'int64';
export const int32 = 'int32';
export const int16 = 'int16';
export const int8 = 'int8';
export const uint8 = 'uint8';
export const bool = 'bool';
