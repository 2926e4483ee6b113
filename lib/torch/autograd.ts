// Grad mode scopes and torch.autograd.grad. Grad mode is thread-local in libtorch; JS runs ops on
// one thread, so a try/finally around fn restores it exactly.
import { native as N } from './native.js';
import { handleOf, optionalHandle, type Tensor, wrap } from './tensor.js';

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = N.isGradEnabled() as boolean;
  N.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    N.setGradEnabled(previous);
  }
}

/** Runs fn without recording operations for autograd (torch.no_grad). */
export const noGrad = <T>(fn: () => T): T => withGradMode(false, fn);
/** Runs fn with autograd recording on, inside a noGrad region too (torch.enable_grad). */
export const enableGrad = <T>(fn: () => T): T => withGradMode(true, fn);
export const isGradEnabled = (): boolean => N.isGradEnabled();
export const setGradEnabled = (enabled: boolean): void => N.setGradEnabled(Boolean(enabled));

export interface GradOptions {
  gradOutputs?: ReadonlyArray<Tensor | null>;
  retainGraph?: boolean;
  createGraph?: boolean;
  allowUnused?: boolean;
}

/** Gradients of outputs with respect to inputs, without touching .grad (torch.autograd.grad). */
export function grad(outputs: Tensor | readonly Tensor[], inputs: Tensor | readonly Tensor[], options: GradOptions = {}): Array<Tensor | null> {
  const outs = (Array.isArray(outputs) ? outputs : [outputs]) as Tensor[];
  const ins = (Array.isArray(inputs) ? inputs : [inputs]) as Tensor[];
  const createGraph = options.createGraph ?? false;
  const handles = N.autogradGrad(
    outs.map((t, k) => handleOf(t, `outputs[${k}]`)),
    ins.map((t, k) => handleOf(t, `inputs[${k}]`)),
    options.gradOutputs ? options.gradOutputs.map((t, k) => optionalHandle(t, `gradOutputs[${k}]`)) : null,
    options.retainGraph ?? createGraph,
    createGraph,
    options.allowUnused ?? false,
  ) as number[];
  return handles.map((h) => (h === 0 ? null : wrap(h)));
}
