// Gradients of every differentiable op family, checked against central differences in float64
// (see gradcheck.ts), and the autograd API's behaviour: flags, accumulation, retain_graph,
// grad modes, torch.autograd.grad with create_graph and allow_unused.
import { describe, it, expect } from 'vitest';
import { torch } from '../../lib/index.js';
import { assertGradcheck, gradcheck, input } from './gradcheck.js';

type Tensor = torch.Tensor;
const F = torch.nn.functional;

const f64 = (data: torch.NestedArray, requiresGrad = false): Tensor =>
  torch.tensor(data, { dtype: 'float64', requiresGrad });
const long = (data: torch.NestedArray): Tensor => torch.tensor(data, { dtype: 'int64' });

/** One test: the gradient of fn at the inputs made by `make` matches central differences. */
function check(name: string, fn: (...xs: Tensor[]) => Tensor, make: () => Tensor[], wrt?: number[]): void {
  it(name, () => {
    torch.tidy(() => {
      const maxAbsError = assertGradcheck(fn, make(), wrt ? { wrt } : {});
      expect(maxAbsError).toBeLessThan(1e-5);
    });
  });
}

describe('gradcheck helper', () => {
  it('passes a correct gradient and reports its error', () => {
    torch.tidy(() => {
      const result = gradcheck((x) => x.mul(x).sin(), [input([3, 2])]);
      expect(result.ok).toBe(true);
      expect(result.checked).toBe(6);
      expect(result.maxAbsError).toBeLessThan(1e-7);
    });
  });

  it('catches a wrong gradient', () => {
    torch.tidy(() => {
      // x.detach() inside fn hides half of d(x*x)/dx from autograd.
      const result = gradcheck((x) => x.mul(x.detach()), [input([4])]);
      expect(result.ok).toBe(false);
      expect(result.failures.length).toBeGreaterThan(0);
      expect(result.maxAbsError).toBeGreaterThan(0.01);
    });
  });

  it('frees every tensor it makes', () => {
    torch.tidy(() => {
      const x = input([2, 3]);
      const before = torch.memory().numTensors;
      gradcheck((a) => a.exp().sum(1), [x]);
      expect(torch.memory().numTensors).toBe(before);
    });
  });
});

describe('arithmetic with broadcasting', () => {
  check(
    'add [2,3] + [3]',
    (a, b) => a.add(b),
    () => [input([2, 3]), input([3])],
  );
  check(
    'add [2,1] + [1,3]',
    (a, b) => a.add(b),
    () => [input([2, 1]), input([1, 3])],
  );
  check(
    'add with alpha',
    (a, b) => a.add(b, 2.5),
    () => [input([2, 3]), input([2, 3])],
  );
  check(
    'sub [2,3] - [2,1]',
    (a, b) => a.sub(b),
    () => [input([2, 3]), input([2, 1])],
  );
  check(
    'sub with alpha',
    (a, b) => a.sub(b, -0.5),
    () => [input([3]), input([2, 3])],
  );
  check(
    'mul [4,1,3] * [2,1]',
    (a, b) => a.mul(b),
    () => [input([4, 1, 3]), input([2, 1])],
  );
  check(
    'div [2,3] / [3]',
    (a, b) => a.div(b),
    () => [input([2, 3]), input([3], { awayFromZero: 0.5 })],
  );
  check(
    'pow tensor ** tensor',
    (a, b) => a.pow(b),
    () => [input([2, 3], { min: 0.5, max: 2 }), input([3], { min: -2, max: 3 })],
  );
  check(
    'scalar add / sub / mul / div',
    (a) => a.add(1.5).sub(0.25).mul(3).div(-2),
    () => [input([2, 3])],
  );
  check(
    'integer-valued scalars',
    (a) => a.add(2).mul(3).sub(1).div(4),
    () => [input([5])],
  );
  check(
    'pow scalar integer exponent',
    (a) => a.pow(3),
    () => [input([2, 3])],
  );
  check(
    'pow scalar fractional exponent',
    (a) => a.pow(2.5),
    () => [input([2, 3], { min: 0.5, max: 2 })],
  );
  check(
    'torch.pow(scalar, tensor)',
    (a) => torch.pow(2, a),
    () => [input([2, 3])],
  );
  check(
    'torch.add / sub / mul / div functions',
    (a, b) => torch.div(torch.mul(torch.sub(torch.add(a, b), b), a), b.add(2)),
    () => [input([2, 3]), input([3])],
  );
  check(
    'rsub',
    (a) => a.rsub(2),
    () => [input([3])],
  );
  check(
    'neg',
    (a) => a.neg(),
    () => [input([3])],
  );
  check(
    'maximum / minimum (no ties)',
    (a, b) => a.maximum(b).add(a.minimum(b).mul(3)),
    () => [input([2, 3]), input([2, 3], { seed: 99 })],
  );
  check(
    'atan2',
    (a, b) => a.atan2(b),
    () => [input([2, 3]), input([2, 3], { awayFromZero: 0.5 })],
  );
  check(
    'lerp',
    (a, b) => a.lerp(b, 0.3),
    () => [input([2, 3]), input([2, 3])],
  );
  check(
    'addcmul',
    (a, b, c) => a.addcmul(b, c, 0.5),
    () => [input([2, 3]), input([3]), input([2, 1])],
  );
  check(
    'addcdiv',
    (a, b, c) => a.addcdiv(b, c, 2),
    () => [input([2, 3]), input([2, 3]), input([2, 3], { awayFromZero: 0.5 })],
  );
});

