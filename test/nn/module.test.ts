// Module bookkeeping: checkpoint names, state dicts and their errors, dtype moves that keep
// identity, module replacement (how adapters wrap layers), modes and gradient flags.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { Embedding, LayerNorm, Linear, Module, ModuleDict, ModuleList, RMSNorm } from '../../lib/nn/index.js';

class Block extends Module {
  readonly proj: Linear;
  readonly norm: RMSNorm;
  constructor() {
    super();
    this.proj = this.registerModule('proj', new Linear(3, 2));
    this.norm = this.registerModule('norm', new RMSNorm(2));
    this.registerBuffer('table', torch.arange(4).float(), false);
    this.registerBuffer('counts', torch.zeros([2]));
  }
}

class Net extends Module {
  readonly embed = this.registerModule('embed', new Embedding(5, 3));
  readonly layers = this.registerModule('layers', new ModuleList([new Block(), new Block()]));
  readonly head = this.registerModule(
    'head',
    new ModuleDict({ 0: new LayerNorm(2), 2: new Linear(2, 4, { bias: false }) }),
  );
}

describe('Module', () => {
  it('names parameters and buffers by their dotted checkpoint paths, in registration order', () => {
    const net = new Net();
    expect([...net.namedParameters()].map(([n]) => n)).toEqual([
      'embed.weight',
      'layers.0.proj.weight',
      'layers.0.proj.bias',
      'layers.0.norm.weight',
      'layers.1.proj.weight',
      'layers.1.proj.bias',
      'layers.1.norm.weight',
      'head.0.weight',
      'head.0.bias',
      'head.2.weight',
    ]);
    // Non-persistent buffers stay out of the state dict, persistent ones are in it.
    const names = [...net.stateDict().keys()];
    expect(names).toContain('layers.1.counts');
    expect(names).not.toContain('layers.0.table');
    expect(net.numParameters()).toBe(15 + 2 * (6 + 2 + 2) + 2 + 2 + 8);
    net.dispose();
  });

  it('loadStateDict copies values and lists every missing, unexpected and misshapen tensor', () => {
    const net = new Net();
    const other = new Net();
    torch.noGrad(() => other.parameters().forEach((p) => p.normal_()));
    net.loadStateDict(other.stateDict());
    for (const [name, t] of net.stateDict()) expect(t.equal(other.stateDict().get(name)!), name).toBe(true);
    const bad = new Map(other.stateDict());
    bad.delete('embed.weight');
    bad.set('layers.0.proj.weight', torch.zeros([3, 3]));
    bad.set('extra.weight', torch.zeros([1]));
    const message = (() => {
      try {
        net.loadStateDict(bad);
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(message).toContain("unexpected tensor 'extra.weight' [1]");
    expect(message).toContain("tensor 'layers.0.proj.weight' has shape [3, 3] but the model expects [2, 3]");
    expect(message).toContain("missing tensor 'embed.weight' [5, 3]");
    net.dispose();
    other.dispose();
  });

  it('to(dtype) converts in place: fields, state dict and requiresGrad survive', () => {
    const net = new Net();
    const weight = net.layers.at(0).proj.weight;
    const before = weight.double().toArray();
    net.to({ dtype: 'float64' });
    expect(weight.dtype).toBe('float64');
    expect(net.stateDict().get('layers.0.proj.weight')).toBe(weight);
    expect(weight.requiresGrad).toBe(true);
    expect(weight.toArray()).toEqual(before);
    net.dispose();
  });

  it('assign takes the given tensors as the parameters and casts them to the parameter dtype', () => {
    const net = new Net();
    const state = new Map([...net.stateDict()].map(([k, v]) => [k, torch.noGrad(() => v.double().add(1))]));
    net.loadStateDict(state, { assign: true });
    const w = net.embed.weight;
    expect(w.dtype).toBe('float32');
    expect(w.requiresGrad).toBe(true);
    net.dispose();
  });

  it('replaceModule swaps a child and the parent field that held it', () => {
    const net = new Net();
    const replacement = new Linear(3, 2, { bias: false });
    const old = net.replaceModule('layers.1.proj', replacement);
    expect(old).toBeInstanceOf(Linear);
    expect(net.layers.at(1).proj).toBe(replacement);
    expect(net.getSubmodule('layers.1.proj')).toBe(replacement);
    expect([...net.namedParameters()].map(([n]) => n)).not.toContain('layers.1.proj.bias');
    expect(() => net.getSubmodule('layers.7')).toThrow(/no submodule 'layers.7'/);
    net.dispose();
  });

  it('train/eval reach every submodule; requiresGrad_ freezes everything', () => {
    const net = new Net().eval();
    for (const [, m] of net.namedModules()) expect(m.training).toBe(false);
    net.requiresGrad_(false);
    expect(net.numParameters({ trainableOnly: true })).toBe(0);
    net.dispose();
  });

  it('rejects duplicate and dotted member names', () => {
    class Bad extends Module {
      constructor(name: string) {
        super();
        this.registerParameter('w', torch.zeros([1]));
        this.registerParameter(name, torch.zeros([1]));
      }
    }
    expect(() => new Bad('w')).toThrow(/'w' is already registered/);
    expect(() => new Bad('a.b')).toThrow(/invalid member name/);
  });
});
