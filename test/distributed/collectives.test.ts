// Each collective on 2 and 3 CPU processes (Gloo over loopback, torchrun's variables), against the
// same reductions computed here from the inputs every rank fed in (fixtures/data.ts).
import { describe, expect, it } from 'vitest';
import { float32Bound } from '../tolerance.js';
import { LENGTH, rankIntegers, rankValues } from './fixtures/data.js';
import { type ProcessRun, resultOf, runJob } from './ranks.js';

type Reduce = 'sum' | 'avg' | 'max' | 'min';
const f32 = (values: number[]): number[] => values.map(Math.fround);

function reduce(rows: number[][], op: Reduce): number[] {
  return rows[0].map((_, i) => {
    const column = rows.map((row) => row[i]);
    if (op === 'max') return Math.max(...column);
    if (op === 'min') return Math.min(...column);
    const sum = column.reduce((a, b) => a + b, 0);
    return op === 'avg' ? sum / rows.length : sum;
  });
}

/** Element-wise closeness within `tolerance(expected value)`, naming the first bad element. */
function expectClose(actual: number[], expected: number[], tolerance: (e: number) => number, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  const bad = expected.findIndex((e, i) => !(Math.abs(actual[i] - e) <= tolerance(e)));
  expect(bad, `${what}: element ${bad} is ${actual[bad]}, expected ${expected[bad]}`).toBe(-1);
}

function checkRank(results: Record<string, number[]>, rank: number, worldSize: number): void {
  for (const dtype of ['float64', 'float32'] as const) {
    const cast = dtype === 'float32' ? f32 : (v: number[]) => v;
    const ranks = Array.from({ length: worldSize }, (_, r) => r);
    // Reductions of worldSize values of size <= LENGTH * worldSize: float32 rounds at each step.
    const tolerance =
      dtype === 'float64'
        ? (e: number) => 1e-12 * Math.max(1, Math.abs(e))
        : () => float32Bound(worldSize, LENGTH * worldSize, 4);
    for (const op of ['sum', 'avg', 'max', 'min'] as const) {
      const rows = ranks.map((r) => cast(rankValues(r)));
      expectClose(results[`allReduce/${op}/${dtype}`], cast(reduce(rows, op)), tolerance, `allReduce ${op} ${dtype}`);
      const long = ranks.map((r) => cast(rankValues(r, LENGTH * worldSize)));
      const slice = reduce(long, op).slice(rank * LENGTH, (rank + 1) * LENGTH);
      expectClose(results[`reduceScatter/${op}/${dtype}`], cast(slice), tolerance, `reduceScatter ${op} ${dtype}`);
      const sync = results[`reduceScatterSync/${op}/${dtype}`];
      expectClose(sync, cast(slice), tolerance, `reduceScatterSync ${op} ${dtype}`);
    }
    expect(results[`allGatherSync/${dtype}`], `allGatherSync ${dtype}`).toEqual(
      ranks.flatMap((r) => cast(rankValues(r))),
    );
    // Gathers and broadcasts move bytes: exact.
    expect(results[`allGather/${dtype}`], `allGather ${dtype}`).toEqual(ranks.flatMap((r) => cast(rankValues(r))));
    expect(results[`allGather/shape/${dtype}`]).toEqual([2 * worldSize, LENGTH / 2]);
    expect(results[`broadcast/${dtype}`], `broadcast ${dtype}`).toEqual(cast(rankValues(worldSize - 1)));
  }
  const integers = Array.from({ length: worldSize }, (_, r) => rankIntegers(r));
  expect(results['allReduce/sum/int64']).toEqual(reduce(integers, 'sum'));
  const longIntegers = Array.from({ length: worldSize }, (_, r) => rankIntegers(r, LENGTH * worldSize));
  expect(results['reduceScatter/max/int64']).toEqual(
    reduce(longIntegers, 'max').slice(rank * LENGTH, (rank + 1) * LENGTH),
  );
  for (const k of [0, 1, 2]) {
    const rows = Array.from({ length: worldSize }, (_, r) => rankValues(r + k));
    expectClose(
      results[`concurrent/${k}`],
      reduce(rows, 'sum'),
      (e) => 1e-12 * Math.max(1, Math.abs(e)),
      `concurrent ${k}`,
    );
  }
}

function expectAllSucceeded(runs: ProcessRun[]): void {
  runs.forEach((run, rank) => {
    expect({ rank, code: run.code, signal: run.signal }, `${run.stdout}\n${run.stderr}`).toEqual({
      rank,
      code: 0,
      signal: null,
    });
  });
}

describe.each([2, 3])('collectives on %i Gloo processes', (worldSize) => {
  it('allReduce (sum/avg/max/min), reduceScatter, allGather, broadcast and barrier equal the local math', async () => {
    const runs = await runJob(worldSize, 'collectives');
    expectAllSucceeded(runs);
    runs.forEach((run, rank) => {
      const { result, rank: reported, worldSize: size } = resultOf(run);
      expect({ reported, size }).toEqual({ reported: rank, size: worldSize });
      checkRank(result, rank, worldSize);
    });
  }, 180_000);
});

describe('async collectives', () => {
  it('keep the event loop ticking while a collective waits for a late rank', async () => {
    const delayMs = 1500;
    const runs = await runJob(2, 'event-loop', { env: { VLALIGN_TEST_DELAY_MS: String(delayMs) } });
    expectAllSucceeded(runs);
    const { ticks, waitedMs } = resultOf(runs[0]).result;
    // Rank 0 waited about the delay; a 10 ms interval ran throughout (a blocked loop gives 0 or 1).
    expect(waitedMs).toBeGreaterThan(delayMs / 2);
    expect(ticks).toBeGreaterThan(waitedMs / 10 / 4);
  }, 120_000);
});
