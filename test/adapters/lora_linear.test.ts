// LoraLinear against the LoRA and DoRA formulas written here with plain float64 tensor ops from our
// own W0, b, A, B, m: outputs, gradients, scaling, init distributions, enable/disable, merge, unload.
import { beforeEach, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { Linear } from '../../lib/nn/index.js';
import { Linear4bit } from '../../lib/quant/index.js';
import { LoraLinear, type LoraLayerOptions } from '../../lib/adapters/index.js';

const IN = 6;
const OUT = 5;

interface Fixture {
  w0: Tensor;
  b: Tensor;
  a: Tensor;
  bMat: Tensor;
  m: Tensor;
  x: Tensor;
}

function fixture(): Fixture {
  torch.manualSeed(7);
  const opts = { dtype: 'float64' as const };
  return {
    w0: torch.randn([OUT, IN], opts),
    b: torch.randn([OUT], opts),
    a: torch.randn([3, IN], opts).mul(0.5),
    bMat: torch.randn([OUT, 3], opts).mul(0.5),
    m: torch.rand([OUT], opts).add(0.5),
    x: torch.randn([2, 4, IN], opts),
  };
}

// A float64 layer holding the fixture's values.
function layer(f: Fixture, options: Partial<LoraLayerOptions> = {}, bias = true): LoraLinear {
  const base = new Linear(IN, OUT, { dtype: 'float64', bias });
  torch.noGrad(() => {
    base.weight.copy_(f.w0);
    base.bias?.copy_(f.b);
  });
  const l = new LoraLinear(base, { r: 3, alpha: 6, ...options });
  torch.noGrad(() => {
    l.lora_A.weight.copy_(f.a);
    l.lora_B.weight.copy_(f.bMat);
    l.lora_magnitude_vector?.copy_(f.m);
  });
  return l;
}

// nn.Linear starts uninitialised (checkpoints fill it); tests give it random values.
function randomLinear(
  inFeatures: number,
  outFeatures: number,
  options: { dtype?: 'float32' | 'float64' | 'bfloat16' } = {},
): Linear {
  const l = new Linear(inFeatures, outFeatures, options);
  torch.noGrad(() => {
    l.weight.normal_(0, 1 / Math.sqrt(inFeatures));
    l.bias?.normal_(0, 0.1);
  });
  return l;
}

const leaf = (t: Tensor): Tensor => t.detach().clone().requiresGrad_(true);
const maxDiff = (a: Tensor, b: Tensor): number =>
  torch.tidy(() => a.double().sub(b.double()).abs().max().item() as number);

/** The reference: y = x W0ᵀ + b + s·x Aᵀ Bᵀ (LoRA) or g ⊙ (x W0ᵀ + s·x Aᵀ Bᵀ) + b with g = m / ‖W0 + s·BA‖_row detached (DoRA). */
function reference(
  f: Fixture,
  s: number,
  dora: boolean,
  leaves: { a: Tensor; bMat: Tensor; m: Tensor; x: Tensor },
): Tensor {
  const { a, bMat, m, x } = leaves;
  const base = x.matmul(f.w0.t());
  const lora = x.matmul(a.t()).matmul(bMat.t()).mul(s);
  if (!dora) return base.add(lora).add(f.b);
  const norm = torch.noGrad(() => f.w0.add(bMat.matmul(a).mul(s)).square().sum(1).sqrt());
  return m.div(norm).mul(base.add(lora)).add(f.b);
}

function compareWithReference(dora: boolean, options: Partial<LoraLayerOptions>, s: number): void {
  torch.tidy(() => {
    const f = fixture();
    const l = layer(f, { ...options, useDora: dora });
    expect(l.scaling).toBeCloseTo(s, 14);
    const x = leaf(f.x);
    const y = l.forward(x);
    const probe = torch.randn(y.shape, { dtype: 'float64' });
    y.mul(probe).sum().backward();
    const refLeaves = { a: leaf(f.a), bMat: leaf(f.bMat), m: leaf(f.m), x: leaf(f.x) };
    const ref = reference(f, s, dora, refLeaves);
    ref.mul(probe).sum().backward();
    expect(maxDiff(y, ref)).toBeLessThan(1e-12);
    expect(maxDiff(x.grad!, refLeaves.x.grad!)).toBeLessThan(1e-12);
    expect(maxDiff(l.lora_A.weight.grad!, refLeaves.a.grad!)).toBeLessThan(1e-12);
    expect(maxDiff(l.lora_B.weight.grad!, refLeaves.bMat.grad!)).toBeLessThan(1e-12);
    if (dora) expect(maxDiff(l.lora_magnitude_vector!.grad!, refLeaves.m.grad!)).toBeLessThan(1e-12);
    expect(l.weight.grad).toBeNull();
    expect(l.bias!.grad).toBeNull();
    l.dispose();
  });
}

describe('LoraLinear forward and gradients', () => {
  it('LoRA: y = W0x + b + (α/r)·BAx, gradients for A, B and x', () => compareWithReference(false, {}, 2));
  it('rsLoRA scales by α/√r', () => compareWithReference(false, { useRslora: true }, 6 / Math.sqrt(3)));
  it('DoRA: y = m/‖W0 + sBA‖_row ⊙ (W0x + sBAx) + b with the norm detached; gradients for A, B, m and x', () =>
    compareWithReference(true, {}, 2));
  it('DoRA with rsLoRA', () => compareWithReference(true, { useRslora: true }, 6 / Math.sqrt(3)));

  it('DoRA initialises m to the row norms of W0 + s·BA (B = 0 → ‖W0‖_row), so the layer starts as the base', () => {
    torch.tidy(() => {
      const f = fixture();
      const base = new Linear(IN, OUT, { dtype: 'float64' });
      torch.noGrad(() => base.weight.copy_(f.w0));
      const plain = base.forward(f.x);
      const l = new LoraLinear(base, { r: 3, alpha: 6, useDora: true });
      expect(maxDiff(l.lora_magnitude_vector!, f.w0.square().sum(1).sqrt())).toBeLessThan(1e-14);
      expect(maxDiff(l.forward(f.x), plain)).toBeLessThan(1e-12);
      const random = new LoraLinear(randomLinear(IN, OUT, { dtype: 'float64' }), {
        r: 2,
        alpha: 4,
        useDora: true,
        init: false,
      });
      const w = random.weight.add(random.lora_B.weight.matmul(random.lora_A.weight).mul(2));
      expect(maxDiff(random.lora_magnitude_vector!, w.square().sum(1).sqrt())).toBeLessThan(1e-14);
    });
  });

  it('dropout in training: LoRA drops the input of A; DoRA also recomputes W0·drop(x) for the (g−1) term', () => {
    torch.tidy(() => {
      const f = fixture();
      for (const dora of [false, true]) {
        const l = layer(f, { dropout: 0.5, useDora: dora }).eval();
        expect(maxDiff(l.forward(f.x), reference(f, 2, dora, f))).toBeLessThan(1e-12); // eval mode: no dropout
        l.train();
        torch.manualSeed(3);
        const y = l.forward(f.x);
        torch.manualSeed(3);
        const dropped = torch.nn.functional.dropout(f.x, 0.5, true);
        // PEFT: result = base(x) + (g−1)·W0·drop(x) + g·s·B(A(drop(x))) for DoRA, base(x) + s·B(A(drop(x))) for LoRA.
        const s = 2;
        const lora = dropped.matmul(f.a.t()).matmul(f.bMat.t()).mul(s);
        const base = f.x.matmul(f.w0.t()).add(f.b);
        let expected = base.add(lora);
        if (dora) {
          const g = f.m.div(f.w0.add(f.bMat.matmul(f.a).mul(s)).square().sum(1).sqrt());
          expected = base.add(g.sub(1).mul(dropped.matmul(f.w0.t()))).add(g.mul(lora));
        }
        expect(maxDiff(y, expected)).toBeLessThan(1e-12);
      }
    });
  });

  it('computes in the base dtype (float32 in, float32 out) and keeps base weight and bias frozen', () => {
    torch.tidy(() => {
      const l = new LoraLinear(randomLinear(IN, OUT), { r: 2, alpha: 2 });
      expect(l.forward(torch.randn([3, IN])).dtype).toBe('float32');
      expect(l.lora_A.weight.dtype).toBe('float32');
      expect([
        l.weight.requiresGrad,
        l.bias!.requiresGrad,
        l.lora_A.weight.requiresGrad,
        l.lora_B.weight.requiresGrad,
      ]).toEqual([false, false, true, true]);
      expect([...l.stateDict().keys()].sort()).toEqual(['bias', 'lora_A.weight', 'lora_B.weight', 'weight']);
      const dora = new LoraLinear(randomLinear(IN, OUT, { dtype: 'bfloat16' }), { r: 2, alpha: 2, useDora: true });
      expect([...dora.stateDict().keys()].sort()).toEqual([
        'bias',
        'lora_A.weight',
        'lora_B.weight',
        'lora_magnitude_vector',
        'weight',
      ]);
      expect(dora.forward(torch.randn([3, IN]).bfloat16()).dtype).toBe('bfloat16');
    });
  });
});

describe('LoraLinear init', () => {
  const IN_BIG = 400;
  beforeEach(() => torch.manualSeed(1234));
  it('default: A ~ U(±1/√in) (kaiming_uniform a=√5), B = 0', () => {
    torch.tidy(() => {
      const l = new LoraLinear(randomLinear(IN_BIG, 300), { r: 64, alpha: 16 });
      const a = l.lora_A.weight;
      const bound = 1 / Math.sqrt(IN_BIG);
      expect(a.abs().max().item()).toBeLessThanOrEqual(bound);
      expect(a.abs().max().item()).toBeGreaterThan(0.98 * bound);
      expect(a.std().item()).toBeCloseTo(bound / Math.sqrt(3), 3); // U(−c, c) has std c/√3
      expect(l.lora_B.weight.abs().max().item()).toBe(0);
    });
  });

  it("'gaussian': A ~ N(0, std 1/r), B = 0", () => {
    torch.tidy(() => {
      const l = new LoraLinear(randomLinear(IN_BIG, 300), { r: 16, alpha: 16, init: 'gaussian' });
      expect(l.lora_A.weight.std().item()).toBeCloseTo(1 / 16, 2);
      expect(Math.abs(l.lora_A.weight.mean().item() as number)).toBeLessThan(0.005);
      expect(l.lora_B.weight.abs().max().item()).toBe(0);
    });
  });

  it('false: A and B both random (nn.Linear default, B ~ U(±1/√r))', () => {
    torch.tidy(() => {
      const l = new LoraLinear(randomLinear(IN_BIG, 300), { r: 16, alpha: 16, init: false });
      const b = l.lora_B.weight;
      expect(b.abs().max().item()).toBeLessThanOrEqual(0.25);
      expect(b.abs().max().item()).toBeGreaterThan(0.24);
    });
  });
});

describe('LoraLinear life cycle', () => {
  for (const dora of [false, true]) {
    const kind = dora ? 'DoRA' : 'LoRA';
    it(`${kind}: disabled gives the base output exactly; merge then forward equals the unmerged forward; unmerge restores`, () => {
      torch.tidy(() => {
        torch.manualSeed(11);
        const base = randomLinear(16, 12);
        const x = torch.randn([5, 16]);
        const plain = base.forward(x);
        const original = base.weight.clone();
        const l = new LoraLinear(base, { r: 4, alpha: 8, useDora: dora });
        torch.noGrad(() => {
          l.lora_B.weight.normal_(0, 0.3);
          l.lora_magnitude_vector?.mul_(torch.rand([12]).add(0.5));
        });
        const adapted = l.forward(x);
        expect(maxDiff(adapted, plain)).toBeGreaterThan(1e-3);
        l.enableAdapters(false);
        expect(l.forward(x).equal(plain)).toBe(true);
        l.enableAdapters(true);
        l.merge({ safeMerge: true });
        expect(l.merged).toBe(true);
        expect(maxDiff(l.forward(x), adapted)).toBeLessThan(1e-5);
        l.unmerge();
        expect(maxDiff(l.weight, original)).toBeLessThan(1e-6);
      });
    });

    it(`${kind}: unload() restores the original Linear with bit-identical weights; mergeAndUnload() merges into it`, () => {
      torch.tidy(() => {
        const base = randomLinear(16, 12);
        const [w, b] = [base.weight.clone(), base.bias!.clone()];
        const x = torch.randn([3, 16]);
        let l = new LoraLinear(base, { r: 4, alpha: 8, useDora: dora });
        torch.noGrad(() => l.lora_B.weight.normal_(0, 0.3));
        const back = l.unload();
        expect(back).toBe(base);
        expect(back.weight.equal(w) && back.bias!.equal(b)).toBe(true);
        l = new LoraLinear(base, { r: 4, alpha: 8, useDora: dora });
        torch.noGrad(() => l.lora_B.weight.normal_(0, 0.3));
        const adapted = l.forward(x);
        const merged = l.mergeAndUnload();
        expect(merged).toBe(base);
        expect(maxDiff(merged.forward(x), adapted)).toBeLessThan(1e-5);
        expect(merged.bias!.equal(b)).toBe(true);
      });
    });
  }

  it('the wrapped Linear lends its tensors while wrapped and gets them back, as a to() left them', () => {
    torch.tidy(() => {
      const base = randomLinear(8, 4);
      const w = base.weight.clone();
      const l = new LoraLinear(base, { r: 2, alpha: 2 });
      expect(base.weight.isDisposed).toBe(true); // no second handle pins the storage through a to()
      l.to({ dtype: 'float64' });
      expect(l.unload()).toBe(base);
      expect(base.weight.dtype).toBe('float64');
      expect(base.weight.equal(w.double())).toBe(true);
      expect(base.weight.requiresGrad).toBe(true);
    });
  });

  it('safe merge refuses non-finite results and leaves the weight untouched', () => {
    torch.tidy(() => {
      const l = new LoraLinear(randomLinear(4, 3), { r: 2, alpha: 2 });
      const before = l.weight.clone();
      torch.noGrad(() => l.lora_B.weight.fill_(Number.POSITIVE_INFINITY));
      expect(() => l.merge({ safeMerge: true })).toThrow(/not finite/);
      expect(l.merged).toBe(false);
      expect(l.weight.equal(before)).toBe(true);
    });
  });

  it('a disabled merged layer unmerges before computing the base output (PEFT)', () => {
    torch.tidy(() => {
      const base = randomLinear(8, 8);
      const x = torch.randn([2, 8]);
      const plain = base.forward(x);
      const l = new LoraLinear(base, { r: 2, alpha: 2 });
      torch.noGrad(() => l.lora_B.weight.normal_());
      l.merge();
      l.enableAdapters(false);
      expect(maxDiff(l.forward(x), plain)).toBeLessThan(1e-5);
      expect(l.merged).toBe(false);
    });
  });
});

describe('LoraLinear over a 4-bit base', () => {
  const [IN_Q, OUT_Q] = [64, 12];
  // Two layers over one 4-bit weight (fromLinear quantises one dense weight twice alike), one adapter.
  function twins(): [LoraLinear, LoraLinear, Tensor] {
    torch.manualSeed(21);
    const dense = randomLinear(IN_Q, OUT_Q);
    const quantise = (): Linear4bit => Linear4bit.fromLinear(dense, { quantType: 'nf4', doubleQuant: true });
    const [q1, q2] = [quantise(), quantise()];
    const wq = q1.dequantize().double();
    const [l1, l2] = [q1, q2].map((q) => new LoraLinear(q, { r: 4, alpha: 8, useDora: true }));
    torch.noGrad(() => {
      l1.lora_B.weight.normal_(0, 0.3);
      l1.lora_magnitude_vector!.mul_(torch.rand([OUT_Q]).add(0.5));
      l2.lora_A.weight.copy_(l1.lora_A.weight);
      l2.lora_B.weight.copy_(l1.lora_B.weight);
      l2.lora_magnitude_vector!.copy_(l1.lora_magnitude_vector!);
    });
    return [l1, l2, wq];
  }

  it(
    'DoRA: a dequantising merge gives m/‖Wq + sBA‖_row · (Wq + sBA) of the dequantised Wq (float64); ' +
      'unmerge gives Wq back; unload a dense Linear',
    () => {
      torch.tidy(() => {
        const [l, , wq] = twins();
        const [a, b, m] = [l.lora_A.weight.double(), l.lora_B.weight.double(), l.lora_magnitude_vector!.double()];
        const w = wq.add(b.matmul(a).mul(2));
        const expected = m.div(w.square().sum(1).sqrt()).unsqueeze(1).mul(w);
        // float32 against float64: a few roundings of values up to max|W|, the norm a sum of IN_Q squares.
        const tol = 8 * 2 ** -23 * Math.sqrt(IN_Q) * (expected.abs().max().item() as number);
        l.merge({ dequantize: true });
        expect([l.quantized, l.weight.dtype]).toEqual([false, 'float32']);
        expect(maxDiff(l.weight, expected)).toBeLessThan(tol);
        l.unmerge();
        expect(maxDiff(l.weight, wq)).toBeLessThan(tol);
        const back = l.unload();
        expect(back.constructor).toBe(Linear); // a new dense Linear, not the emptied Linear4bit
        expect(maxDiff(back.weight, wq)).toBeLessThan(tol);
      });
    },
  );

  it("DoRA: a re-quantising merge stores exactly the 4-bit quantisation of the dequantising merge's weight", () => {
    torch.tidy(() => {
      const [requantised, dequantised] = twins();
      requantised.merge();
      dequantised.merge({ dequantize: true });
      const info = requantised.quantInfo()!;
      expect(info.spec).toMatchObject({ quantType: 'nf4', blocksize: 64, doubleQuant: true, weightDtype: 'float32' });
      const expected = torch.quantize4bit(dequantised.weight, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
      expect(info.weight.equal(expected.packed)).toBe(true);
      expect(info.buffers.get('weight_absmax')!.equal(expected.absmax)).toBe(true);
      expect(info.buffers.get('weight_nested_absmax')!.equal(expected.nestedAbsmax!)).toBe(true);
    });
  });
});
