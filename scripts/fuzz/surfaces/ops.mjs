// Op arguments: every function of torch, torch.nn.functional and torch.autograd and every Tensor
// method, called with arguments of the wrong type, shape, dtype or device, disposed or forged
// tensors, and edge numbers. A clean error names the op. Sizes stay small or absurd (2^40 elements
// and up, refused at allocation): a middling size would be allocated and touched, and the machine's
// memory is shared.
import { torch } from '../../../dist/index.js';

const DTYPES = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int8', 'uint8', 'bool'];
const INTS = [-3, -2, -1, 0, 1, 2, 3, 4, 7, 64, 2 ** 40, 2 ** 62, 2 ** 31 - 1];
const NUMBERS = [...INTS, 0.5, 1.5, -0.25, Number.NaN, Number.POSITIVE_INFINITY, -1e308];
// Not ops, or not callable on hostile input without changing the worker for the cases after it.
const SKIP = new Set(['constructor', 'setNumThreads', 'tidy', 'keep', 'memory', 'manualSeed', 'setGradEnabled']);
const ASYNC = new Set(['loadSafetensors', 'saveSafetensors', 'readSafetensorsHeader']); // their own surface

function callables() {
  const out = [];
  const add = (prefix, space) => {
    for (const [name, value] of Object.entries(space)) {
      if (typeof value === 'function' && !SKIP.has(name) && !ASYNC.has(name) && name !== 'Tensor') {
        out.push({ name, label: `${prefix}${name}`, call: (args) => value(...args) });
      }
    }
  };
  add('torch.', torch);
  add('torch.nn.functional.', torch.nn.functional);
  add('torch.autograd.', torch.autograd);
  for (const name of Object.getOwnPropertyNames(torch.Tensor.prototype)) {
    const descriptor = Object.getOwnPropertyDescriptor(torch.Tensor.prototype, name);
    if (SKIP.has(name) || typeof descriptor.value !== 'function' || name === 'dispose') continue;
    out.push({ name, label: `Tensor.${name}`, method: true, call: (args, self) => self[name](...args) });
  }
  return out.sort((a, b) => a.label.localeCompare(b.label));
}
const OPS = callables();

function makeTensor(rng, made) {
  const dtype = rng.pick(DTYPES);
  const shape = Array.from({ length: rng.int(4) }, () => rng.pick([0, 1, 2, 3, 4]));
  const t = torch.ones(shape, { dtype });
  if (rng.chance(0.2) && (dtype === 'float32' || dtype === 'float64')) t.requiresGrad_(true);
  made.push(t);
  return t;
}

function hostileArg(rng, made, depth = 0) {
  switch (rng.int(depth > 0 ? 8 : 11)) {
    case 0:
    case 1:
    case 2:
      return makeTensor(rng, made);
    case 3:
      return rng.pick(INTS);
    case 4:
      return rng.pick(NUMBERS);
    case 5:
      return rng.pick([...DTYPES, 'cpu', 'cuda', 'cuda:7', 'float99', '', 'mean', 'none', 'tanh', 'trunc']);
    case 6:
      return rng.pick([null, undefined, true, false, {}, () => 1, Symbol('x'), 10n]);
    case 7:
      return Array.from({ length: rng.int(4) }, () => rng.pick(INTS));
    case 8: {
      const disposed = makeTensor(rng, []);
      disposed.dispose();
      return disposed;
    }
    case 9:
      return forge(
        rng.chance(0.5) ? Object.create(torch.Tensor.prototype) : { handle: 1, shape: [1], dtype: 'float32' },
      );
    default:
      if (rng.chance(0.5)) return Array.from({ length: rng.int(3) }, () => hostileArg(rng, made, depth + 1));
      return {
        [rng.pick(['dtype', 'device', 'dim', 'keepdim', 'reduction', 'bias'])]: hostileArg(rng, made, depth + 1),
      };
  }
}

const forged = new WeakSet();
const forge = (value) => {
  forged.add(value);
  return value;
};

function describe(value) {
  if (forged.has(value)) return 'forged';
  if (value instanceof torch.Tensor) {
    return value.isDisposed ? 'disposed' : `Tensor(${value.dtype}[${value.shape}]${value.requiresGrad ? ',grad' : ''})`;
  }
  if (Array.isArray(value)) return `[${value.map(describe).join(',')}]`;
  if (typeof value === 'function') return 'fn';
  if (typeof value === 'symbol' || typeof value === 'bigint') return String(value);
  if (value !== null && typeof value === 'object')
    return `{${Object.entries(value).map(([k, v]) => `${k}:${describe(v)}`)}}`;
  return String(value);
}

function disposeAll(value) {
  if (forged.has(value)) return;
  if (value instanceof torch.Tensor) value.dispose();
  else if (Array.isArray(value)) value.forEach(disposeAll);
}

export async function make(rng) {
  const op = rng.pick(OPS);
  const made = [];
  const self = op.method ? makeTensor(rng, made) : undefined;
  const args = Array.from({ length: rng.int(5) }, () => hostileArg(rng, made));
  const what = `${op.label}(${args.map(describe).join(', ')})${self ? ` on ${describe(self)}` : ''}`;
  return {
    what,
    names: op.label === 'torch.autograd.grad' ? ['grad'] : [op.name],
    run: async () => {
      let pending;
      try {
        torch.noGrad(() => undefined); // grad mode on, whatever a previous case left
        torch.tidy(() => {
          const result = op.call(args, self);
          if (result instanceof Promise) pending = result;
          else disposeAll(result);
        });
        if (pending) disposeAll(await pending);
      } finally {
        for (const t of made) if (!t.isDisposed) t.dispose();
      }
    },
  };
}
