// Hostile inputs at the tensor boundary (issue #17): forged tensors, lenient safetensors files and
// op errors that do not say which op failed.
import { describe, it, expect } from 'vitest';
import { torch } from '../../lib/index.js';

type Tensor = torch.Tensor;

describe('tensor handles cannot be forged', () => {
  it('the constructor refuses raw ids, fractional or not', () => {
    torch.tidy(() => {
      const live = torch.tensor([1, 2, 3]);
      const Ctor = torch.Tensor as unknown as new (...args: unknown[]) => Tensor;
      for (const id of [live.handle, 1.5, 0]) {
        expect(() => new Ctor(id)).toThrow(/Tensor cannot be constructed directly/);
      }
      expect(() => new Ctor(Symbol('vlalign.Tensor.internal'), live.handle)).toThrow(TypeError);
      expect(() => Reflect.construct(Ctor, [live.handle], class {})).toThrow(TypeError);
      expect(live.toArray()).toEqual([1, 2, 3]);
    });
  });

  it('a look-alike made from the prototype is not a tensor anywhere a tensor is taken', () => {
    torch.tidy(() => {
      const fake = Object.create(torch.Tensor.prototype) as Tensor;
      const x = torch.ones([2, 2], { requiresGrad: true });
      const y = x.mul(2).sum();
      expect(torch.Tensor.isTensor(fake)).toBe(false);
      expect(torch.Tensor.isTensor(x)).toBe(true);
      expect(() => y.backward(fake)).toThrow(/Expected a Tensor for gradient/);
      const state = torch.quantize4bit(torch.ones([2, 64]));
      expect(() => torch.linear4bit(torch.ones([1, 64]), state, fake)).toThrow(/Expected a Tensor for bias/);
      expect(() => x.add(fake)).toThrow(/Expected a Tensor for other/);
      expect(() => torch.cat([x, fake])).toThrow(/Expected a Tensor for tensors\[1\]/);
      expect(() => torch.where(x.gt(0), fake, x)).toThrow(/Expected a Tensor for input/);
      // Methods called on the look-alike fail as JS errors, never reaching the addon.
      expect(() => fake.add(x)).toThrow(TypeError);
      expect(() => fake.handle).toThrow(TypeError);
    });
  });

  it('the handle of a real tensor is read-only', () => {
    torch.tidy(() => {
      const a = torch.tensor([1, 2]);
      const b = torch.tensor([3, 4]);
      expect(() => {
        (a as unknown as { handle: number }).handle = b.handle;
      }).toThrow(TypeError);
      expect(a.toArray()).toEqual([1, 2]);
    });
  });

  it('disposing and tidy still clear the private handle', () => {
    const a = torch.tensor([1]);
    a.dispose();
    expect(a.isDisposed).toBe(true);
    expect(a.handle).toBe(0);
    let inner: Tensor | undefined;
    const kept = torch.tidy(() => {
      inner = torch.tensor([2]);
      return torch.tensor([3]);
    });
    expect(inner!.isDisposed).toBe(true);
    expect(kept.toArray()).toEqual([3]);
    const target = torch.tensor([4]);
    target.setData(kept);
    expect(kept.isDisposed).toBe(true);
    expect(target.toArray()).toEqual([3]);
    target.dispose();
  });
});
