// Grad mode scopes, torch.autograd.grad / backward, autograd nodes with a JS backward, and gradient
// checkpointing. Grad mode is thread-local in libtorch; JS runs ops on one thread, so a try/finally
// around fn restores it exactly.
import { invalidArgument } from './args.js';
import { getRngState, setRngState } from './creation.js';
import { native as N } from './native.js';
import { tidy } from './scope.js';
import { handleOf, optionalHandle, Tensor, wrap, wrapAll } from './tensor.js';

function withGradMode<T>(enabled: boolean, fn: () => T, op: string): T {
  if (typeof fn !== 'function') throw invalidArgument('fn', 'a function', fn, op);
  const previous = N.isGradEnabled() as boolean;
  N.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    N.setGradEnabled(previous);
  }
}

/** Runs fn without recording operations for autograd (torch.no_grad). */
export const noGrad = <T>(fn: () => T): T => withGradMode(false, fn, 'noGrad');
/** Runs fn with autograd recording on, inside a noGrad region too (torch.enable_grad). */
export const enableGrad = <T>(fn: () => T): T => withGradMode(true, fn, 'enableGrad');
export const isGradEnabled = (): boolean => N.isGradEnabled();
export function setGradEnabled(enabled: boolean): void {
  if (typeof enabled !== 'boolean') throw invalidArgument('enabled', 'a boolean', enabled, 'setGradEnabled');
  N.setGradEnabled(enabled);
}

export interface GradOptions {
  gradOutputs?: ReadonlyArray<Tensor | null>;
  retainGraph?: boolean;
  createGraph?: boolean;
  allowUnused?: boolean;
}

/** Gradients of outputs with respect to inputs, without touching .grad (torch.autograd.grad). */
export function grad(
  outputs: Tensor | readonly Tensor[],
  inputs: Tensor | readonly Tensor[],
  options: GradOptions = {},
): Array<Tensor | null> {
  const op = 'autograd.grad';
  const outs = (Array.isArray(outputs) ? outputs : [outputs]) as Tensor[];
  const ins = (Array.isArray(inputs) ? inputs : [inputs]) as Tensor[];
  const { gradOutputs } = checkOptions(options, op);
  const createGraph = options.createGraph ?? false;
  if (gradOutputs !== undefined && !Array.isArray(gradOutputs)) {
    throw invalidArgument('gradOutputs', 'an array of Tensors or nulls', gradOutputs, op);
  }
  const handles = N.autogradGrad(
    outs.map((t, k) => handleOf(t, `outputs[${k}]`, op)),
    ins.map((t, k) => handleOf(t, `inputs[${k}]`, op)),
    gradOutputs ? gradOutputs.map((t, k) => optionalHandle(t, `gradOutputs[${k}]`, op)) : null,
    options.retainGraph ?? createGraph,
    createGraph,
    options.allowUnused ?? false,
  ) as number[];
  return handles.map((h) => (h === 0 ? null : wrap(h)));
}

/** Accumulates gradients of several outputs into the leaves' .grad (torch.autograd.backward). */
export function backward(
  tensors: readonly Tensor[],
  gradTensors: ReadonlyArray<Tensor | null> = [],
  options: { retainGraph?: boolean; createGraph?: boolean } = {},
): void {
  const op = 'autograd.backward';
  const roots = tensorsArg(tensors, 'tensors', op);
  if (!Array.isArray(gradTensors)) {
    throw invalidArgument('gradTensors', 'an array of Tensors or nulls', gradTensors, op);
  }
  if (gradTensors.length !== 0 && gradTensors.length !== roots.length) {
    throw new RangeError(`${op}: ${gradTensors.length} gradTensors given for ${roots.length} tensors`);
  }
  checkOptions(options, op);
  const createGraph = options.createGraph ?? false;
  N.backwardMany(
    roots,
    gradTensors.map((g, k) => optionalHandle(g, `gradTensors[${k}]`, op)),
    options.retainGraph ?? createGraph,
    createGraph,
  );
}

function tensorsArg(value: unknown, name: string, op: string): number[] {
  if (!Array.isArray(value)) throw invalidArgument(name, 'an array of Tensors', value, op);
  return value.map((t, k) => handleOf(t, `${name}[${k}]`, op));
}

// An options argument is an object (or absent): `grad(y, x, 5)` names the op instead of reading 5.x.
function checkOptions<T extends object>(options: T, op: string): T {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidArgument('options', 'an object', options, op);
  }
  return options;
}

export type JsBackward = (
  gradOutputs: Array<Tensor | null>,
  saved: Tensor[],
) => ReadonlyArray<Tensor | null | undefined>;

export interface FunctionWithBackwardOptions {
  /** Extra tensors the node keeps for backward (after the inputs in `saved`). */
  save?: readonly Tensor[];
  /** Attach the node even when no input requires grad (its backward may reach other leaves). */
  always?: boolean;
}

