// quant: bitsandbytes-compatible 4-bit layers for QLoRA (Linear4bit, quantizeModel, quantise on load,
// bitsandbytes checkpoint keys). Beside nn, above torch; models and adapters build on it.
export {
  Linear4bit,
  type ComputeDtype,
  type QuantSpec,
  type QuantLayerInfo,
  type Linear4bitOptions,
} from './linear4bit.js';
export {
  quantizeModel,
  quantizationConfig,
  quantizationTargets,
  isSkipped,
  isQuantized,
  quantInfo,
  outputLinearName,
  bnbStateDict,
  bnbQuantizationConfig,
  parseBnbQuantizationConfig,
  type QuantizationOptions,
  type QuantizationConfig,
} from './quantize.js';
