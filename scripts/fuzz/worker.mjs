// One fuzz worker: a child process that builds and runs cases one at a time, as the parent sends
// them, and reports each outcome over IPC. A crash here costs the parent one case, not the run.
import fs from 'node:fs';
import path from 'node:path';
import { loadSurfaces, runCase } from './cases.mjs';

const { corpus, scratch, surfaces } = JSON.parse(process.env.VLALIGN_FUZZ_WORKER);
fs.mkdirSync(scratch, { recursive: true });
await loadSurfaces(surfaces); // module loading is not charged to the first case's time limit

// An error no case awaited (a stray rejection, a throw in a timer) would kill the worker silently;
// report its stack and the cases that ran last (one of them left it behind), then die.
const recent = [];
for (const event of ['uncaughtException', 'unhandledRejection']) {
  process.on(event, (error) => {
    const stray = `${event} (recent cases ${recent.join(', ')}): ${error?.stack ?? String(error)}`;
    process.send({ stray }, () => process.exit(70));
  });
}

process.on('message', async ({ id, seed, surface, index }) => {
  const dir = path.join(scratch, `${surface}-${index}`);
  recent.push(`${surface}:${index}`);
  if (recent.length > 4) recent.shift();
  // The case's folder stays until the worker is recycled: a read the library left in flight after
  // the case returned must not fail because the harness deleted its file (that would make a run's
  // outcome depend on timing; such reads are reported separately).
  const report = await runCase({ seed, surface, index, corpus, dir }, (what) => process.send({ id, started: what }));
  process.send({ id, ...report });
});
process.send({ ready: true });
