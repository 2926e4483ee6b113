// Hostile inputs at the tensor boundary (issue #17): forged tensors, lenient safetensors files and
// op errors that do not say which op failed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, it, expect } from 'vitest';
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
      expect(() => y.backward(fake)).toThrow(/^backward: expected a Tensor for gradient/);
      const state = torch.quantize4bit(torch.ones([2, 64]));
      expect(() => torch.linear4bit(torch.ones([1, 64]), state, fake)).toThrow(
        /^linear4bit: expected a Tensor for bias/,
      );
      expect(() => x.add(fake)).toThrow(/^add: expected a Tensor for other/);
      expect(() => torch.cat([x, fake])).toThrow(/^cat: expected a Tensor for tensors\[1\]/);
      expect(() => torch.where(x.gt(0), fake, x)).toThrow(/^where: expected a Tensor for input/);
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

// ---- safetensors: files the reference reader refuses, and valid ones it accepts ------------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-hostile-'));
let fileCount = 0;
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// A file byte by byte from the format: u64 little-endian header length, the JSON text as given
// (so keys can repeat), then the data bytes.
function writeRaw(headerText: string, dataBytes = 0): string {
  const json = Buffer.from(headerText, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const target = path.join(dir, `raw-${fileCount++}.safetensors`);
  fs.writeFileSync(target, Buffer.concat([length, json, Buffer.alloc(dataBytes)]));
  return target;
}

const f32 = (shape: number[], begin: number, end: number): string =>
  `{"dtype":"F32","shape":${JSON.stringify(shape)},"data_offsets":[${begin},${end}]}`;

describe('safetensors refuses what the reference reader refuses', () => {
  const refused: Array<[string, string, number, RegExp]> = [
    ['a repeated tensor name', `{"a":${f32([1], 0, 4)},"a":${f32([1], 0, 4)}}`, 4, /header repeats the key 'a'/],
    [
      'a repeat spelled with an escape',
      `{"a":${f32([1], 0, 4)},"\\u0061":${f32([1], 0, 4)}}`,
      4,
      /header repeats the key 'a'/,
    ],
    [
      'a repeated field inside an entry',
      `{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`,
      4,
      /repeats the key 'dtype'/,
    ],
    ['a repeated metadata key', `{"__metadata__":{"k":"1","k":"2"},"a":${f32([1], 0, 4)}}`, 4, /repeats the key 'k'/],
    [
      'a repeated __metadata__',
      `{"__metadata__":{},"__metadata__":{},"a":${f32([1], 0, 4)}}`,
      4,
      /repeats the key '__metadata__'/,
    ],
    ['two tensors on the same bytes', `{"a":${f32([1], 0, 4)},"b":${f32([1], 0, 4)}}`, 4, /overlaps/],
    ['an empty tensor inside another', `{"a":${f32([2], 0, 8)},"b":${f32([0], 4, 4)}}`, 8, /overlaps/],
    ['a partial overlap', `{"a":${f32([2], 0, 8)},"b":${f32([2], 4, 12)}}`, 12, /overlaps/],
    [
      'an element count past 64 bits',
      `{"a":${f32([2 ** 32, 2 ** 32, 0], 0, 0)}}`,
      0,
      /overflows a 64-bit element count/,
    ],
  ];

  it.each(refused)('refuses %s', async (_name, header, dataBytes, problem) => {
    const target = writeRaw(header, dataBytes);
    await expect(torch.readSafetensorsHeader(target)).rejects.toThrow(problem);
    await expect(torch.loadSafetensors(target)).rejects.toThrow(problem);
  });

  it('keys may repeat across different objects, and inside string values', async () => {
    const target = writeRaw(`{"__metadata__":{"a":"{\\"a\\":1,\\"a\\":2}"},"a":${f32([1], 0, 4)}}`, 4);
    const header = await torch.readSafetensorsHeader(target);
    expect(header.metadata).toEqual({ a: '{"a":1,"a":2}' });
    const loaded = await torch.loadSafetensors(target);
    expect(loaded.a!.toArray()).toEqual([0]);
    loaded.a!.dispose();
  });

  it('an empty tensor at a boundary tiles, as in the reference reader', async () => {
    const target = writeRaw(`{"a":${f32([1], 0, 4)},"e":${f32([0], 4, 4)},"b":${f32([1], 4, 8)}}`, 8);
    const loaded = await torch.loadSafetensors(target);
    expect(Object.keys(loaded).sort()).toEqual(['a', 'b', 'e']);
    expect(loaded.e!.shape).toEqual([0]);
    for (const t of Object.values(loaded)) t.dispose();
  });

  // Partial products 2^40 and 2^63 stay below 2^64; the 0 then makes every byte count 0.
  it.each([[[0, 2 ** 40]], [[2 ** 40, 0]], [[2 ** 31, 2 ** 32, 0]], [[0, 2 ** 52, 2 ** 52]], [[3, 0, 2 ** 50, 7]]])(
    'accepts the zero-element tensor of shape %j',
    async (shape) => {
      const target = writeRaw(`{"z":${f32(shape, 0, 0)}}`);
      const loaded = await torch.loadSafetensors(target);
      expect(loaded.z!.shape).toEqual(shape);
      expect(loaded.z!.numel()).toBe(0);
      loaded.z!.dispose();
    },
  );
});

describe('creation options', () => {
  it('undefined options mean the defaults', () => {
    torch.tidy(() => {
      expect(torch.zeros([2, 3], undefined).shape).toEqual([2, 3]);
      expect(torch.ones(2, 3, undefined).dtype).toBe('float32');
      expect(torch.empty([4], undefined).shape).toEqual([4]);
    });
  });

  it('options that are not an object are named as options, not as the shape', () => {
    expect(() => torch.zeros([2, 3], 'float64' as never)).toThrow(/for options but received 'float64'/);
    expect(() => torch.zeros([2, 3], null as never)).toThrow(/for options but received null/);
  });
});

// ---- every op error starts with the op's name -----------------------------------------------------

describe('op errors name the op', () => {
  const F = torch.nn.functional;
  const bad = (value: unknown): never => value as never;
  // [op, call]: each call fails on a disposed tensor or an argument of the wrong type, checked in
  // lib/torch (the JS cases) or while the addon unpacks its arguments (the native cases).
  const cases: Array<[string, (x: Tensor, gone: Tensor) => unknown]> = [
    ['add', (x) => x.add(bad('x'))],
    ['add', (x, gone) => x.add(gone)],
    ['mul', (x) => x.mul(bad({}))],
    ['sub', (x) => x.sub(bad(null), 2)],
    ['add_', (x) => x.add_(bad('1'))],
    ['cat', (x) => torch.cat([x, bad(1)])],
    ['stack', (x) => torch.stack(bad(x))],
    ['view', (x) => x.view(bad('a'))],
    ['sum', (x) => x.sum(bad('x'))],
    ['gather', (x) => x.gather(0, bad([0]))],
    ['unsqueeze', (x) => x.unsqueeze(0.5)],
    ['topk', (x) => x.topk(1.5)],
    ['requiresGrad_', (x) => x.requiresGrad_(bad(1))],
    ['matmul', (x, gone) => x.matmul(gone)],
    ['conv2d', () => F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2), null, { stride: bad('a') })],
    ['crossEntropy', (x) => F.crossEntropy(x, torch.tensor([0, 1]), { reduction: bad('avg') })],
    ['layerNorm', (x) => F.layerNorm(x, [3], null, null, bad('1e-5'))],
    ['linear', (x) => F.linear(x, bad('w'))],
    ['scaledDotProductAttention', (x, gone) => F.scaledDotProductAttention(x, x, gone)],
    // Disposed receivers and unchecked scalars reach the addon, which names the op itself.
    ['add', (x, gone) => gone.add(x)],
    ['exp', (_x, gone) => gone.exp()],
    ['sum', (_x, gone) => gone.sum()],
    ['softmax', (x) => x.softmax(bad('a'))],
    ['transpose', (x) => x.transpose(bad('0'), 1)],
    ['narrow', (x) => x.narrow(0, bad('a'), 1)],
    // The fused optimizer and 4-bit entry points check their arguments in JS.
    ['adamwStep_', (x, gone) => torch.adamwStep_([x], [gone], [x], [x], ADAMW)],
    ['adamwStep_', (x) => torch.adamwStep_([x], [x], [x], [x], { ...ADAMW, lr: bad('1e-3') })],
    ['quantize4bit', (_x, gone) => torch.quantize4bit(gone)],
    ['quantize4bit', () => torch.quantize4bit(torch.ones(2, 64), { blocksize: bad('64') })],
    ['dequantize4bit', () => torch.dequantize4bit(bad({}))],
    ['linear4bit', (_x, gone) => torch.linear4bit(gone, torch.quantize4bit(torch.ones(2, 64)))],
  ];

  const ADAMW = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };

  it.each(cases)('%s', (op, call) => {
    torch.tidy(() => {
      const x = torch.ones(2, 3);
      const gone = torch.ones(2, 3);
      gone.dispose();
      let message = '';
      try {
        call(x, gone);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(new RegExp(`^${op}: `));
    });
  });

  it('an exception thrown by a JS backward callback passes through unprefixed', () => {
    const f = torch.autograd.functionWithBackward;
    const x = torch.ones([2], { requiresGrad: true });
    const [y] = f(
      [x],
      () => [x.mul(2)],
      () => {
        throw new RangeError('from the callback');
      },
    );
    expect(() => y!.sum().backward()).toThrow(/^from the callback$/);
    x.dispose();
    y!.dispose();
  });
});