describe('unary math', () => {
  check(
    'exp',
    (x) => x.exp(),
    () => [input([2, 3])],
  );
  check(
    'log',
    (x) => x.log(),
    () => [input([2, 3], { min: 0.2, max: 3 })],
  );
  check(
    'log2',
    (x) => x.log2(),
    () => [input([2, 3], { min: 0.2, max: 3 })],
  );
  check(
    'sqrt',
    (x) => x.sqrt(),
    () => [input([2, 3], { min: 0.2, max: 3 })],
  );
  check(
    'rsqrt',
    (x) => x.rsqrt(),
    () => [input([2, 3], { min: 0.2, max: 3 })],
  );
  check(
    'tanh',
    (x) => x.tanh(),
    () => [input([2, 3], { min: -2, max: 2 })],
  );
  check(
    'sigmoid',
    (x) => x.sigmoid(),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'sin',
    (x) => x.sin(),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'cos',
    (x) => x.cos(),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'abs away from 0',
    (x) => x.abs(),
    () => [input([2, 3], { awayFromZero: 0.1 })],
  );
  check(
    'reciprocal',
    (x) => x.reciprocal(),
    () => [input([2, 3], { awayFromZero: 0.5 })],
  );
  check(
    'log1p',
    (x) => x.log1p(),
    () => [input([2, 3], { min: -0.5, max: 2 })],
  );
  check(
    'expm1',
    (x) => x.expm1(),
    () => [input([2, 3])],
  );
  check(
    'erf',
    (x) => x.erf(),
    () => [input([2, 3], { min: -2, max: 2 })],
  );
  check(
    'square',
    (x) => x.square(),
    () => [input([2, 3])],
  );
  check(
    'silu',
    (x) => x.silu(),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'F.silu',
    (x) => F.silu(x),
    () => [input([4])],
  );
  check(
    'relu away from 0',
    (x) => x.relu(),
    () => [input([2, 3], { awayFromZero: 0.1 })],
  );
  check(
    'F.relu away from 0',
    (x) => F.relu(x),
    () => [input([4], { awayFromZero: 0.1 })],
  );
  check(
    'gelu exact',
    (x) => F.gelu(x),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'gelu tanh approximation',
    (x) => F.gelu(x, { approximate: 'tanh' }),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'softplus',
    (x) => F.softplus(x),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'softplus beta 2',
    (x) => F.softplus(x, { beta: 2, threshold: 10 }),
    () => [input([2, 3], { min: -3, max: 3 })],
  );
  check(
    'logsigmoid',
    (x) => F.logsigmoid(x),
    () => [input([2, 3], { min: -4, max: 4 })],
  );
  check(
    'F.sigmoid / F.tanh',
    (x) => F.sigmoid(x).mul(F.tanh(x)),
    () => [input([2, 3])],
  );
  check(
    'torch.exp / log / sqrt / abs / tanh / sigmoid functions',
    (x) => torch.exp(x).add(torch.log(x)).add(torch.sqrt(x)).add(torch.abs(x)).add(torch.tanh(x)).add(torch.sigmoid(x)),
    () => [input([2, 3], { min: 0.3, max: 2 })],
  );
});

describe('where / maskedFill / clamp', () => {
  const mask = (): Tensor =>
    torch.tensor([
      [true, false, true],
      [false, false, true],
    ]);
  check(
    'torch.where(cond, a, b)',
    (a, b, m) => torch.where(m!, a, b),
    () => [input([2, 3]), input([2, 3]), mask()],
  );
  check(
    'torch.where with broadcasting',
    (a, b, m) => torch.where(m!, a, b),
    () => [input([2, 1]), input([3]), mask()],
  );
  check(
    'torch.where with a scalar',
    (a, m) => torch.where(m!, a, 0.5),
    () => [input([2, 3]), mask()],
  );
  check(
    'tensor.where(cond, other)',
    (a, b, m) => a.where(m!, b),
    () => [input([2, 3]), input([2, 3]), mask()],
  );
  check(
    'maskedFill',
    (a, m) => a.maskedFill(m!, -2),
    () => [input([2, 3]), mask()],
  );
  check(
    'maskedFill with broadcast mask',
    (a, m) => a.maskedFill(m!, 0),
    () => [input([4, 2, 3]), mask()],
  );
  const awayFromBounds = (): Tensor =>
    f64([
      [-1.2, -0.8, -0.3, 0.1],
      [0.35, 0.7, 1.1, -0.05],
    ]);
  check(
    'clamp(min, max) away from the bounds',
    (x) => x.clamp(-0.5, 0.5),
    () => [awayFromBounds()],
  );
  check(
    'clamp(min)',
    (x) => x.clamp(-0.5),
    () => [awayFromBounds()],
  );
  check(
    'clamp(null, max)',
    (x) => x.clamp(null, 0.5),
    () => [awayFromBounds()],
  );
  check(
    'torch.clamp',
    (x) => torch.clamp(x, -0.5, 0.5),
    () => [awayFromBounds()],
  );
});

