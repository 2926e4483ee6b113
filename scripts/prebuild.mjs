// `npm run make-prebuild` (not `prebuild`, which npm would run before every `npm run build`): refreshes prebuilds/linux-x64/vlalign.napi.node from a fresh source build
// against Debian's libtorch 1.13.1 (CPU). Commit the result once per change of cpp/: every committed
// binary stays in git history, and CI checks the shipped one matches cpp/.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { root, sourceHash, binarySourceHash, torchLayout } = require('./native-build.cjs');

const layout = torchLayout();
if (layout.cuda || !layout.libDir.startsWith('/usr/lib')) {
  console.error(`vlalign: prebuilds are made against Debian's CPU libtorch only (found ${layout.cmakeDir})`);
  process.exit(1);
}
const build = spawnSync(process.execPath, [path.join(root, 'scripts/build-native.mjs')], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const source = path.join(root, 'build/Release/vlalign.node');
const target = path.join(root, `prebuilds/${process.platform}-${process.arch}/vlalign.napi.node`);
fs.mkdirSync(path.dirname(target), { recursive: true });
const strip = spawnSync('strip', ['--strip-unneeded', '-o', `${target}.tmp`, source], { stdio: 'inherit' });
if (strip.status !== 0) process.exit(strip.status ?? 1);
fs.renameSync(`${target}.tmp`, target);
if (binarySourceHash(target) !== sourceHash()) throw new Error('prebuild lost its source hash marker');
console.log(
  `vlalign: wrote ${path.relative(root, target)} (${(fs.statSync(target).size / 1e6).toFixed(1)} MB, sources ${sourceHash()})`,
);