/**
 * An autograd node defined in JS (torch.autograd.Function with a JS backward). `forward` runs under
 * no-grad; the returned tensors share its outputs' data and their grad_fn calls
 * `backward(gradOutputs, saved)` synchronously during backward(), where `saved` holds detached
 * aliases of `inputs` followed by `options.save`. backward returns one gradient (or null) per
 * input. Tensors made inside forward and backward are freed when they return. CPU graphs only:
 * the engine runs CUDA backward on device threads, where no JS can run (a clear error then).
 */
export function functionWithBackward(
  inputs: readonly Tensor[],
  forward: () => readonly Tensor[],
  backward: JsBackward,
  options: FunctionWithBackwardOptions = {},
): Tensor[] {
  const op = 'autograd.functionWithBackward';
  const inputHandles = tensorsArg(inputs, 'inputs', op);
  if (typeof forward !== 'function') throw invalidArgument('forward', 'a function', forward, op);
  if (typeof backward !== 'function') throw invalidArgument('backward', 'a function', backward, op);
  checkOptions(options, op);
  const savedHandles = [...inputHandles, ...tensorsArg(options.save ?? [], 'options.save', op)];
  const count = inputs.length;
  const callback = (gradIds: number[], savedIds: number[]): number[] =>
    tidy(() => {
      const grads = gradIds.map((id) => (id === 0 ? null : wrap(id)));
      const result = backward(grads, wrapAll(savedIds));
      if (!Array.isArray(result) || result.length !== count) {
        throw new TypeError(
          `${op}: expected an array of ${count} gradients (Tensor or null) from backward but received ${describeResult(result)}`,
        );
      }
      // Fresh ids the native node takes over; every JS wrapper made here is freed by the tidy.
      return result.map((g, k) =>
        g === null || g === undefined ? 0 : (N.alias(handleOf(g, `backward result[${k}]`, op)) as number),
      );
    });
  return tidy(() => {
    const outputs = noGrad(forward);
    const outputHandles = tensorsArg(outputs, 'forward result', op);
    return wrapAll(
      N.functionWithBackward(inputHandles, outputHandles, savedHandles, callback, options.always ?? false),
    );
  });
}

function describeResult(value: unknown): string {
  return Array.isArray(value) ? `an array of length ${value.length}` : String(value);
}

export interface CheckpointOptions {
  /** Replay the CPU generator in the recomputation so dropout draws the same masks (default true). */
  preserveRngState?: boolean;
}

/**
 * Gradient checkpointing with PyTorch's reentrant semantics (torch.utils.checkpoint,
 * use_reentrant=True): fn runs under no-grad and keeps no activations; backward recomputes fn on
 * detached inputs with grad enabled and backpropagates the incoming gradients through it, which
 * accumulates the gradients of parameters fn captures and yields the inputs' gradients. Unlike
 * PyTorch's reentrant form, parameters get gradients even when no input requires grad. The CPU
 * generator state is replayed so random ops (dropout) recompute identically; other nondeterminism
 * in fn makes the gradients wrong.
 */
export function checkpoint<T extends Tensor | Tensor[]>(
  fn: (...inputs: Tensor[]) => T,
  inputs: readonly Tensor[],
  options: CheckpointOptions = {},
): T {
  if (typeof fn !== 'function') throw invalidArgument('fn', 'a function', fn, 'checkpoint');
  tensorsArg(inputs, 'inputs', 'checkpoint');
  checkOptions(options, 'checkpoint');
  const requiresGrad = inputs.map((t) => t.requiresGrad);
  const rngState = (options.preserveRngState ?? true) ? getRngState() : null;
  let single = false;
  const recompute = (gradOutputs: Array<Tensor | null>, saved: Tensor[]): Array<Tensor | null> => {
    const leaves = inputs.map((_, k) => (requiresGrad[k] ? saved[k]!.detach().requiresGrad_(true) : saved[k]!));
    const outputs = withRngState(rngState === null ? null : saved[inputs.length]!, () =>
      enableGrad(() => asList(fn(...leaves))),
    );
    const roots: Tensor[] = [];
    const grads: Tensor[] = [];
    outputs.forEach((out, k) => {
      const g = gradOutputs[k];
      if (g !== null && g !== undefined && out.requiresGrad) {
        roots.push(out);
        grads.push(g);
      }
    });
    if (roots.length > 0) backward(roots, grads);
    return leaves.map((leaf, k) => (requiresGrad[k] ? leaf.grad : null));
  };
  try {
    const outputs = functionWithBackward(
      inputs,
      () => {
        const out = fn(...inputs);
        single = !Array.isArray(out);
        return asList(out);
      },
      recompute,
      { save: rngState === null ? [] : [rngState], always: true },
    );
    return (single ? outputs[0] : outputs) as T;
  } finally {
    rngState?.dispose();
  }
}

function asList(out: Tensor | Tensor[]): Tensor[] {
  if (out instanceof Tensor) return [out];
  if (Array.isArray(out) && out.every((t) => t instanceof Tensor)) return out;
  throw invalidArgument('the result of fn', 'a Tensor or an array of Tensors', out, 'checkpoint');
}

function withRngState<T>(state: Tensor | null, fn: () => T): T {
  if (state === null) return fn();
  const current = getRngState();
  setRngState(state);
  try {
    return fn();
  } finally {
    setRngState(current);
    current.dispose();
  }
}
