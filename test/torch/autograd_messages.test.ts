// Every JS-side argument check of torch.autograd names its op (issue 17: "every op error names the
// op"); the messages are checked against the op's public name, not against the implementation.
import { afterEach, describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';

const x = () => torch.ones([2]).requiresGrad_(true);

describe('autograd argument errors name the op', () => {
  afterEach(() => torch.setGradEnabled(true));

  it.each([
    ['noGrad', () => torch.noGrad(5 as never), /^noGrad: expected a function for fn but received 5/],
    ['enableGrad', () => torch.enableGrad(null as never), /^enableGrad: expected a function for fn/],
    ['setGradEnabled', () => torch.setGradEnabled('no' as never), /^setGradEnabled: expected a boolean for enabled/],
    [
      'grad options',
      () => torch.autograd.grad(x(), x(), 5 as never),
      /^autograd\.grad: expected an object for options/,
    ],
    ['grad inputs', () => torch.autograd.grad(x(), [7 as never]), /^autograd\.grad: expected a Tensor for inputs\[0]/],
    [
      'grad gradOutputs',
      () => torch.autograd.grad(x(), x(), { gradOutputs: 1 as never }),
      /^autograd\.grad: .*gradOutputs/,
    ],
    [
      'backward tensors',
      () => torch.autograd.backward(undefined as never),
      /^autograd\.backward: expected an array of Tensors for tensors/,
    ],
    ['backward gradTensors', () => torch.autograd.backward([x()], 3 as never), /^autograd\.backward: .*gradTensors/],
    [
      'backward count',
      () => torch.autograd.backward([x()], [null, null]),
      /^autograd\.backward: 2 gradTensors given for 1 tensors/,
    ],
    [
      'functionWithBackward',
      () => torch.autograd.functionWithBackward([x()], 1 as never, () => []),
      /^autograd\.functionWithBackward: expected a function for forward/,
    ],
    ['checkpoint fn', () => torch.checkpoint(null as never, [x()]), /^checkpoint: expected a function for fn/],
    [
      'checkpoint inputs',
      () => torch.checkpoint((a: torch.Tensor) => a, 'x' as never),
      /^checkpoint: expected an array of Tensors/,
    ],
  ])('%s', (_name, call, message) => {
    expect(call).toThrow(message);
  });

  it('a disposed input is refused by name and op', () => {
    const t = x();
    t.dispose();
    expect(() => torch.autograd.grad(x().sum(), [t])).toThrow(/^autograd\.grad: inputs\[0]: the tensor was disposed/);
  });

  it('noGrad still runs a function and restores the mode', () => {
    expect(torch.noGrad(() => torch.isGradEnabled())).toBe(false);
    expect(torch.isGradEnabled()).toBe(true);
  });
});
