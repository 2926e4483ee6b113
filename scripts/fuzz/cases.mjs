// Building, running and classifying one case. Each surface module exports `make(rng, ctx)`, which
// writes its inputs under ctx.dir and returns { what, names, alsoNames?, run }: a clean error
// contains one of `names` (the file or op at fault) and, when given, one of `alsoNames` (the key).
import fs from 'node:fs';
import { caseSeed, seededRandom } from './rng.mjs';

export const SURFACES = ['safetensors', 'images', 'ops', 'checkpoints', 'templates', 'datasets', 'recipes', 'cli'];
/** Surfaces run only when named: the harness's own check. */
export const EXTRA_SURFACES = ['selftest'];
const modules = new Map();

/** Imports the surfaces' modules (a worker does it before its first case). */
export const loadSurfaces = (names) => Promise.all(names.map(surfaceModule));

async function surfaceModule(surface) {
  if (!modules.has(surface)) modules.set(surface, await import(`./surfaces/${surface}.mjs`));
  return modules.get(surface);
}

/**
 * Runs case `index` of `surface`: 'ok' (accepted), 'clean' (an Error naming one of the case's
 * names), 'unclear' (any other throw), or 'harness' (the case could not be built: a fuzzer bug).
 */
export async function runCase({ seed, surface, index, corpus, dir }, started = () => {}) {
  const t0 = performance.now();
  let built;
  try {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const module = await surfaceModule(surface);
    built = await module.make(seededRandom(caseSeed(seed, surface, index)), { corpus, dir, index });
  } catch (error) {
    return { outcome: 'harness', what: '(building the case)', message: String(error?.stack ?? error) };
  }
  started(built.what);
  try {
    await built.run();
    return { outcome: 'ok', what: built.what, ms: performance.now() - t0 };
  } catch (error) {
    if (error?.finding) return { outcome: 'unclear', what: built.what, message: `FINDING: ${error.finding}` };
    const message = error instanceof Error ? error.message : `(a thrown ${typeof error}) ${String(error)}`;
    const names = (list) => list.length === 0 || list.some((name) => message.includes(name));
    const clean = error instanceof Error && names(built.names) && names(built.alsoNames ?? []);
    return { outcome: clean ? 'clean' : 'unclear', what: built.what, message, ms: performance.now() - t0 };
  }
}
