// dtype helpers shared by the LoRA layer, its base weight and its variants.
import type { DType, Tensor } from '../torch/index.js';

export const isHalf = (dtype: DType): boolean => dtype === 'float16' || dtype === 'bfloat16';

/** `t` in `dtype`: itself when it already is, else a converted copy. */
export const cast = (t: Tensor, dtype: DType): Tensor => (t.dtype === dtype ? t : t.to(dtype));
