// Every creation function's argument errors start with its name (issue #17 item 5; `npm run fuzz`
// found 110 of 3,000 op cases whose message named only the argument: "Expected an array of
// integers for shape ...", "Expected a Tensor for input ...").
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { DType } from '../../lib/torch/index.js';

// Calls that reach the creation functions with the wrong types, as user code could.
const loose = torch as unknown as Record<string, (...args: unknown[]) => unknown>;
const forged = Object.create(torch.Tensor.prototype);

const CASES: Array<[string, () => unknown, RegExp]> = [
  ['randn', () => loose.randn!('int64', forged, 'int32'), /^randn: expected an array of integers for shape/],
  ['zeros', () => torch.zeros([2], { dtype: 'float8' as DType }), /^zeros: expected one of .* for dtype/],
  ['ones', () => torch.ones([2], { device: 'tpu' as 'cpu' }), /^ones: expected 'cpu', 'cuda' or 'cuda:N' for device/],
  ['empty', () => loose.empty!([2], 3), /^empty: expected an object .* for options/],
  ['rand', () => loose.rand!([1.5]), /^rand: expected an array of integers for shape/],
  ['full', () => loose.full!(undefined, 1), /^full: expected an array of integers for shape/],
  ['linspace', () => loose.linspace!(0, 1, undefined), /^linspace: expected an integer for steps/],
  ['eye', () => loose.eye!(forged), /^eye: expected an integer for n/],
  ['randint', () => loose.randint!(3, torch.ones([4])), /^randint: expected an integer for high/],
  ['randint', () => loose.randint!(0, 3, [2.5]), /^randint: expected an array of integers for shape/],
  ['zerosLike', () => loose.zerosLike!(undefined), /^zerosLike: expected a Tensor for input/],
  ['onesLike', () => loose.onesLike!([1, 2]), /^onesLike: expected a Tensor for input/],
  ['randnLike', () => loose.randnLike!(forged), /^randnLike: expected a Tensor for input/],
  ['fullLike', () => loose.fullLike!(torch.ones([2]), 1, 'int64'), /^fullLike: expected an object .* for options/],
  ['randintLike', () => loose.randintLike!(torch.ones([2]), {}, 3), /^randintLike: expected an integer for low/],
  ['emptyLike', () => torch.emptyLike(torch.ones([2]), { dtype: 'int4' as DType }), /^emptyLike: expected one of/],
  ['frombuffer', () => loose.frombuffer!(undefined, { dtype: 'float32' }), /^frombuffer: expected an ArrayBuffer/],
  ['frombuffer', () => loose.frombuffer!(new Uint8Array(4)), /^frombuffer: expected an object .* for options/],
  ['frombuffer', () => torch.frombuffer(new Uint8Array(4), { dtype: 'x' as DType }), /^frombuffer: expected one of/],
  ['tensor', () => loose.tensor!([1, 'a']), /^tensor: expected a number or boolean for data\[1\]/],
  ['tensor', () => torch.tensor([1, 2], { device: 'gpu' as 'cpu' }), /^tensor: expected 'cpu'/],
  ['manualSeed', () => torch.manualSeed(1.5), /^manualSeed: expected an integer for seed/],
  ['setRngState', () => loose.setRngState!([1, 2]), /^setRngState: expected a Tensor for state/],
];

describe('creation functions name themselves in argument errors', () => {
  it.each(CASES)('%s', (_, call, pattern) => {
    const before = torch.memory().numTensors;
    expect(call).toThrow(pattern);
    expect(torch.memory().numTensors).toBeLessThanOrEqual(before + 1); // the case's own ones([..]) at most
  });

  it('valid calls still work as before', () => {
    expect(torch.zeros(2, 3, { dtype: 'int32' }).shape).toEqual([2, 3]);
    expect(torch.full([2], true).dtype).toBe('bool');
    expect(torch.arange(0, 5, 2).toArray()).toEqual([0, 2, 4]);
    expect(torch.randint(0, 3, [4]).dtype).toBe('int64');
    expect(torch.onesLike(torch.zeros([2]), { dtype: 'int64' }).toArray()).toEqual([1, 1]);
    expect(torch.frombuffer(new Float32Array([1, 2]), { dtype: 'float32' }).toArray()).toEqual([1, 2]);
  });
});

describe("torch's function spellings of Tensor methods refuse a non-tensor by name", () => {
  const NAMES = ['exp', 'log', 'tanh', 'mul', 'minimum', 'gather', 'cumsum', 'multinomial', 'softmax', 'pow'];
  it.each(NAMES)('%s', (name) => {
    // A look-alike from the prototype used to reach the method and fail on its private handle.
    expect(() => loose[name]!(forged, 1)).toThrow(new RegExp(`^${name}: expected a Tensor for input but received`));
    expect(() => loose[name]!(undefined, 1)).toThrow(new RegExp(`^${name}: expected a Tensor for input`));
  });

  it('allclose names its first argument, and real tensors still work', () => {
    expect(() => loose.allclose!({}, torch.ones([1]))).toThrow(/^allclose: expected a Tensor for a/);
    expect(torch.exp(torch.zeros([2])).toArray()).toEqual([1, 1]);
    expect(torch.pow(2, torch.tensor([3])).toArray()).toEqual([8]);
  });
});
