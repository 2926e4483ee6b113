// Intra-op threads. Debian's libtorch starts with one; we default to the cores available to this
// process unless OMP_NUM_THREADS says otherwise.
import os from 'node:os';

import { checkInteger } from './args.js';
import { native as N } from './native.js';

export const setNumThreads = (n: number): void => N.setNumThreads(checkInteger(n, 'n'));
export const getNumThreads = (): number => N.getNumThreads();

export function defaultNumThreads(env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number.parseInt(env.OMP_NUM_THREADS ?? '', 10);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : os.availableParallelism();
}

setNumThreads(defaultNumThreads());
