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
