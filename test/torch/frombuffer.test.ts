import { describe, expect, it } from 'vitest';

import { torch } from '../../lib/index.js';

describe('torch.frombuffer shares memory with JS', () => {
  it('writes through the buffer are seen by the tensor and the reverse', () => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = torch.frombuffer(data, { dtype: 'float32', shape: [2, 3] });
    data[4] = 50;
    expect(t.toArray()).toEqual([
      [1, 2, 3],
      [4, 50, 6],
    ]);
    t.mul_(2);
    expect(Array.from(data)).toEqual([2, 4, 6, 8, 100, 12]);
    t.dispose();
  });

  it('reinterprets a Buffer slice by byte offset, and the tensor keeps the memory alive', () => {
    const bytes = Buffer.alloc(16);
    bytes.writeInt32LE(7, 4);
    bytes.writeInt32LE(-9, 8);
    const t = torch.frombuffer(bytes.subarray(4, 12), { dtype: 'int32' });
    expect(t.toArray()).toEqual([7, -9]);
    const doubled = torch.tidy(() => t.mul(2).toArray());
    expect(doubled).toEqual([14, -18]);
    t.dispose();
  });

  it('refuses a length that does not fit the shape and a misaligned start', () => {
    const bytes = new Uint8Array(10);
    expect(() => torch.frombuffer(bytes, { dtype: 'float32' })).toThrow(/whole number/);
    expect(() => torch.frombuffer(bytes, { dtype: 'float32', shape: [3] })).toThrow(/needs 12/);
    expect(() => torch.frombuffer(bytes.subarray(1, 9), { dtype: 'float32' })).toThrow(/aligned/);
  });

  it('survives GC of the JS view while the tensor lives, and frees cleanly after', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    let t = torch.frombuffer(new Float64Array([3, 1, 4, 1, 5]), { dtype: 'float64' });
    for (let k = 0; k < 3; k++) {
      gc?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(t.sum().item()).toBe(14);
    t.dispose();
    t = torch.zeros(1);
    t.dispose();
  });
});
