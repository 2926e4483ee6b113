// Argument checks at the API boundary (sharp's is.mjs idea): nothing unchecked reaches the addon,
// and messages read "Expected <what> for <name> but received <value>".

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'object') return `an object of type ${value.constructor?.name ?? 'Object'}`;
  if (typeof value === 'string') return `'${value}' of type string`;
  return `${String(value)} of type ${typeof value}`;
}

/** With `op`, the message starts with the op's name: "add: expected a Tensor for other but received ...". */
export function invalidArgument(name: string, expected: string, actual: unknown, op?: string): TypeError {
  const text = `xpected ${expected} for ${name} but received ${describe(actual)}`;
  return new TypeError(op === undefined ? `E${text}` : `${op}: e${text}`);
}

export function checkInteger(value: unknown, name: string, op?: string): number {
  if (!Number.isInteger(value)) throw invalidArgument(name, 'an integer', value, op);
  return value as number;
}

export function checkNumber(value: unknown, name: string, op?: string): number {
  if (typeof value !== 'number') throw invalidArgument(name, 'a number', value, op);
  return value;
}

export function checkBoolean(value: unknown, name: string, op?: string): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(name, 'a boolean', value, op);
  return value;
}

export function checkIntegers(value: unknown, name: string, op?: string): number[] {
  if (!Array.isArray(value) || !value.every(Number.isInteger))
    throw invalidArgument(name, 'an array of integers', value, op);
  return value as number[];
}

/** Accepts PyTorch's two spellings of a shape: f(2, 3) and f([2, 3]). */
export function shapeArgs(args: ReadonlyArray<number | readonly number[]>, name = 'shape', op?: string): number[] {
  const shape = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
  return checkIntegers(shape, name, op);
}

/** A dim or list of dims, as an array; undefined means every dim. */
export function dimsArg(dim: number | readonly number[] | undefined, name = 'dim', op?: string): number[] | null {
  if (dim === undefined) return null;
  return typeof dim === 'number' ? [checkInteger(dim, name, op)] : checkIntegers(dim, name, op);
}

const DEVICE = /^(cpu|cuda(:\d+)?)$/;

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export function checkDevice(device: unknown, name = 'device', op?: string): Device {
  if (typeof device !== 'string' || !DEVICE.test(device))
    throw invalidArgument(name, "'cpu', 'cuda' or 'cuda:N'", device, op);
  return device as Device;
}

/** A plain object ({...} or Object.create(null)): an options bag, not an array, a tensor or a look-alike. */
export function isPlainObject(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** An options argument: a plain object, or undefined for none (`f(x, 5)` names the op instead of reading 5.dtype). */
export function optionsArg<T extends object>(
  value: T | undefined,
  op: string,
  name = 'options',
): T | Record<string, never> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) throw invalidArgument(name, 'an object', value, op);
  return value;
}

/** A number or boolean: the scalar form of an operand that may also be a Tensor. */
export const isScalar = (value: unknown): value is number | boolean =>
  typeof value === 'number' || typeof value === 'boolean';

/**
 * Puts `op: ` in front of an error's message unless it already starts so: the JS twin of the
 * binding's guard(), for errors raised in JS or by a native op of another name (`float` calls `to`).
 */
export function namedError(error: unknown, op: string): unknown {
  if (!(error instanceof Error) || error.message.startsWith(`${op}:`)) return error;
  const old = error.message;
  error.message = `${op}: ${old}`;
  if (typeof error.stack === 'string') error.stack = error.stack.replace(old, error.message);
  return error;
}

/** `fn` with its errors named by `op` (namedError). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function namedOp<F extends (...args: any[]) => any>(op: string, fn: F): F {
  const named = function (this: unknown, ...args: unknown[]) {
    try {
      return fn.apply(this, args);
    } catch (error) {
      throw namedError(error, op);
    }
  };
  Object.defineProperty(named, 'name', { value: op });
  return named as F;
}

/** A copy of a namespace of functions, each naming itself in its errors (namedOp). */
export function namedOps<T extends object>(namespace: T): T {
  const entries = Object.entries(namespace).map(([name, value]) => [
    name,
    typeof value === 'function' ? namedOp(name, value as (...args: unknown[]) => unknown) : value,
  ]);
  return Object.freeze(Object.fromEntries(entries)) as T;
}
