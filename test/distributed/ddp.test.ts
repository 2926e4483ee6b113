// DataParallel (PyTorch's c10d::Reducer) on 2 and 3 Gloo processes: a synchronised step equals
// the single-process step on the union of the ranks' batches (float64, 1e-10), gradient
// accumulation with no sync equals the whole window, create() makes rank 0's parameters
// everyone's, buckets are all-reduced while backward still runs, frozen and unused parameters, and a
// dead peer. Each rank computes the single-process reference itself (fixtures/ddp_worker.ts).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ProcessRun, runJob } from './ranks.js';

const DDP_WORKER = path.join(import.meta.dirname, 'fixtures/ddp_worker.ts');

function runDdpJob(
  worldSize: number,
  scenario: string,
  env: Record<string, string> = {},
  waitFor?: number[],
): Promise<ProcessRun[]> {
  return runJob(worldSize, scenario, { worker: DDP_WORKER, env, waitFor, limitMs: 150_000 });
}

function resultOf(run: ProcessRun): any {
  const line = run.stdout.split('\n').findLast((l) => l.startsWith('RESULT '));
  if (line === undefined)
    throw new Error(`no RESULT line (exit ${run.code ?? run.signal}):\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(line.slice('RESULT '.length)).result;
}

function expectClose(actual: number[] | null, expected: number[], what: string): void {
  expect(actual, what).not.toBeNull();
  expect(actual!.length, what).toBe(expected.length);
  const bad = expected.findIndex((e, i) => !(Math.abs(actual![i] - e) <= 1e-10));
  expect(bad, `${what}: element ${bad} is ${actual![bad]}, expected ${expected[bad]}`).toBe(-1);
}

describe.each([2, 3])('DataParallel on %i Gloo processes', (worldSize) => {
  it('a synchronised step and an accumulation window equal the single process on the union, buckets reduced during backward', async () => {
    const runs = await runDdpJob(worldSize, 'step');
    const results = runs.map(resultOf);
    results.forEach((r, rank) => {
      // create() broadcast rank 0's initial parameters (every rank started elsewhere).
      if (rank > 0) expect(r.initial, `rank ${rank}'s own start`).not.toEqual(results[0].initial);
      expect(r.afterCreate, `rank ${rank} after create`).toEqual(results[0].afterCreate);
      expect(r.afterCreate[0]).toEqual(results[0].initial);
      // 500-byte buckets: [W1 b1 W2] then [b2 W3 b3], reduced last parameters first.
      expect(r.bucketParams).toEqual([
        [3, 4, 5],
        [0, 1, 2],
      ]);
      // When backward reached the node between layers 1 and 2 (W1 had no gradient yet), bucket 0
      // already held the mean over ranks: its all-reduce ran during backward.
      expect(r.overlap.w1GradAtThatPoint).toBe(false);
      expect(r.overlap.matched, `rank ${rank} waited ${r.overlap.waitedMs} ms for bucket 0`).toBe(true);
      r.reference.forEach((g: number[], k: number) => expectClose(r.grads[k], g, `rank ${rank} param ${k}`));
      // No sync on the first micro-step: the gradients are this rank's own.
      r.localFirstMicro.forEach((g: number[], k: number) =>
        expectClose(r.afterNoSync[k], g, `rank ${rank} param ${k} after the no-sync micro-step`),
      );
      r.window.forEach((g: number[], k: number) =>
        expectClose(r.accumulated[k], g, `rank ${rank} param ${k} after the window`),
      );
    });
    // The ranks' local gradients differ, so the checks above could not pass without reduction.
    expect(results[0].afterNoSync[0]).not.toEqual(results[1].afterNoSync[0]);
  }, 180_000);

  it('reduces only trainable parameters and, with findUnusedParameters, leaves an unused one without .grad', async () => {
    const runs = await runDdpJob(worldSize, 'unused');
    const results = runs.map(resultOf);
    results.forEach((r, rank) => {
      // The frozen base (index 1) is no part of the reducer.
      expect(r.bucketParams.flat().sort()).toEqual([0, 2, 3]);
      expect(r.synced).toEqual(results[0].synced);
      expectClose(r.found[0], r.reference[0], `rank ${rank} W`);
      expectClose(r.found[2], r.reference[2], `rank ${rank} b`);
      expect(r.found[1]).toBeNull();
      expect(r.found[3]).toBeNull();
      expect(r.strictError).toContain(
        'DataParallel.prepareForBackward: the previous synchronised backward never completed',
      );
      expect(r.strictError).toContain('params [3]');
      expect(r.strictError).toContain('findUnusedParameters');
    });
  }, 180_000);
});

describe('DataParallel with a dead peer', () => {
  it('fails the survivors backward with an error naming DDP, rank and timeout, within the timeout', async () => {
    const timeoutMs = 4000;
    const runs = await runDdpJob(3, 'dead-peer', { VLALIGN_TEST_TIMEOUT_MS: String(timeoutMs) }, [0, 1]);
    expect(runs[2].signal).toBe('SIGKILL');
    for (const rank of [0, 1]) {
      const run = runs[rank];
      expect({ rank, code: run.code }, `${run.stdout}\n${run.stderr}`).toEqual({ rank, code: 0 });
      const { error, elapsedMs } = resultOf(run);
      expect(error).toContain('DataParallel: the gradient all-reduce of bucket 0');
      expect(error).toContain(`failed on rank ${rank} of 3 (process-group timeout ${timeoutMs} ms)`);
      expect(elapsedMs).toBeLessThan(timeoutMs + 4000);
    }
  }, 120_000);
});