describe('products', () => {
  check(
    'matmul matrix @ matrix',
    (a, b) => a.matmul(b),
    () => [input([3, 4]), input([4, 2])],
  );
  check(
    'matmul vector @ matrix',
    (a, b) => a.matmul(b),
    () => [input([4]), input([4, 2])],
  );
  check(
    'matmul matrix @ vector',
    (a, b) => a.matmul(b),
    () => [input([3, 4]), input([4])],
  );
  check(
    'matmul batched with broadcasting',
    (a, b) => torch.matmul(a, b),
    () => [input([2, 3, 4]), input([4, 2])],
  );
  check(
    'matmul batch broadcasting on both sides',
    (a, b) => a.matmul(b),
    () => [input([2, 1, 2, 3]), input([3, 3, 2])],
  );
  check(
    'mm',
    (a, b) => torch.mm(a, b),
    () => [input([3, 4]), input([4, 2])],
  );
  check(
    'bmm',
    (a, b) => torch.bmm(a, b),
    () => [input([2, 3, 4]), input([2, 4, 2])],
  );
  check(
    'linear with bias',
    (x, w, b) => F.linear(x, w, b),
    () => [input([2, 3, 4]), input([5, 4]), input([5])],
  );
  check(
    'linear without bias',
    (x, w) => F.linear(x, w),
    () => [input([3, 4]), input([2, 4])],
  );
  check(
    'addmm with beta and alpha',
    (c, a, b) => F.addmm(c, a, b, { beta: 0.5, alpha: 2 }),
    () => [input([3, 2]), input([3, 4]), input([4, 2])],
  );
  check(
    'addmm broadcasting input',
    (c, a, b) => F.addmm(c, a, b),
    () => [input([2]), input([3, 4]), input([4, 2])],
  );
  check(
    'baddbmm',
    (c, a, b) => F.baddbmm(c, a, b, { beta: -1, alpha: 0.5 }),
    () => [input([2, 3, 2]), input([2, 3, 4]), input([2, 4, 2])],
  );
});

describe('convolutions', () => {
  check(
    'conv2d stride 2, padding 1, with bias',
    (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1 }),
    () => [input([1, 2, 5, 5]), input([3, 2, 3, 3]), input([3])],
  );
  check(
    'conv2d groups 2, no bias',
    (x, w) => F.conv2d(x, w, null, { groups: 2 }),
    () => [input([2, 4, 4, 4]), input([4, 2, 3, 3])],
  );
  check(
    'conv2d rectangular stride / padding / dilation',
    (x, w, b) => F.conv2d(x, w, b, { stride: [1, 2], padding: [2, 1], dilation: [2, 1] }),
    () => [input([1, 1, 5, 6]), input([2, 1, 2, 3]), input([2])],
  );
  check(
    'conv3d with bias',
    (x, w, b) => F.conv3d(x, w, b, { stride: 1, padding: [0, 1, 1] }),
    () => [input([1, 2, 3, 3, 3]), input([2, 2, 2, 2, 2]), input([2])],
  );
  check(
    'conv3d stride 2 groups 2',
    (x, w) => F.conv3d(x, w, null, { stride: 2, groups: 2 }),
    () => [input([1, 2, 4, 4, 4]), input([2, 1, 2, 2, 2])],
  );
});

describe('reductions', () => {
  check(
    'sum over everything',
    (x) => x.sum(),
    () => [input([2, 3, 4])],
  );
  check(
    'sum(dim)',
    (x) => x.sum(1),
    () => [input([2, 3, 4])],
  );
  check(
    'sum([0, 2], keepdim)',
    (x) => x.sum([0, 2], true),
    () => [input([2, 3, 4])],
  );
  check(
    'sum(-1) with the dtype option',
    (x) => x.sum(-1, false, { dtype: 'float64' }),
    () => [input([3, 4])],
  );
  check(
    'mean over everything',
    (x) => x.mean(),
    () => [input([2, 3, 4])],
  );
  check(
    'mean(dim, keepdim)',
    (x) => x.mean(-1, true),
    () => [input([2, 3, 4])],
  );
  check(
    'mean([0, 1])',
    (x) => x.mean([0, 1]),
    () => [input([2, 3, 4])],
  );
  check(
    'amax(dim)',
    (x) => x.amax(1),
    () => [input([3, 4])],
  );
  check(
    'amax([0, 2], keepdim)',
    (x) => x.amax([0, 2], true),
    () => [input([2, 3, 4])],
  );
  check(
    'amin(dim)',
    (x) => x.amin(0),
    () => [input([3, 4])],
  );
  check(
    'max(dim) values',
    (x) => x.max(1)[0],
    () => [input([3, 4])],
  );
  check(
    'max(dim, keepdim) values',
    (x) => x.max(0, true)[0],
    () => [input([3, 4])],
  );
  check(
    'max() over everything',
    (x) => x.max(),
    () => [input([3, 4])],
  );
  check(
    'min(dim) values',
    (x) => x.min(-1)[0],
    () => [input([3, 4])],
  );
  check(
    'logsumexp(dim)',
    (x) => x.logsumexp(1),
    () => [input([3, 4], { min: -3, max: 3 })],
  );
  check(
    'logsumexp([0, 1], keepdim)',
    (x) => torch.logsumexp(x, [0, 1], true),
    () => [input([3, 4, 2])],
  );
  check(
    'var(dim) with Bessel correction',
    (x) => x.var(1),
    () => [input([3, 5])],
  );
  check(
    'var over everything, correction 0',
    (x) => x.var(undefined, { correction: 0 }),
    () => [input([3, 5])],
  );
  check(
    'std(dim, keepdim)',
    (x) => x.std(0, { keepdim: true }),
    () => [input([4, 3])],
  );
  check(
    'std correction 0',
    (x) => x.std(-1, { correction: 0 }),
    () => [input([3, 5])],
  );
  check(
    'norm p=2 over everything',
    (x) => x.norm(),
    () => [input([3, 4])],
  );
  check(
    'norm p=2 over a dim',
    (x) => x.norm(2, 1, true),
    () => [input([3, 4])],
  );
  check(
    'norm p=1 away from 0',
    (x) => x.norm(1, 0),
    () => [input([3, 4], { awayFromZero: 0.2 })],
  );
  check(
    'prod over everything',
    (x) => x.prod(),
    () => [input([2, 3], { awayFromZero: 0.5, max: 1.5 })],
  );
  check(
    'prod(dim)',
    (x) => x.prod(1),
    () => [input([3, 4], { awayFromZero: 0.5, max: 1.5 })],
  );
  check(
    'cumsum',
    (x) => x.cumsum(1),
    () => [input([3, 4])],
  );
  check(
    'torch.cumsum dim 0',
    (x) => torch.cumsum(x, 0),
    () => [input([3, 4])],
  );
  check(
    'cumprod',
    (x) => x.cumprod(1),
    () => [input([3, 4], { awayFromZero: 0.5, max: 1.5 })],
  );
});

