// Linear4bit: the 4-bit layer equals a dense linear layer on its dequantised weight (forward, dx,
// db), computes in its compute dtype, keeps its weight frozen, names its tensors as documented, and
// costs ~0.516 bytes per parameter with double quantisation. Plus the bitsandbytes JSON writer.
import { describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { Linear } from '../../lib/nn/index.js';
import { Linear4bit } from '../../lib/quant/index.js';
import { pythonFloatRepr, quantStateJson } from '../../lib/internal.js';
import { runPythonText } from '../peers/python.js';

const F = torch.nn.functional;
const relErr = (a: Tensor, b: Tensor): number =>
  torch.tidy(() => (a.sub(b).abs().max().item() as number) / (b.abs().max().item() as number));

function denseLinear(inF: number, outF: number, bias = true, seed = 0): Linear {
  torch.manualSeed(seed);
  const linear = new Linear(inF, outF, { bias });
  torch.noGrad(() => {
    linear.weight.normal_(0, 0.05);
    linear.bias?.normal_(0, 0.1);
  });
  return linear;
}

describe('Linear4bit', () => {
  for (const [quantType, doubleQuant] of [
    ['nf4', true],
    ['nf4', false],
    ['fp4', true],
  ] as const) {
    it(`${quantType}${doubleQuant ? ' + double quant' : ''}: forward, dx and db equal a dense linear on the dequantised weight`, () => {
      const linear = denseLinear(80, 96);
      const layer = Linear4bit.fromLinear(linear, { quantType, doubleQuant });
      torch.tidy(() => {
        const w = layer.dequantize();
        expect(w.equal(torch.dequantize4bit(torch.quantize4bit(linear.weight, { quantType, doubleQuant })))).toBe(true);
        const x = torch.randn([3, 7, 80]).requiresGrad_(true);
        const y = layer.forward(x);
        const dy = torch.randn([3, 7, 96]);
        y.backward(dy);
        const xr = x.detach().requiresGrad_(true);
        const br = linear.bias!.detach().requiresGrad_(true);
        const yr = F.linear(xr, w, br);
        yr.backward(dy);
        expect(relErr(y, yr)).toBeLessThan(1e-5);
        expect(relErr(x.grad!, xr.grad!)).toBeLessThan(1e-5);
        expect(relErr(layer.bias!.grad!, br.grad!)).toBeLessThan(1e-6);
      });
      layer.dispose();
      linear.dispose();
    });
  }

  it('is a Linear with a frozen packed weight; its state dict holds the packed codes and the quant-state buffers', () => {
    const linear = denseLinear(64, 48);
    const layer = Linear4bit.fromLinear(linear);
    expect(layer).toBeInstanceOf(Linear);
    expect([layer.inFeatures, layer.outFeatures]).toEqual([64, 48]);
    const state = layer.stateDict();
    const shapes = Object.fromEntries([...state].map(([k, t]) => [k, `${t.dtype} [${t.shape.join(', ')}]`]));
    expect(shapes).toEqual({
      weight: 'uint8 [1536, 1]',
      bias: 'float32 [48]',
      weight_absmax: 'uint8 [48]',
      weight_quant_map: 'float32 [16]',
      weight_nested_absmax: 'float32 [1]',
      weight_nested_quant_map: 'float32 [256]',
      weight_nested_offset: 'float32 []',
    });
    expect(layer.weight.requiresGrad).toBe(false);
    expect(layer.parameters().filter((p) => p.requiresGrad)).toEqual([layer.bias]);
    layer.requiresGrad_(true); // the module-wide switch cannot unfreeze the uint8 weight
    expect(layer.weight.requiresGrad).toBe(false);
    layer.dispose();
    linear.dispose();
  });

  it('computes in bfloat16 when asked, returning the input dtype', () => {
    const linear = denseLinear(64, 32);
    const layer = Linear4bit.fromLinear(linear, { computeDtype: 'bfloat16' });
    torch.tidy(() => {
      const x = torch.randn([5, 64]);
      const y = layer.forward(x);
      expect(y.dtype).toBe('float32');
      const exact = F.linear(x, layer.dequantize(), linear.bias);
      const viaBf16 = F.linear(x.to('bfloat16'), layer.dequantize('bfloat16'), linear.bias!.to('bfloat16')).float();
      expect(relErr(y, viaBf16)).toBeLessThan(1e-2);
      expect(relErr(y, exact)).toBeGreaterThan(0); // bf16 rounding shows
      expect(relErr(y, exact)).toBeLessThan(3e-2);
    });
    layer.dispose();
    linear.dispose();
  });

  it('toLinear gives a dense layer with the dequantised weight; refuses a converted quant state', () => {
    const linear = denseLinear(64, 32);
    const layer = Linear4bit.fromLinear(linear);
    const dense = layer.toLinear();
    torch.tidy(() => {
      expect(dense.weight.equal(layer.dequantize())).toBe(true);
      const x = torch.randn([2, 64]);
      expect(relErr(dense.forward(x), layer.forward(x))).toBeLessThan(1e-5);
    });
    layer.to({ dtype: 'bfloat16' });
    expect(() => torch.tidy(() => layer.forward(torch.randn([2, 64])))).toThrow(
      /converted to bfloat16 .*must stay float32/,
    );
    layer.dispose();
    dense.dispose();
    linear.dispose();
  });

  it('costs 0.5 + 1/64 + 4/(64·256) ≈ 0.5159 bytes per parameter with double quantisation (0.5625 without), plus the code tables', () => {
    const linear = denseLinear(2048, 1024, false);
    for (const [doubleQuant, perParam] of [
      [true, 0.5 + 1 / 64 + 4 / (64 * 256)],
      [false, 0.5 + 4 / 64],
    ] as const) {
      const layer = Linear4bit.fromLinear(linear, { doubleQuant });
      const n = 2048 * 1024;
      const tables = 16 * 4 + (doubleQuant ? 256 * 4 + 4 : 0);
      expect(layer.quantizedBytes()).toBe(Math.round(n * perParam) + tables);
      expect(layer.quantizedBytes() / n).toBeCloseTo(doubleQuant ? 0.5164 : 0.5625, 3);
      layer.dispose();
    }
    linear.dispose();
  });
});

describe('bitsandbytes quant_state JSON', () => {
  it('is Python json.dumps of the state dict, in bitsandbytes key order', () => {
    const spec = { quantType: 'nf4' as const, blocksize: 64, doubleQuant: true, weightDtype: 'bfloat16' as const };
    expect(quantStateJson(spec, [96, 80], 0.0123456789)).toBe(
      '{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [96, 80], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.0123456789}',
    );
    expect(
      quantStateJson({ ...spec, quantType: 'fp4', doubleQuant: false, weightDtype: 'float32' }, [8, 64], null),
    ).toBe('{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [8, 64]}');
  });

  it('writes floats as Python repr does', () => {
    const cases: Array<[number, string]> = [
      [1e-5, '1e-05'],
      [0.0001, '0.0001'],
      [1.5, '1.5'],
      [2, '2.0'],
      [-0.25, '-0.25'],
      [1e16, '1e+16'],
      [123456789012345680, '1.2345678901234568e+17'],
      [1234.5, '1234.5'],
      [0.000123, '0.000123'],
      [3.4e-7, '3.4e-07'],
      [0, '0.0'],
    ];
    for (const [x, repr] of cases) expect(pythonFloatRepr(x)).toBe(repr);
    // float32 values as doubles (what .item() gives bitsandbytes), over many magnitudes.
    const values = Array.from({ length: 200 }, (_, k) => Math.fround(Math.sin(k * 12.9898) * 10 ** ((k % 24) - 12)));
    const out = runPythonText(
      'import json,sys; print("\\n".join(json.dumps(float(v)) for v in json.load(sys.stdin)))',
      { input: JSON.stringify(values) },
    );
    expect(values.map(pythonFloatRepr)).toEqual(out.trim().split('\n'));
  });
});
