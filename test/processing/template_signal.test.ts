// The sandbox's wait for its render worker: a notify without the flag (the previous render's late
// notify, which once surfaced as "the render worker signalled without a reply" under load) must not
// end the wait; only the flag does, or the deadline.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { waitForSignal } from '../../lib/processing/template_sandbox.js';

// Sleeps `spuriousAfterMs`, notifies with the flag still 0, then (unless `setAfterMs` is null)
// sleeps until `setAfterMs` and sets the flag. Sleeping is a wait on a second cell.
const SIGNALLER = `
const { workerData } = require('node:worker_threads');
const { flag, spuriousAfterMs, setAfterMs } = workerData;
const sleep = (ms) => Atomics.wait(flag, 1, 0, ms);
sleep(spuriousAfterMs);
Atomics.notify(flag, 0);
if (setAfterMs !== null) {
  sleep(setAfterMs - spuriousAfterMs);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}
`;

function signaller(spuriousAfterMs: number, setAfterMs: number | null): { flag: Int32Array; worker: Worker } {
  const flag = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(SIGNALLER, { eval: true, workerData: { flag, spuriousAfterMs, setAfterMs } });
  return { flag, worker };
}

describe('waitForSignal', () => {
  it('ignores a notify that comes without the flag and returns when the flag is set', async () => {
    const { flag, worker } = signaller(100, 400);
    const start = performance.now();
    expect(waitForSignal(flag, 10_000)).toBe(true);
    const waited = performance.now() - start;
    await worker.terminate();
    expect(Atomics.load(flag, 0)).toBe(1);
    expect(waited).toBeGreaterThanOrEqual(350); // the spurious notify came at ~100 ms
  });

  it('times out when the flag never comes, spurious notify or not', async () => {
    const { flag, worker } = signaller(50, null);
    const start = performance.now();
    expect(waitForSignal(flag, 300)).toBe(false);
    const waited = performance.now() - start;
    await worker.terminate();
    expect(waited).toBeGreaterThanOrEqual(290);
    expect(waited).toBeLessThan(5000);
  });

  it('returns at once when the flag is already set', () => {
    const flag = new Int32Array(new SharedArrayBuffer(8));
    Atomics.store(flag, 0, 1);
    expect(waitForSignal(flag, 0)).toBe(true);
  });
});