describe('softmax family', () => {
  check(
    'softmax(-1)',
    (x) => x.softmax(-1),
    () => [input([3, 4], { min: -3, max: 3 })],
  );
  check(
    'softmax(0)',
    (x) => torch.softmax(x, 0),
    () => [input([3, 4], { min: -3, max: 3 })],
  );
  check(
    'F.softmax(1) 3-d',
    (x) => F.softmax(x, 1),
    () => [input([2, 3, 4])],
  );
  check(
    'logSoftmax(-1)',
    (x) => x.logSoftmax(-1),
    () => [input([3, 4], { min: -3, max: 3 })],
  );
  check(
    'F.logSoftmax(0)',
    (x) => F.logSoftmax(x, 0),
    () => [input([3, 4])],
  );
  check(
    'torch.logSoftmax(1)',
    (x) => torch.logSoftmax(x, 1),
    () => [input([2, 3, 4])],
  );
});

describe('indexing', () => {
  check(
    'gather(1)',
    (x, i) => x.gather(1, i!),
    () => [
      input([3, 4]),
      long([
        [0, 3, 3],
        [1, 1, 0],
        [2, 0, 1],
      ]),
    ],
  );
  check(
    'torch.gather(0)',
    (x, i) => torch.gather(x, 0, i!),
    () => [
      input([3, 4]),
      long([
        [0, 2, 1, 2],
        [2, 2, 0, 1],
      ]),
    ],
  );
  const uniqueIndex = (): Tensor =>
    long([
      [0, 1, 2, 0],
      [2, 0, 1, 1],
    ]);
  check(
    'scatter(0, index, src) wrt self and src',
    (x, s, i) => x.scatter(0, i!, s!),
    () => [input([3, 4]), input([2, 4]), uniqueIndex()],
  );
  check(
    'scatter(0, index, value) wrt self',
    (x, i) => x.scatter(0, i!, 1.5),
    () => [input([3, 4]), uniqueIndex()],
  );
  check(
    'scatterAdd with duplicate indices',
    (x, s, i) => x.scatterAdd(1, i!, s!),
    () => [
      input([2, 4]),
      input([2, 3]),
      long([
        [0, 0, 3],
        [1, 2, 1],
      ]),
    ],
  );
  check(
    'indexSelect with repeats',
    (x, i) => x.indexSelect(0, i!),
    () => [input([4, 3]), long([2, 0, 2, 3])],
  );
  check(
    'torch.indexSelect dim 1',
    (x, i) => torch.indexSelect(x, 1, i!),
    () => [input([4, 3]), long([2, 2, 1])],
  );
  check(
    'indexAdd',
    (x, s, i) => x.indexAdd(0, i!, s!),
    () => [input([4, 3]), input([3, 3]), long([0, 2, 0])],
  );
  check(
    'index [idx]',
    (x, i) => x.index([i!]),
    () => [input([4, 3]), long([3, 0, 3])],
  );
  check(
    'index [null, idx]',
    (x, i) => x.index([null, i!]),
    () => [
      input([4, 3]),
      long([
        [2, 0],
        [1, 1],
      ]),
    ],
  );
  check(
    'index [idx0, idx1]',
    (x, i, j) => x.index([i!, j!]),
    () => [input([4, 3]), long([0, 3, 3, 1]), long([2, 1, 1, 0])],
  );
  check(
    'index with a boolean mask',
    (x, m) => x.index([m!]),
    () => [input([4, 3]), torch.tensor([true, false, true, true])],
  );
  check(
    'maskedSelect',
    (x, m) => x.maskedSelect(m!),
    () => [
      input([2, 3]),
      torch.tensor([
        [true, false, true],
        [false, true, true],
      ]),
    ],
  );
  check(
    'narrow',
    (x) => x.narrow(1, 1, 2),
    () => [input([3, 4])],
  );
  check(
    'slice with step',
    (x) => x.slice(1, 0, null, 2),
    () => [input([3, 5])],
  );
  check(
    'slice with bounds',
    (x) => x.slice(0, 1, 3),
    () => [input([4, 2])],
  );
  check(
    'slice with negative start',
    (x) => x.slice(-1, -2),
    () => [input([3, 4])],
  );
  check(
    'select(0, -1)',
    (x) => x.select(0, -1),
    () => [input([3, 4])],
  );
  check(
    'select(1, 2)',
    (x) => x.select(1, 2),
    () => [input([3, 4])],
  );
});

