// quant: bitsandbytes-compatible 4-bit layers for QLoRA (Linear4bit, quantizeModel, quantise on load,
// bitsandbytes checkpoint keys). Beside nn, above torch; models and adapters build on it.
export {
  Linear4bit, QUANT_BUFFERS, quantBufferNames, quantStateOf, forward4bit, stateTensors, checkComputeDtype,
  type ComputeDtype, type QuantSpec, type QuantLayerInfo, type Linear4bitOptions, type QuantBufferName,
} from './linear4bit.js';
export {
  quantizeModel, quantizationConfig, quantizationTargets, isSkipped, isQuantized, quantInfo, outputLinearName,
  bnbStateDict, bnbQuantizationConfig, parseBnbQuantizationConfig, type QuantizationOptions, type QuantizationConfig,
} from './quantize.js';
export { planQuantizedLoad, QuantizedLoadPlan, QuantizedLoad, type QuantizedLoadInput } from './load.js';
export { BNB_KEYS, bnbPart, quantStateJson, pythonFloatRepr, parseQuantStateTensor, stateFromParts, type QuantStateJson } from './serialization.js';
