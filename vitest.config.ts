import { defineConfig } from 'vitest/config';

// Forks, not threads: a native addon is safest in its own process per worker.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    // Two intra-op threads unless the caller sets OMP_NUM_THREADS (CI also runs with 1).
    env: { OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' },
    execArgv: ['--expose-gc'],
  },
});
