// Collectives (torch.distributed's, with async_op=True): each returns a Promise that settles off the
// JS thread's critical path, so the event loop keeps running while peers are waited for. Every
// rank must call the same collectives in the same order. A tensor belongs to its collective until
// the Promise settles: read or write it only after that.
import { invalidArgument } from '../torch/args.js';
import { empty } from '../torch/creation.js';
import type { DType } from '../torch/dtype.js';
import { Tensor } from '../torch/tensor.js';
import { c10d, type ReduceOp } from './c10d.js';
import { requireGroup, type ProcessGroupInfo } from './process_group.js';

export type { ReduceOp };

const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min'];
// What Gloo reduces (libtorch 1.13's list); NCCL takes bfloat16 too.
const GLOO_DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'int64', 'int32', 'int8', 'uint8'];
const FLOATING: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16'];

function checkTensor(group: ProcessGroupInfo, value: unknown, name: string, op: string): Tensor {
  if (!Tensor.isTensor(value)) throw invalidArgument(name, 'a Tensor', value, op);
  if (value.isDisposed) throw new Error(`${op}: ${name}: the tensor was disposed and cannot be used`);
  const device = value.device;
  if (group.backend === 'gloo' && device !== 'cpu') throw invalidArgument(name, 'a CPU tensor (gloo)', device, op);
  if (group.backend === 'nccl' && !device.startsWith('cuda'))
    throw invalidArgument(name, 'a CUDA tensor (nccl)', device, op);
  const dtypes = group.backend === 'gloo' ? GLOO_DTYPES : [...GLOO_DTYPES, 'bfloat16'];
  if (!dtypes.includes(value.dtype))
    throw invalidArgument(`${name}'s dtype`, `one of ${dtypes.join(', ')} (${group.backend})`, value.dtype, op);
  if (!value.isContiguous())
    throw invalidArgument(name, 'a contiguous tensor (call .contiguous())', 'a strided view', op);
  return value;
}

function checkReduceOp(value: unknown, tensor: Tensor, op: string): ReduceOp {
  if (!REDUCE_OPS.includes(value as ReduceOp))
    throw invalidArgument('options.op', `one of ${REDUCE_OPS.join(', ')}`, value, op);
  if (value === 'avg' && !FLOATING.includes(tensor.dtype))
    throw invalidArgument(
      'options.op',
      "'sum', 'max' or 'min' for an integer tensor ('avg' needs floating point)",
      value,
      op,
    );
  return value as ReduceOp;
}

function checkOutput(output: unknown, shape: number[], like: Tensor, group: ProcessGroupInfo, op: string): Tensor {
  const out = checkTensor(group, output, 'options.output', op);
  if (out.dtype !== like.dtype)
    throw invalidArgument('options.output', `a tensor of the input's dtype (${like.dtype})`, out.dtype, op);
  if (out.shape.join() !== shape.join()) {
    throw new RangeError(`${op}: expected options.output of shape [${shape}] but received [${out.shape}]`);
  }
  return out;
}

function checkOptions(options: unknown, op: string): Record<string, unknown> {
  if (typeof options !== 'object' || options === null) throw invalidArgument('options', 'an object', options, op);
  return options as Record<string, unknown>;
}

/** Runs a native collective; a failure keeps the stack of the call that started it (sharp's idea). */
async function run(start: () => Promise<void>): Promise<void> {
  const caller = new Error();
  try {
    await start();
  } catch (error) {
    if (error instanceof Error && caller.stack) {
      error.stack = `${error.name}: ${error.message}\n${caller.stack.split('\n').slice(1).join('\n')}`;
    }
    throw error;
  }
}

/**
 * In place: `tensor` becomes the reduction of every rank's `tensor` (sum, avg, max or min).
 * Resolves to `tensor`.
 */
export async function allReduce(tensor: Tensor, options: { op?: ReduceOp } = {}): Promise<Tensor> {
  const group = requireGroup('allReduce');
  const t = checkTensor(group, tensor, 'tensor', 'allReduce');
  const op = checkReduceOp(checkOptions(options, 'allReduce').op ?? 'sum', t, 'allReduce');
  await run(() => c10d.allReduce(t, op));
  return t;
}

/**
 * Every rank's `input` concatenated along dim 0 in rank order (all_gather_into_tensor): an input of
 * shape [n, ...] gives [worldSize * n, ...] (a 0-d input gives [worldSize]). `options.output` takes
 * a preallocated result.
 */