describe('joining and splitting', () => {
  check(
    'cat along dim 1',
    (a, b, c) => torch.cat([a, b, c], 1),
    () => [input([2, 3]), input([2, 1]), input([2, 2])],
  );
  check(
    'cat along dim 0',
    (a, b) => torch.cat([a, b]),
    () => [input([2, 3]), input([1, 3])],
  );
  check(
    'stack along dim 0',
    (a, b) => torch.stack([a, b]),
    () => [input([2, 3]), input([2, 3])],
  );
  check(
    'stack along dim -1',
    (a, b, c) => torch.stack([a, b, c], -1),
    () => [input([2, 3]), input([2, 3]), input([2, 3])],
  );
  check(
    'split by size (pieces reordered)',
    (x) => torch.cat(x.split(2, 1).reverse(), 1),
    () => [input([2, 5])],
  );
  check(
    'split by sizes (pieces used differently)',
    (x) => {
      const [a, b, c] = torch.split(x, [1, 2, 1], 0);
      return torch.cat([c!.mul(3), a!.exp(), b!.square()], 0);
    },
    () => [input([4, 3])],
  );
  check(
    'chunk',
    (x) => {
      const [a, b, c] = x.chunk(3, 1);
      return a!.mul(b!).add(c!.sin());
    },
    () => [input([2, 6])],
  );
  check(
    'torch.chunk uneven (only some pieces used)',
    (x) => torch.chunk(x, 2, 0)[1]!,
    () => [input([5, 2])],
  );
  check(
    'unbind',
    (x) => {
      const [a, b] = x.unbind(1);
      return a!.mul(b!);
    },
    () => [input([3, 2])],
  );
  check(
    'torch.unbind',
    (x) => torch.stack(torch.unbind(x, 0).reverse()),
    () => [input([3, 2])],
  );
});

describe('views and layout', () => {
  check(
    'view',
    (x) => x.view(6, 4),
    () => [input([2, 3, 4])],
  );
  check(
    'view(-1)',
    (x) => x.view(-1).mul(f64([...Array(24).keys()])),
    () => [input([2, 3, 4])],
  );
  check(
    'reshape of a transposed tensor',
    (x) => x.transpose(0, 1).reshape([3, 8]),
    () => [input([2, 3, 4])],
  );
  check(
    'permute',
    (x) => x.permute(2, 0, 1),
    () => [input([2, 3, 4])],
  );
  check(
    'transpose',
    (x) => x.transpose(0, 2),
    () => [input([2, 3, 4])],
  );
  check(
    't',
    (x) => x.t(),
    () => [input([2, 3])],
  );
  check(
    'contiguous of a permuted tensor',
    (x) => x.permute([1, 0]).contiguous(),
    () => [input([2, 3])],
  );
  check(
    'expand',
    (x) => x.expand(2, 3, 4),
    () => [input([3, 1])],
  );
  check(
    'expand with -1',
    (x) => x.expand([4, -1]),
    () => [input([1, 3])],
  );
  check(
    'expandAs',
    (x, y) => x.expandAs(y!).mul(y!),
    () => [input([3, 1]), input([2, 3, 4])],
  );
  check(
    'repeat',
    (x) => x.repeat(2, 1, 3),
    () => [input([2, 3])],
  );
  check(
    'repeatInterleave',
    (x) => x.repeatInterleave(2, 1),
    () => [input([2, 3])],
  );
  check(
    'flatten(1)',
    (x) => x.flatten(1),
    () => [input([2, 3, 4])],
  );
  check(
    'flatten()',
    (x) => x.flatten(),
    () => [input([2, 3])],
  );
  check(
    'unflatten',
    (x) => x.unflatten(1, [2, 3]),
    () => [input([2, 6])],
  );
  check(
    'squeeze()',
    (x) => x.squeeze(),
    () => [input([2, 1, 3, 1])],
  );
  check(
    'squeeze(dim)',
    (x) => x.squeeze(1),
    () => [input([2, 1, 3])],
  );
  check(
    'unsqueeze(0) and unsqueeze(-1)',
    (x) => x.unsqueeze(0).unsqueeze(-1),
    () => [input([2, 3])],
  );
  check(
    'flip',
    (x) => x.flip([0, 2]),
    () => [input([2, 3, 4])],
  );
  check(
    'flip(1)',
    (x) => x.flip(1),
    () => [input([2, 3])],
  );
  check(
    'roll',
    (x) => x.roll(1, 1),
    () => [input([2, 3])],
  );
  check(
    'movedim',
    (x) => x.movedim(0, -1),
    () => [input([2, 3, 4])],
  );
  check(
    'triu',
    (x) => x.triu(),
    () => [input([4, 4])],
  );
  check(
    'triu(1) batched',
    (x) => torch.triu(x, 1),
    () => [input([2, 3, 4])],
  );
  check(
    'tril',
    (x) => x.tril(),
    () => [input([4, 4])],
  );
  check(
    'tril(-1) rectangular',
    (x) => torch.tril(x, -1),
    () => [input([3, 5])],
  );
});

