// `npm run build:native`: builds the addon from source into build/Release. node-gyp (binding.gyp)
// for a CPU libtorch; cmake-js (CMakeLists.txt) when libtorch has CUDA, or with --cmake, since it
// also compiles cpp/kernels/cuda. Configure runs every time so the embedded source hash is current.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';

const require = createRequire(import.meta.url);
const { root, torchLayout } = require('./native-build.cjs');
const jobs = String(Math.max(1, os.availableParallelism()));

function run(script, args) {
  const result = spawnSync(process.execPath, [script, ...args], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`vlalign: native build failed (${args[0]}); see the compiler output above`);
    process.exit(result.status ?? 1);
  }
}

// Offline machines: build against the installed Node headers instead of downloading them.
const nodeDir = !process.env.npm_config_nodedir && fs.existsSync('/usr/include/node/node.h') ? ['--nodedir=/usr'] : [];

if (torchLayout().cuda || process.argv.includes('--cmake')) {
  run(require.resolve('cmake-js/bin/cmake-js'), ['compile', '--parallel', jobs]);
} else {
  const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
  run(nodeGyp, ['configure', ...nodeDir]);
  run(nodeGyp, ['build', '-j', jobs, ...nodeDir]);
}
