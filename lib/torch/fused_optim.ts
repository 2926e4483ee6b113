// Fused optimizer steps over many tensors in one native call (cpp/kernels/cpu/adamw.cc); lib/optim
// builds the optimizers on them.
import { checkBoolean, checkInteger, checkNumber, invalidArgument } from './args.js';
import { native as N } from './native.js';
import { handleOf, type Tensor } from './tensor.js';

export interface AdamwStepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The step count including this update (1 on the first call), for the bias corrections. */
  step: number;
  maximize?: boolean;
  amsgrad?: false;
}

const OP = 'adamwStep_';

function handles(list: ReadonlyArray<Tensor | null>, name: string, optional = false): number[] {
  if (!Array.isArray(list)) throw invalidArgument(name, 'an array of Tensors', list, OP);
  return list.map((t, k) => (optional && (t === null || t === undefined) ? 0 : handleOf(t, `${name}[${k}]`, OP)));
}

/**
 * torch.optim.AdamW's update, in place, one fused pass per parameter: p *= 1 - lr*wd; m, v moving
 * averages; p -= lr/(1-beta1^step) * m / (sqrt(v)/sqrt(1-beta2^step) + eps). Parameters are
 * float32 or bfloat16 (gradients of the same dtype), state float32; a null gradient skips its
 * parameter.
 */
export function adamwStep_(
  params: readonly Tensor[],
  grads: ReadonlyArray<Tensor | null>,
  expAvg: readonly Tensor[],
  expAvgSq: readonly Tensor[],
  options: AdamwStepOptions,
): void {
  const p = handles(params, 'params');
  const g = handles(grads, 'grads', true);
  const m = handles(expAvg, 'expAvg');
  const v = handles(expAvgSq, 'expAvgSq');
  if (g.length !== p.length || m.length !== p.length || v.length !== p.length) {
    throw new RangeError(
      `adamwStep_: ${p.length} params need as many grads, expAvg and expAvgSq, got ${g.length}, ${m.length} and ${v.length}`,
    );
  }
  if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options, OP);
  const { lr, beta1, beta2, eps, weightDecay } = options;
  for (const [name, value] of Object.entries({ lr, beta1, beta2, eps, weightDecay })) {
    if (!(checkNumber(value, `options.${name}`, OP) >= 0))
      throw invalidArgument(`options.${name}`, 'a number >= 0', value, OP);
  }
  if (!(beta1 < 1) || !(beta2 < 1))
    throw invalidArgument('options.beta1 / beta2', 'numbers in [0, 1)', [beta1, beta2], OP);
  const step = checkInteger(options.step, 'options.step', OP);
  if (step < 1) throw invalidArgument('options.step', 'an integer >= 1', step, OP);
  if ((options.amsgrad as unknown) === true) throw new TypeError('adamwStep_: amsgrad is not supported');
  N.adamwStep_(
    p,
    g,
    m,
    v,
    lr,
    beta1,
    beta2,
    eps,
    weightDecay,
    step,
    checkBoolean(options.maximize ?? false, 'options.maximize'),
  );
}
