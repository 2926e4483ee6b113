// Trains the demo's shipped base model (examples/demo/base-model/): a random tiny InternVL
// (examples/demo/model.mjs), SFT on the shapes task's deliberately flawed labels (orange called
// "red" and purple called "blue" 80% of the time), through the public CLI and the recipe
// examples/demo/base-sft.yaml. Deterministic: the same seed writes the same data and, on the same
// libtorch build and thread settings, the same weights.
//
//   node scripts/train-demo-base.mjs [--steps 800] [--sft-size 24000] [--seed 0] [--out DIR]
//
// Work files (model, data, run) go to examples/demo/.work/, where the recipe's relative paths point.
// Run time: see docs/demo.md (measured on 2 shared cores).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeSftData } from '../examples/demo/datasets.mjs';
import { writeInitialModel } from '../examples/demo/model.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const demo = join(root, 'examples/demo');
const work = join(demo, '.work');

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '800' },
    'sft-size': { type: 'string', default: '24000' },
    seed: { type: 'string', default: '0' },
    out: { type: 'string', default: join(demo, 'base-model') },
  },
});
const seed = Number(values.seed);
const started = Date.now();
const seconds = () => ((Date.now() - started) / 1000).toFixed(1);

rmSync(work, { recursive: true, force: true });
const parameters = await writeInitialModel(join(work, 'init'), seed);
console.log(`random InternVL: ${parameters.toLocaleString('en-US')} parameters (${seconds()} s)`);
await writeSftData(join(work, 'sft'), { seed, size: Number(values['sft-size']) });
console.log(`SFT data: ${values['sft-size']} flawed rows (${seconds()} s)`);

// OpenBLAS threads do the matmuls; one intra-op thread avoids oversubscribing two cores.
const env = { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '2' };
const cli = join(root, 'bin/vlalign.mjs');
const args = ['train', join(demo, 'base-sft.yaml'), '--max_steps', values.steps, '--seed', String(seed)];
const run = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit', env });
if (run.status !== 0) throw new Error(`vlalign train exited with ${run.status ?? run.signal}`);

// The model in the HF layout, without the run's logs.
const trained = join(work, 'sft-out');
const out = resolve(values.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const file of readdirSync(trained)) {
  if (file.endsWith('.json') || file.endsWith('.safetensors')) copyFileSync(join(trained, file), join(out, file));
}
rmSync(join(out, 'trainer_state.json'), { force: true });
console.log(`base model written to ${out} in ${seconds()} s`);
