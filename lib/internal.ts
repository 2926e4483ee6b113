// vlalign's internals, for its own tests, benchmarks and tools (`vlalign/internal`): file formats'
// byte-level helpers, the addon itself, matching rules. No stability promise; users import 'vlalign'.
export { native, nativeBinaryPath, verifyBinary, packageRoot } from './torch/native.js';
export {
  QUANT_BUFFERS,
  quantBufferNames,
  quantStateOf,
  forward4bit,
  stateTensors,
  checkComputeDtype,
  type QuantBufferName,
} from './quant/linear4bit.js';
export { planQuantizedLoad, QuantizedLoadPlan, QuantizedLoad, type QuantizedLoadInput } from './quant/load.js';
export {
  BNB_KEYS,
  bnbPart,
  quantStateJson,
  pythonFloatRepr,
  parseQuantStateTensor,
  stateFromParts,
  type QuantStateJson,
} from './quant/serialization.js';
export { peftJsonText } from './adapters/config.js';
export { castAdapters } from './adapters/lora_linear.js';
export { adapterTensorName } from './adapters/io.js';
export { fullMatch, matchesModule, patternKey, layerIndex } from './adapters/patterns.js';
export { checkOption } from './optim/optimizer.js';
export { windowLayout, patchPositions, imageSegments } from './models/qwen2_vl/vision_layout.js';
