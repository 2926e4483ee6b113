// npm's install step (also `npm rebuild vlalign`). Uses the binary node-gyp-build finds (a local
// build, else the prebuild for this platform) when it was built from this package's cpp/ and
// actually loads here (libtorch's shared libraries resolve); otherwise builds from source.
// `npm install --build-from-source` or VLALIGN_BUILD_FROM_SOURCE=1 always builds.
// It first leaves a marker (INSTALL_MARKER) so that the loader, when no binary loads, can tell a
// skipped install script (npm's allowScripts policy, --ignore-scripts, pnpm) from a failed one.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { root, sourceHash, binarySourceHash } = require('./native-build.cjs');

// The same name as in lib/torch/load_error.ts; not in package.json "files", so it is never packed.
const INSTALL_MARKER = '.vlalign-install.json';

function usableBinary() {
  let file;
  try {
    file = require('node-gyp-build').resolve(root);
  } catch {
    return null;
  }
  if (binarySourceHash(file) !== sourceHash()) {
    console.log(`vlalign: ${path.relative(root, file)} does not match the sources in cpp/`);
    return null;
  }
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)}).buildInfo()`], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    console.log(`vlalign: ${path.relative(root, file)} does not load here:\n${probe.stderr.trim().split('\n')[0]}`);
    return null;
  }
  return file;
}

function writeMarker(outcome) {
  const text = JSON.stringify({ ranAt: new Date().toISOString(), node: process.version, outcome }, null, 2);
  fs.writeFileSync(path.join(root, INSTALL_MARKER), `${text}\n`);
}

const forced = process.env.npm_config_build_from_source === 'true' || process.env.VLALIGN_BUILD_FROM_SOURCE === '1';
writeMarker('started');
const found = forced ? null : usableBinary();
if (found) {
  console.log(`vlalign: using ${path.relative(root, found)}`);
  writeMarker(`using ${path.relative(root, found)}`);
} else {
  console.log('vlalign: building the native addon from source against the libtorch on this machine');
  const build = spawnSync(process.execPath, [path.join(root, 'scripts/build-native.mjs')], { stdio: 'inherit' });
  writeMarker(build.status === 0 ? 'built from source' : `source build failed (exit ${build.status})`);
  process.exit(build.status ?? 1);
}
