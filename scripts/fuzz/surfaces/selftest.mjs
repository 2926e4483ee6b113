// The harness's own check (--surface selftest, not in the default run): cases that abort the
// worker, hang it, throw without naming anything, throw cleanly and pass, in turn.
import path from 'node:path';

const KINDS = ['abort', 'hang', 'unclear', 'clean', 'ok'];

export async function make(_rng, { dir, index }) {
  const file = path.join(dir, 'input');
  const kind = KINDS[index % KINDS.length];
  return {
    what: `a case that should count as ${kind}`,
    names: [file],
    run: async () => {
      if (kind === 'abort') process.abort();
      if (kind === 'hang') for (;;);
      if (kind === 'unclear') throw new Error('something went wrong');
      if (kind === 'clean') throw new Error(`${file}: refused`);
    },
  };
}