describe('nn.functional', () => {
  check(
    'embedding wrt weight (repeated ids)',
    (ids, w) => F.embedding(ids!, w!),
    () => [
      long([
        [0, 2, 2],
        [4, 1, 0],
      ]),
      input([5, 3]),
    ],
  );
  it('embedding gives the paddingIdx row no gradient', () => {
    torch.tidy(() => {
      const w = input([4, 3]).requiresGrad_();
      F.embedding(long([1, 2, 1, 3]), w, { paddingIdx: 1 })
        .sum()
        .backward();
      expect(w.grad!.toArray()).toEqual([
        [0, 0, 0],
        [0, 0, 0],
        [1, 1, 1],
        [1, 1, 1],
      ]);
    });
  });
  check(
    'layerNorm with weight and bias',
    (x, w, b) => F.layerNorm(x, [4], w, b),
    () => [input([2, 3, 4]), input([4]), input([4])],
  );
  check(
    'layerNorm over two dims, no affine',
    (x) => F.layerNorm(x, [3, 4]),
    () => [input([2, 3, 4])],
  );
  check(
    'layerNorm with weight only and custom eps',
    (x, w) => F.layerNorm(x, [3], w, null, 1e-3),
    () => [input([4, 3]), input([3])],
  );
  check(
    'crossEntropy mean',
    (x, t) => F.crossEntropy(x, t!),
    () => [input([4, 5], { min: -2, max: 2 }), long([1, 0, 4, 2])],
  );
  check(
    'crossEntropy default ignoreIndex -100',
    (x, t) => F.crossEntropy(x, t!),
    () => [input([4, 5]), long([1, -100, 4, 2])],
  );
  check(
    'crossEntropy ignoreIndex 2',
    (x, t) => F.crossEntropy(x, t!, { ignoreIndex: 2 }),
    () => [input([4, 5]), long([1, 2, 4, 2])],
  );
  check(
    'crossEntropy labelSmoothing',
    (x, t) => F.crossEntropy(x, t!, { labelSmoothing: 0.1 }),
    () => [input([4, 5]), long([1, 0, 4, 2])],
  );
  check(
    'crossEntropy ignoreIndex and labelSmoothing',
    (x, t) => F.crossEntropy(x, t!, { ignoreIndex: 3, labelSmoothing: 0.2 }),
    () => [input([4, 5]), long([1, 3, 4, 2])],
  );
  check(
    'crossEntropy reduction sum',
    (x, t) => F.crossEntropy(x, t!, { reduction: 'sum' }),
    () => [input([3, 4]), long([3, 0, 1])],
  );
  check(
    'crossEntropy reduction none',
    (x, t) => F.crossEntropy(x, t!, { reduction: 'none' }),
    () => [input([3, 4]), long([3, 0, 1])],
  );
  check(
    'crossEntropy with class weights',
    (x, t, w) => F.crossEntropy(x, t!, { weight: w! }),
    () => [input([4, 3]), long([0, 2, 2, 1]), f64([0.2, 1, 3])],
    [0],
  );
  check(
    'crossEntropy over [N, C, d]',
    (x, t) => F.crossEntropy(x, t!),
    () => [
      input([2, 4, 3]),
      long([
        [0, 3, 1],
        [2, 2, 0],
      ]),
    ],
  );
  check(
    'nllLoss of logSoftmax',
    (x, t) => F.nllLoss(x.logSoftmax(1), t!),
    () => [input([4, 5]), long([1, 0, 4, 2])],
  );
  check(
    'mseLoss mean, wrt input and target',
    (a, b) => F.mseLoss(a, b),
    () => [input([2, 3]), input([2, 3])],
  );
  check(
    'mseLoss sum',
    (a, b) => F.mseLoss(a, b, { reduction: 'sum' }),
    () => [input([4]), input([4])],
  );
  check(
    'mseLoss none',
    (a, b) => F.mseLoss(a, b, { reduction: 'none' }),
    () => [input([2, 3]), input([2, 3])],
  );
  check(
    'dropout with p = 0 is the identity',
    (x) => F.dropout(x, 0),
    () => [input([2, 3])],
  );
  check(
    'dropout in eval mode is the identity',
    (x) => F.dropout(x, 0.5, false),
    () => [input([2, 3])],
  );
});

describe('scaledDotProductAttention', () => {
  const qkv = (l = 3, s = 5): Tensor[] => [input([2, l, 4]), input([2, s, 4]), input([2, s, 3])];
  check(
    'plain',
    (q, k, v) => F.scaledDotProductAttention(q, k!, v!),
    () => qkv(),
  );
  check(
    'causal',
    (q, k, v) => F.scaledDotProductAttention(q, k!, v!, { isCausal: true }),
    () => qkv(4, 4),
  );
  check(
    'boolean mask',
    (q, k, v, m) => F.scaledDotProductAttention(q, k!, v!, { attnMask: m! }),
    () => [
      ...qkv(),
      torch.tensor([
        [true, false, true, true, false],
        [false, true, false, false, false],
        [true, true, true, true, true],
      ]),
    ],
  );
  check(
    'float mask (gradient wrt the mask too)',
    (q, k, v, m) => F.scaledDotProductAttention(q, k!, v!, { attnMask: m! }),
    () => [...qkv(), input([3, 5], { min: -2, max: 0 })],
  );
  check(
    'explicit scale',
    (q, k, v) => F.scaledDotProductAttention(q, k!, v!, { scale: 0.3 }),
    () => qkv(),
  );
  check(
    'multi-head 4-d inputs',
    (q, k, v) => F.scaledDotProductAttention(q, k!, v!),
    () => [input([1, 2, 3, 2]), input([1, 2, 3, 2]), input([1, 2, 3, 2])],
  );
});

describe('gradients of gradients', () => {
  // fn returns a first derivative built with createGraph; gradcheck differentiates it again.
  check(
    'd/dx of d/dx sum(sin(x) * x^2)',
    (x) => torch.autograd.grad(x.sin().mul(x.square()).sum(), x, { createGraph: true })[0]!,
    () => [input([4])],
  );
  check(
    'd/dx of d/dx logsumexp',
    (x) => torch.autograd.grad(x.logsumexp(1).sum(), x, { createGraph: true })[0]!,
    () => [input([2, 3])],
  );
  check(
    'second derivative of tanh-MLP wrt the weight',
    (x, w) => {
      const y = F.linear(x, w!).tanh().sum();
      return torch.autograd.grad(y, w!, { createGraph: true })[0]!;
    },
    () => [input([3, 2]), input([2, 2])],
  );
});

