// npm's install step. Uses the binary node-gyp-build finds (a local build, else the prebuild for
// this platform) when it was built from this package's cpp/ and actually loads here (libtorch's
// shared libraries resolve); otherwise builds from source. `npm install --build-from-source` or
// VLALIGN_BUILD_FROM_SOURCE=1 always builds.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { root, sourceHash, binarySourceHash } = require('./native-build.cjs');

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

const forced = process.env.npm_config_build_from_source === 'true' || process.env.VLALIGN_BUILD_FROM_SOURCE === '1';
const found = forced ? null : usableBinary();
if (found) {
  console.log(`vlalign: using ${path.relative(root, found)}`);
} else {
  console.log('vlalign: building the native addon from source against the libtorch on this machine');
  const build = spawnSync(process.execPath, [path.join(root, 'scripts/build-native.mjs')], { stdio: 'inherit' });
  process.exit(build.status ?? 1);
}
