// `npm run build:native`, `npx vlalign build` and the install script's fallback: builds the addon
// from source into build/Release. node-gyp (binding.gyp) for a CPU libtorch; cmake-js
// (CMakeLists.txt) when libtorch has CUDA, or with --cmake, since it also compiles cpp/kernels/cuda.
// Says which libtorch it found (and how), and ends by loading the new binary in a child process, so a
// build that links but cannot load fails here rather than at the user's first import. Configure runs
// every time so the embedded source hash is current.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { root, torchLayout } = require('./native-build.cjs');
const jobs = String(Math.max(1, Number(process.env.VLALIGN_BUILD_JOBS) || os.availableParallelism()));

function run(script, args, env = {}) {
  const result = spawnSync(process.execPath, [script, ...args], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ...env },
  });
  if (result.status !== 0) {
    console.error(`vlalign: native build failed (${path.basename(script)} ${args[0]}); see the compiler output above`);
    process.exit(result.status ?? 1);
  }
}

// Node's headers for node-gyp without a download (offline machines): npm's nodedir if set, else the
// include/node next to this node (official tarballs, nvm), else Debian's /usr/include/node.
function nodeDirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const beside = path.resolve(path.dirname(process.execPath), '..');
  const dir = [beside, '/usr'].find((d) => fs.existsSync(path.join(d, 'include/node/node.h')));
  return dir ? [`--nodedir=${dir}`] : [];
}

function findTorch() {
  try {
    return torchLayout();
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}

// Loads the fresh binary in a child process (the parent must not dlopen it: a crash there would
// take the build down with it) and returns its buildInfo().
function loadBuilt(file) {
  const probe = spawnSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(file)}).buildInfo())`], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    console.error(`vlalign: ${file} was built but does not load:\n${probe.stderr.trim()}`);
    process.exit(1);
  }
  return JSON.parse(probe.stdout);
}

const torch = findTorch();
const useCmake = torch.cuda || process.argv.includes('--cmake');
console.log(
  `vlalign: building with ${useCmake ? 'cmake-js' : 'node-gyp'} against libtorch ${torch.version} ` +
    `(${torch.cuda ? 'CUDA' : 'CPU'}) at ${torch.libDir}, found via ${torch.via}`,
);
// What cpp/ is known to compile against (docs/install.md keeps the matrix); a user with another
// libtorch learns it before a long build rather than from its errors.
if (!/^(1\.13|2\.13)\./.test(torch.version)) {
  console.warn(
    `vlalign: warning: cpp/ has been compiled against libtorch 1.13 and 2.13 only; ${torch.version} is untried ` +
      `(see "Installing in your project" in the README)`,
  );
}
const started = Date.now();
if (useCmake) {
  // cmake-js reads Node's headers from npm's nodedir (npm_config_nodedir) and downloads them
  // otherwise; the local headers keep an offline machine building.
  const nodeDir = nodeDirArgs()[0]?.slice('--nodedir='.length);
  // TorchConfig finds its libraries and Caffe2 config with the system paths first: on a machine
  // that also has Debian's libtorch-dev, a pip torch would link /usr/lib's libtorch 1.13. Its prefix
  // on CMAKE_PREFIX_PATH is searched before them.
  const prefix = path.dirname(torch.includeDirs[0]);
  run(
    require.resolve('cmake-js/bin/cmake-js'),
    ['compile', '--parallel', jobs, `--CDCMAKE_PREFIX_PATH=${prefix}`],
    nodeDir ? { npm_config_nodedir: nodeDir } : {},
  );
} else {
  const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
  run(nodeGyp, ['configure', ...nodeDirArgs()]);
  run(nodeGyp, ['build', '-j', jobs, ...nodeDirArgs()]);
}
const binary = path.join(root, 'build/Release/vlalign.node');
const info = loadBuilt(binary);
console.log(
  `vlalign: built ${binary} in ${Math.round((Date.now() - started) / 1000)} s; it loads ` +
    `(libtorch ${info.torchVersion}, ${info.cuda ? 'CUDA' : 'CPU'}, sources ${info.sourceHash})`,
);