export async function allGather(input: Tensor, options: { output?: Tensor } = {}): Promise<Tensor> {
  const group = requireGroup('allGather');
  const x = checkTensor(group, input, 'input', 'allGather');
  const { output } = checkOptions(options, 'allGather');
  const rows = x.ndim === 0 ? [1] : x.shape;
  const shape = [group.worldSize * rows[0], ...rows.slice(1)];
  const out =
    output === undefined
      ? empty(shape, { dtype: x.dtype, device: x.device })
      : checkOutput(output, shape, x, group, 'allGather');
  using flat = x.ndim === 0 ? x.reshape([1]) : null;
  try {
    await run(() => c10d.allGather(out, flat ?? x));
  } catch (error) {
    if (output === undefined) out.dispose();
    throw error;
  }
  return out;
}

/**
 * This rank's slice of the reduction (reduce_scatter_tensor): `input` of shape [worldSize * n, ...]
 * is reduced across ranks and rank r receives rows [r * n, (r + 1) * n). `options.output` takes a
 * preallocated [n, ...] result.
 */
export async function reduceScatter(input: Tensor, options: { op?: ReduceOp; output?: Tensor } = {}): Promise<Tensor> {
  const group = requireGroup('reduceScatter');
  const x = checkTensor(group, input, 'input', 'reduceScatter');
  const { op: opOption, output } = checkOptions(options, 'reduceScatter');
  const op = checkReduceOp(opOption ?? 'sum', x, 'reduceScatter');
  if (x.ndim === 0 || x.shape[0] % group.worldSize !== 0) {
    throw new RangeError(
      `reduceScatter: expected input's first dimension to be a multiple of the world size (${group.worldSize}) ` +
        `but received shape [${x.shape}]`,
    );
  }
  const shape = [x.shape[0] / group.worldSize, ...x.shape.slice(1)];
  const out =
    output === undefined
      ? empty(shape, { dtype: x.dtype, device: x.device })
      : checkOutput(output, shape, x, group, 'reduceScatter');
  try {
    await run(() => c10d.reduceScatter(out, x, op));
  } catch (error) {
    if (output === undefined) out.dispose();
    throw error;
  }
  return out;
}

/**
 * allGather's blocking form (torch.distributed's async_op=False): the calling thread, and with it
 * the event loop, waits until the result is there; for code that cannot await (a module's forward,
 * a backward). Prefer allGather elsewhere.
 */
export function allGatherSync(input: Tensor): Tensor {
  const group = requireGroup('allGatherSync');
  const x = checkTensor(group, input, 'input', 'allGatherSync');
  if (x.ndim === 0) throw invalidArgument('input', 'a tensor of at least one dimension', '0-d', 'allGatherSync');
  const out = empty([group.worldSize * x.shape[0]!, ...x.shape.slice(1)], { dtype: x.dtype, device: x.device });
  try {
    c10d.allGatherSync(out, x);
  } catch (error) {
    out.dispose();
    throw error;
  }
  return out;
}

/** reduceScatter's blocking form (see allGatherSync): this rank's slice of the reduction. */
export function reduceScatterSync(input: Tensor, options: { op?: ReduceOp } = {}): Tensor {
  const group = requireGroup('reduceScatterSync');
  const x = checkTensor(group, input, 'input', 'reduceScatterSync');
  const op = checkReduceOp(checkOptions(options, 'reduceScatterSync').op ?? 'sum', x, 'reduceScatterSync');
  if (x.ndim === 0 || x.shape[0]! % group.worldSize !== 0) {
    throw new RangeError(
      `reduceScatterSync: expected input's first dimension to be a multiple of the world size (${group.worldSize}) ` +
        `but received shape [${x.shape}]`,
    );
  }
  const out = empty([x.shape[0]! / group.worldSize, ...x.shape.slice(1)], { dtype: x.dtype, device: x.device });
  try {
    c10d.reduceScatterSync(out, x, op);
  } catch (error) {
    out.dispose();
    throw error;
  }
  return out;
}

/** In place: every rank's `tensor` becomes rank `src`'s. Resolves to `tensor`. */
export async function broadcast(tensor: Tensor, options: { src?: number } = {}): Promise<Tensor> {
  const group = requireGroup('broadcast');
  const t = checkTensor(group, tensor, 'tensor', 'broadcast');
  const src = checkOptions(options, 'broadcast').src ?? 0;
  if (!Number.isInteger(src) || (src as number) < 0 || (src as number) >= group.worldSize) {
    throw invalidArgument('options.src', `a rank in [0, ${group.worldSize - 1}]`, src, 'broadcast');
  }
  await run(() => c10d.broadcast(t, src as number));
  return t;
}

/** Settles once every rank has reached its barrier (after this rank's earlier collectives). */
export async function barrier(): Promise<void> {
  requireGroup('barrier');
  await run(() => c10d.barrier());
}
