// Gradient checkpointing and autograd nodes with a JS backward: gradients bitwise equal to the
// plain run (float64), RNG replay for dropout, errors from the JS backward surfacing from
// backward(), and flat memory over many iterations.
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
import { input } from './gradcheck.js';

type Tensor = torch.Tensor;
const F = torch.nn.functional;

const params = (shapes: number[][], seed: number): Tensor[] =>
  shapes.map((s, k) =>
    input(s, { seed: seed + k })
      .mul(0.5)
      .requiresGrad_(true),
  );

const bitsOf = (t: Tensor | null): number[] => Array.from(t!.data() as Float64Array);

// A transformer-like block: layer norm, attention-ish mixing, residual, MLP with GELU, residual.
function block(x: Tensor, [w1, b1, w2, b2, wq, wk]: Tensor[]): Tensor {
  const h = F.layerNorm(x, [x.shape[1]!]);
  const scores = F.linear(h, wq!).matmul(F.linear(h, wk!).t()).softmax(-1);
  const a = x.add(scores.matmul(h));
  return a.add(F.linear(F.gelu(F.linear(a, w1!, b1!)), w2!, b2!));
}

function gradients(run: (x: Tensor) => Tensor, ps: Tensor[], x0: Tensor): number[][] {
  return torch.tidy(() => {
    for (const p of ps) p.grad = null;
    const x = x0.detach().requiresGrad_(true);
    run(x).pow(2).sum().backward();
    return [bitsOf(x.grad), ...ps.map((p) => bitsOf(p.grad))];
  });
}

describe('checkpoint', () => {
  it('gives an MLP the same gradients, bitwise, for inputs and parameters', () => {
    torch.tidy(() => {
      const ps = params([[16, 8], [16], [8, 16], [8]], 10);
      const mlp = (x: Tensor): Tensor => F.linear(F.linear(x, ps[0]!, ps[1]!).tanh(), ps[2]!, ps[3]!);
      const x0 = input([5, 8], { seed: 3 });
      const plain = gradients((x) => mlp(mlp(x)), ps, x0);
      const ckpt = gradients((x) => torch.checkpoint(mlp, [torch.checkpoint(mlp, [x])]), ps, x0);
      expect(ckpt).toEqual(plain);
    });
  });

  it('gives a transformer-like block the same gradients, bitwise, with two outputs', () => {
    torch.tidy(() => {
      const ps = params([[32, 8], [32], [8, 32], [8], [8, 8], [8, 8]], 20);
      const x0 = input([6, 8], { seed: 4 });
      const twice = (x: Tensor): Tensor[] => [block(x, ps), block(x, ps).mul(0.5)];
      const plain = gradients(
        (x) => {
          const [a, b] = twice(x);
          return a!.add(b!);
        },
        ps,
        x0,
      );
      const ckpt = gradients(
        (x) => {
          const [a, b] = torch.checkpoint(twice, [x]);
          return a!.add(b!);
        },
        ps,
        x0,
      );
      expect(ckpt).toEqual(plain);
    });
  });

  it('reaches parameters when no input requires grad, and runs under nested tidy scopes', () => {
    torch.tidy(() => {
      const [w] = params([[4, 4]], 30);
      const x = input([3, 4], { seed: 5 });
      const y = torch.tidy(() => torch.tidy(() => torch.checkpoint((a: Tensor) => a.matmul(w!).sin(), [x])));
      expect(y.requiresGrad).toBe(true);
      y.sum().backward();
      const expected = torch.tidy(() => {
        const w2 = w!.detach().requiresGrad_(true);
        x.matmul(w2).sin().sum().backward();
        return bitsOf(w2.grad);
      });
      expect(bitsOf(w!.grad)).toEqual(expected);
    });
  });

  it('replays the RNG so dropout recomputes the same mask', () => {
    torch.tidy(() => {
      const [w] = params([[6, 6]], 40);
      const x0 = input([4, 6], { seed: 6 });
      const fn = (x: Tensor): Tensor => F.dropout(x.matmul(w!), 0.5, true);
      torch.manualSeed(7);
      const plain = gradients(fn, [w!], x0);
      torch.manualSeed(7);
      const ckpt = gradients((x) => torch.checkpoint(fn, [x]), [w!], x0);
      expect(ckpt).toEqual(plain);
    });
  });

  it('returns detached outputs under noGrad', () => {
    torch.tidy(() => {
      const x = input([2, 2]).requiresGrad_(true);
      const y = torch.noGrad(() => torch.checkpoint((a: Tensor) => a.mul(2), [x]));
      expect(y.requiresGrad).toBe(false);
    });
  });

  it('keeps memory flat over many iterations', () => {
    const [w] = params([[8, 8]], 50);
    const step = (): void =>
      torch.tidy(() => {
        const x = input([4, 8], { seed: 8 }).requiresGrad_(true);
        torch
          .checkpoint((a: Tensor) => a.matmul(w!).relu(), [x])
          .sum()
          .backward();
      });
    step();
    const before = torch.memory().numTensors;
    for (let k = 0; k < 300; k++) step();
    expect(torch.memory().numTensors).toBe(before);
    w!.dispose();
  });
});

