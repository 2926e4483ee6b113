import type { Device, DType } from '../torch/index.js';

/** Where a layer's tensors are created. */
export interface ParamOptions {
  dtype?: DType;
  device?: Device;
}