describe('autograd API', () => {
  it('requiresGrad flags and isLeaf', () => {
    torch.tidy(() => {
      const a = torch.ones(2, 2);
      expect(a.requiresGrad).toBe(false);
      expect(a.isLeaf).toBe(true);
      expect(a.gradFn).toBeNull();
      const x = torch.ones([2, 2], { requiresGrad: true });
      expect(x.requiresGrad).toBe(true);
      expect(x.isLeaf).toBe(true);
      expect(x.gradFn).toBeNull();
      const y = x.mul(2);
      expect(y.requiresGrad).toBe(true);
      expect(y.isLeaf).toBe(false);
      expect(typeof y.gradFn).toBe('string');
      expect(y.gradFn).toMatch(/Mul/);
      const z = a.add(1);
      expect(z.requiresGrad).toBe(false);
      expect(z.isLeaf).toBe(true);
      // The setter and requiresGrad_() both switch the flag, the latter returning this.
      a.requiresGrad = true;
      expect(a.requiresGrad).toBe(true);
      const b = torch.zeros(3);
      expect(b.requiresGrad_()).toBe(b);
      expect(b.requiresGrad).toBe(true);
      b.requiresGrad_(false);
      expect(b.requiresGrad).toBe(false);
      // detach() leaves the graph.
      const d = y.detach();
      expect(d.requiresGrad).toBe(false);
      expect(d.isLeaf).toBe(true);
      // A leaf tensor created with requiresGrad prints it; a non-leaf prints its grad_fn.
      expect(x.toString()).toContain('requires_grad=True');
      expect(y.toString()).toContain('grad_fn=<');
    });
  });

  it('requiresGrad cannot be set on an integer tensor or unset on a non-leaf', () => {
    torch.tidy(() => {
      expect(() => torch.tensor([1, 2]).requiresGrad_()).toThrow(Error);
      const y = torch.ones([2], { requiresGrad: true }).mul(2);
      expect(() => y.requiresGrad_(false)).toThrow(Error);
      expect(() => torch.ones(2).requiresGrad_('yes' as unknown as boolean)).toThrow(TypeError);
    });
  });

  it('.grad accumulates across two backward calls and clears with grad = null', () => {
    torch.tidy(() => {
      const x = f64([1, 2, 3], true);
      expect(x.grad).toBeNull();
      x.mul(x).sum().backward();
      expect(x.grad!.toArray()).toEqual([2, 4, 6]);
      x.mul(3).sum().backward();
      expect(x.grad!.toArray()).toEqual([5, 7, 9]);
      x.grad = null;
      expect(x.grad).toBeNull();
      x.mul(4).sum().backward();
      expect(x.grad!.toArray()).toEqual([4, 4, 4]);
    });
  });

  it('.grad can be assigned a tensor', () => {
    torch.tidy(() => {
      const x = f64([1, 2], true);
      x.grad = f64([10, 20]);
      x.sum().backward();
      expect(x.grad!.toArray()).toEqual([11, 21]);
    });
  });

  it('backward of a non-scalar output needs an explicit gradient', () => {
    torch.tidy(() => {
      const x = f64(
        [
          [1, 2],
          [3, 4],
        ],
        true,
      );
      const y = x.mul(x);
      expect(() => y.backward()).toThrow(/scalar/);
      y.backward(
        f64([
          [1, 0.5],
          [-1, 2],
        ]),
      );
      expect(x.grad!.toArray()).toEqual([
        [2, 2],
        [-6, 16],
      ]);
    });
  });

  it('retainGrad keeps the gradient of a non-leaf', () => {
    torch.tidy(() => {
      const x = f64([1, 2, 3], true);
      const y = x.mul(2);
      const z = x.mul(3);
      y.retainGrad();
      y.square().sum().add(z.sum()).backward();
      expect(y.grad!.toArray()).toEqual([4, 8, 12]); // d(y^2)/dy = 2y
      expect(z.grad).toBeNull(); // not retained
      expect(x.grad!.toArray()).toEqual([11, 19, 27]); // 2 * 2y + 3
    });
  });

  it('retainGraph allows a second backward; without it the graph is freed', () => {
    torch.tidy(() => {
      const x = f64([1, 2], true);
      const y = x.exp().mul(x).sum();
      y.backward(undefined, { retainGraph: true });
      const first = x.grad!.toArray() as number[];
      y.backward();
      const second = x.grad!.toArray() as number[];
      second.forEach((g, k) => expect(g).toBeCloseTo(2 * first[k]!, 12));
      expect(() => y.backward()).toThrow(Error);
      let message = '';
      try {
        y.backward();
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/graph/);
      expect(message).toMatch(/^backward: /);
      expect(message).not.toMatch(/Exception raised from|frame #/); // no C++ backtrace
    });
  });

  it('torch.autograd.grad frees the graph unless retainGraph', () => {
    torch.tidy(() => {
      const x = f64([1, 2], true);
      const y = x.square().sum();
      const [g1] = torch.autograd.grad(y, x, { retainGraph: true });
      expect(g1!.toArray()).toEqual([2, 4]);
      const [g2] = torch.autograd.grad(y, [x]);
      expect(g2!.toArray()).toEqual([2, 4]);
      expect(() => torch.autograd.grad(y, [x])).toThrow(/graph/);
      // autograd.grad does not touch .grad
      expect(x.grad).toBeNull();
    });
  });

  it('noGrad records nothing; enableGrad records inside noGrad', () => {
    torch.tidy(() => {
      const x = f64([1, 2], true);
      expect(torch.isGradEnabled()).toBe(true);
      const y = torch.noGrad(() => {
        expect(torch.isGradEnabled()).toBe(false);
        return x.mul(2);
      });
      expect(y.requiresGrad).toBe(false);
      expect(y.gradFn).toBeNull();
      expect(torch.isGradEnabled()).toBe(true);
      const z = torch.noGrad(() =>
        torch.enableGrad(() => {
          expect(torch.isGradEnabled()).toBe(true);
          return x.mul(2);
        }),
      );
      expect(z.requiresGrad).toBe(true);
      z.sum().backward();
      expect(x.grad!.toArray()).toEqual([2, 2]);
    });
  });

  it('noGrad restores grad mode when fn throws; setGradEnabled toggles it', () => {
    expect(() =>
      torch.noGrad(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(torch.isGradEnabled()).toBe(true);
    torch.setGradEnabled(false);
    try {
      expect(torch.isGradEnabled()).toBe(false);
      torch.tidy(() => expect(torch.ones([2], { requiresGrad: true }).mul(2).requiresGrad).toBe(false));
    } finally {
      torch.setGradEnabled(true);
    }
    expect(torch.isGradEnabled()).toBe(true);
  });

  it('autograd.grad with createGraph gives second derivatives: d2/dx2 of x^3 = 6x', () => {
    torch.tidy(() => {
      const x = f64([-1, 0.5, 2], true);
      const y = x.pow(3).sum();
      const [dy] = torch.autograd.grad(y, x, { createGraph: true });
      expect(dy!.requiresGrad).toBe(true);
      (dy!.toArray() as number[]).forEach((v, k) => expect(v).toBeCloseTo(3 * [-1, 0.5, 2][k]! ** 2, 12));
      const [d2y] = torch.autograd.grad(dy!.sum(), x);
      expect(d2y!.toArray()).toEqual([-6, 3, 12]);
      // backward with createGraph too
      const w = f64([1.5], true);
      w.pow(3).sum().backward(undefined, { createGraph: true });
      const g = w.grad!;
      expect(g.requiresGrad).toBe(true);
      const [h] = torch.autograd.grad(g.sum(), w);
      expect(h!.item()).toBeCloseTo(9, 12);
    });
  });

  it('autograd.grad with gradOutputs for a non-scalar output', () => {
    torch.tidy(() => {
      const x = f64([1, 2, 3], true);
      const [g] = torch.autograd.grad(x.square(), x, { gradOutputs: [f64([1, 0, -1])] });
      expect(g!.toArray()).toEqual([2, 0, -6]);
    });
  });

  it('autograd.grad with several outputs and inputs', () => {
    torch.tidy(() => {
      const a = f64([1, 2], true);
      const b = f64([3], true);
      const [ga, gb] = torch.autograd.grad([a.mul(b).sum(), b.square().sum()], [a, b]);
      expect(ga!.toArray()).toEqual([3, 3]);
      expect(gb!.toArray()).toEqual([3 + 6]);
    });
  });

  it('allowUnused returns null for an unused input, and it is an error without it', () => {
    torch.tidy(() => {
      const x = f64([1, 2], true);
      const unused = f64([3], true);
      const y = x.square().sum();
      const [gx, gu] = torch.autograd.grad(y, [x, unused], { allowUnused: true, retainGraph: true });
      expect(gx!.toArray()).toEqual([2, 4]);
      expect(gu).toBeNull();
      expect(() => torch.autograd.grad(y, [x, unused])).toThrow(Error);
    });
  });

  it('autograd errors name the op, and bad arguments are TypeErrors', () => {
    torch.tidy(() => {
      const x = torch.ones(2); // no requiresGrad
      expect(() => x.sum().backward()).toThrow(/^backward: .*grad/);
      expect(() => torch.autograd.grad(x.sum(), x)).toThrow(Error);
      expect(() => torch.autograd.grad(x.sum(), ['x' as unknown as Tensor])).toThrow(TypeError);
      expect(() => x.backward('g' as unknown as Tensor)).toThrow(TypeError);
    });
  });

  it('in-place ops on leaves that require grad are rejected; on non-leaves they are recorded', () => {
    torch.tidy(() => {
      const x = f64([1, 2], true);
      expect(() => x.add_(1)).toThrow(Error);
      const y = x.mul(1);
      y.mul_(3).add_(1);
      y.sum().backward();
      expect(x.grad!.toArray()).toEqual([3, 3]);
      // Modifying a tensor saved for backward is caught at backward time.
      const z = f64([0.5, 1], true);
      const e = z.exp();
      const out = e.mul(e);
      e.add_(1);
      expect(() => out.sum().backward()).toThrow(/modified by an inplace operation/);
      // Under noGrad a leaf can be updated in place (an optimizer step).
      torch.noGrad(() => x.sub_(x.grad!, 0.5));
      expect(x.toArray()).toEqual([-0.5, 0.5]);
      expect(x.requiresGrad).toBe(true);
    });
  });

  it('no tensor handles leak from a backward pass in tidy', () => {
    const before = torch.memory().numTensors;
    torch.tidy(() => {
      const x = f64([1, 2, 3], true);
      F.linear(x.unsqueeze(0), torch.ones([2, 3], { dtype: 'float64' }))
        .tanh()
        .sum()
        .backward();
      expect(x.grad).not.toBeNull();
    });
    expect(torch.memory().numTensors).toBe(before);
  });
});