describe('autograd.functionWithBackward', () => {
  it('calls the JS backward with the output gradients and uses its input gradients', () => {
    torch.tidy(() => {
      const x = input([3]).requiresGrad_(true);
      const seen: number[][] = [];
      const [y] = torch.autograd.functionWithBackward(
        [x],
        () => [x.mul(3)],
        ([g], [saved]) => {
          seen.push(Array.from(g!.data() as Float64Array));
          expect(saved!.requiresGrad).toBe(false);
          return [g!.mul(3)];
        },
      );
      expect(y!.gradFn).toBe('JsBackward');
      y!
        .mul(torch.tensor([1, 2, 3], { dtype: 'float64' }))
        .sum()
        .backward();
      expect(seen).toEqual([[1, 2, 3]]);
      expect(Array.from(x.grad!.data() as Float64Array)).toEqual([3, 6, 9]);
    });
  });

  it('surfaces an error thrown in the JS backward from backward(), and stays usable', () => {
    torch.tidy(() => {
      const x = input([3]).requiresGrad_(true);
      const [y] = torch.autograd.functionWithBackward(
        [x],
        () => [x.exp()],
        () => {
          throw new Error('custom backward exploded');
        },
      );
      expect(() => y!.sum().backward()).toThrow(/custom backward exploded/);
      const [z] = torch.autograd.functionWithBackward(
        [x],
        () => [x.exp()],
        () => [null, null],
      );
      expect(() => z!.sum().backward()).toThrow(
        /returned 2 gradients for 1 inputs|functionWithBackward: expected an array of 1 gradients/,
      );
      const [u] = torch.autograd.functionWithBackward(
        [x],
        () => [x.exp()],
        () => [torch.zeros(5, { dtype: 'float64' })],
      );
      expect(() => u!.sum().backward()).toThrow(/invalid gradient|shape/);
      x.exp().sum().backward();
      expect(x.grad).not.toBeNull();
    });
  });

  it('refuses a second backward without retainGraph', () => {
    torch.tidy(() => {
      const x = input([2]).requiresGrad_(true);
      const [y] = torch.autograd.functionWithBackward(
        [x],
        () => [x.mul(2)],
        ([g]) => [g!.mul(2)],
      );
      const s = y!.sum();
      s.backward(undefined, { retainGraph: true });
      s.backward();
      expect(Array.from(x.grad!.data() as Float64Array)).toEqual([4, 4]);
      expect(() => s.backward()).toThrow();
    });
  });

  it('validates its arguments in JS', () => {
    expect(() =>
      torch.autograd.functionWithBackward(
        [1 as never],
        () => [],
        () => [],
      ),
    ).toThrow(/^autograd\.functionWithBackward: expected a Tensor for inputs\[0\]/);
    expect(() => torch.autograd.functionWithBackward([], 3 as never, () => [])).toThrow(
      /^autograd\.functionWithBackward: expected a function for forward/,
    );
  });
});
