// A rank that dies or stalls must not hang the others: their collective fails within the
// process-group timeout with an error naming the op, the rank and the timeout.
import { describe, expect, it } from 'vitest';
import { resultOf, runJob } from './ranks.js';

const TIMEOUT_MS = 4000;
// Process start-up and scheduling on a loaded 2-core machine, on top of the timeout itself.
const SLACK_MS = 4000;

describe.each([
  ['killed (SIGKILL)', 'dead-peer'],
  ['stalled (never calls the collective)', 'stuck-peer'],
])('a rank that is %s', (_, scenario) => {
  it('makes the other ranks fail within the timeout, naming op, rank and timeout', async () => {
    const runs = await runJob(3, scenario, { env: { VLALIGN_TEST_TIMEOUT_MS: String(TIMEOUT_MS) }, waitFor: [0, 1] });
    if (scenario === 'dead-peer') expect(runs[2].signal).toBe('SIGKILL');
    for (const rank of [0, 1]) {
      const run = runs[rank];
      expect({ rank, code: run.code }, `${run.stdout}\n${run.stderr}`).toEqual({ rank, code: 0 });
      const { error, stack, elapsedMs } = resultOf(run).result;
      expect(error).toContain(`allReduce failed on rank ${rank} of 3 (process-group timeout ${TIMEOUT_MS} ms): `);
      expect(elapsedMs).toBeLessThan(TIMEOUT_MS + SLACK_MS);
      // The rejection carries the caller's stack, not an empty native one.
      expect(stack).toContain('peerFailure');
    }
    if (scenario === 'stuck-peer') {
      // Nobody died: both waited for the timeout, and say so.
      for (const rank of [0, 1]) {
        const { error, elapsedMs } = resultOf(runs[rank]).result;
        expect(error).toContain('no peer answered in time');
        expect(elapsedMs).toBeGreaterThan(TIMEOUT_MS * 0.9);
      }
    }
  }, 120_000);
});
