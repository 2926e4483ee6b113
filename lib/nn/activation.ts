// Activation functions by their Hugging Face config names (`hidden_act`).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

export type Activation = (x: Tensor) => Tensor;

const F = () => torch.nn.functional;

const ACTIVATIONS: Record<string, Activation> = {
  gelu: (x) => F().gelu(x),
  gelu_new: (x) => F().gelu(x, { approximate: 'tanh' }),
  gelu_pytorch_tanh: (x) => F().gelu(x, { approximate: 'tanh' }),
  // x * sigmoid(1.702 x), the CLIP / Qwen2-VL vision approximation
  quick_gelu: (x) => torch.tidy(() => x.mul(x.mul(1.702).sigmoid())),
  silu: (x) => x.silu(),
  swish: (x) => x.silu(),
  relu: (x) => x.relu(),
  tanh: (x) => x.tanh(),
  sigmoid: (x) => x.sigmoid(),
};

export function activation(name: string, where = 'hidden_act'): Activation {
  const fn = ACTIVATIONS[name];
  if (fn === undefined)
    throw new Error(`${where}: unknown activation '${name}' (known: ${Object.keys(ACTIVATIONS).join(', ')})`);
  return fn;
}
