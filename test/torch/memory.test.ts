import { describe, expect, it } from 'vitest';

import { torch } from '../../lib/index.js';

const live = (): number => torch.memory().numTensors;

describe('tensor lifetime', () => {
  it('dispose frees the native tensor once and marks the wrapper', () => {
    const before = live();
    const t = torch.ones(4);
    expect(live()).toBe(before + 1);
    t.dispose();
    t.dispose();
    expect(t.isDisposed).toBe(true);
    expect(live()).toBe(before);
    expect(() => t.add(1)).toThrow(/disposed/);
  });

  it('Symbol.dispose frees at the end of a using block', () => {
    const before = live();
    {
      using t = torch.zeros(3);
      expect(t.numel()).toBe(3);
      expect(live()).toBe(before + 1);
    }
    expect(live()).toBe(before);
  });

  it('tidy frees what fn created and keeps what it returns, including nested containers', () => {
    const before = live();
    const a = torch.ones(2, 2);
    const result = torch.tidy(() => {
      const b = a.add(1);
      const c = b.mul(2);
      return { sum: c.sum(), parts: [c.mean()] };
    });
    expect(live()).toBe(before + 3);
    expect(result.sum.item()).toBe(16);
    expect(result.parts[0]!.item()).toBe(4);
    result.sum.dispose();
    result.parts[0]!.dispose();
    a.dispose();
    expect(live()).toBe(before);
  });

  it('a tensor returned from an inner tidy belongs to the outer one', () => {
    const before = live();
    torch.tidy(() => {
      const inner = torch.tidy(() => torch.ones(2).add(1));
      expect(inner.isDisposed).toBe(false);
      expect(live()).toBe(before + 1);
    });
    expect(live()).toBe(before);
  });

  it('keep() survives every scope; an exception still frees the scope', () => {
    const before = live();
    const kept = torch.tidy(() => {
      torch.ones(3).keep();
      return torch.zeros(1);
    });
    expect(live()).toBe(before + 2);
    expect(() =>
      torch.tidy(() => {
        torch.ones(5);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(live()).toBe(before + 2);
    kept.dispose();
    // the kept ones(3) is unreachable now; the backstop or the test process frees it
  });

  it('tidy refuses an async function', () => {
    expect(() => torch.tidy((async () => torch.ones(1)) as unknown as () => torch.Tensor)).toThrow(/synchronous/);
  });

  it('a 200,000-op loop keeps live tensors and RSS flat, in per-step and one long tidy', () => {
    const a = torch.randn(8);
    const b = torch.randn(8);
    const base = live();
    const rssBefore = process.memoryUsage().rss;
    for (let step = 0; step < 1000; step++) {
      torch.tidy(() => {
        for (let k = 0; k < 100; k++) a.add(b).mul(b);
      });
    }
    expect(live()).toBe(base);
    torch.tidy(() => {
      for (let k = 0; k < 100_000; k++) a.add(b).dispose();
      expect(live()).toBe(base);
    });
    expect(live()).toBe(base);
    const grownMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    expect(grownMb).toBeLessThan(40);
    a.dispose();
    b.dispose();
  });

  it('memory() counts distinct storages per device', () => {
    torch.tidy(() => {
      const before = torch.memory();
      const t = torch.zeros([256], { dtype: 'float64' });
      t.view(16, 16);
      const after = torch.memory();
      expect(after.numTensors - before.numTensors).toBe(2);
      expect(after.numBytes - before.numBytes).toBe(256 * 8);
      expect(after.devices.cpu!.numBytes).toBe(after.numBytes);
    });
  });

  it('the FinalizationRegistry backstop frees an unreferenced tensor after GC', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) return expect(typeof gc).toBe('undefined'); // run with --expose-gc to exercise it
    const settle = async (): Promise<void> => {
      for (let k = 0; k < 5; k++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await settle(); // earlier tests leave unreachable tensors for the backstop too
    const before = live();
    (() => {
      torch.ones(1024);
    })();
    expect(live()).toBe(before + 1);
    await settle();
    expect(live()).toBe(before);
  });
});

describe('threads', () => {
  it('default to the available cores or OMP_NUM_THREADS, and can be set', () => {
    const configured = Number(process.env.OMP_NUM_THREADS); // vitest.config.ts: 2 unless overridden
    expect(torch.getNumThreads()).toBe(configured);
    torch.setNumThreads(1);
    expect(torch.getNumThreads()).toBe(1);
    torch.setNumThreads(configured);
    expect(() => torch.setNumThreads(0)).toThrow(RangeError);
  });
});
