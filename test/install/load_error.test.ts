// When no binary loads, importing vlalign fails once with the cause and the commands for it. Each
// cause is produced for real in an installed-package layout (fake_package.ts) and the import runs
// in a fresh Node process: a missing prebuild (with and without the install script having run), a
// binary whose libtorch library the dynamic loader cannot find, one built against another libtorch
// (an undefined symbol), a stale build, a file dlopen rejects, VLALIGN_NATIVE and LIBTORCH /
// Torch_DIR pointing nowhere. The dynamic loader's own message (and readelf) is the independent
// witness of each damage; the test asserts our message names that cause and its fix.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { INSTALL_MARKER } from '../../lib/torch/load_error.js';
import { type FakePackage, makeFakePackage, neededLibraries, patchBytes, shippedPrebuild } from './fake_package.js';

const packages: FakePackage[] = [];
function fakePackage(options?: { prebuild?: boolean }): FakePackage {
  const pkg = makeFakePackage(options);
  packages.push(pkg);
  return pkg;
}
afterEach(() => {
  for (const pkg of packages.splice(0)) pkg.remove();
});

const APPROVE = 'npm install-scripts approve vlalign && npm rebuild vlalign';
const BUILD = '`npx vlalign build`';
const DEBIAN = 'sudo apt-get install libtorch-dev libgloo-dev libopenblas0-openmp';
const PYTHON = 'LIBTORCH="$(python3 -c "import torch;print(torch.utils.cmake_prefix_path)")" npx vlalign build';

// The failed import as the user sees it: one error, its message once, no module-loader frames.
function failedImport(pkg: FakePackage, env: NodeJS.ProcessEnv = {}): string {
  const run = pkg.importLoader(env);
  expect(run.status, run.stdout).toBe(1);
  expect(run.stderr).toContain('NativeLoadError: vlalign: the native addon did not load');
  expect(run.stderr.split('did not load').length - 1).toBe(1);
  expect(run.stderr.split('Possible solutions:').length - 1).toBe(1);
  expect(run.stderr.match(/^ {4}at /gm)?.length ?? 0).toBeLessThanOrEqual(1);
  expect(run.stderr).not.toContain('node:internal/modules/cjs');
  return run.stderr;
}

const markInstallRan = (pkg: FakePackage) => fs.writeFileSync(path.join(pkg.root, INSTALL_MARKER), '{}\n');

describe('the loader in an installed package', () => {
  it('loads the shipped prebuild when nothing is damaged (the control for every case below)', () => {
    const run = fakePackage().importLoader();
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toMatch(/\/prebuilds\/linux-x64\/vlalign\.napi\.node$/);
  });

  it('no binary, install script never ran: names both and gives the approval command', () => {
    const message = failedImport(fakePackage({ prebuild: false }));
    expect(message).toContain('Cause: No vlalign binary for linux-x64');
    expect(message).toContain('prebuilds/linux-x64/vlalign.napi.node');
    expect(message).toContain("Cause: vlalign's install script never ran here");
    expect(message).toContain(APPROVE);
    expect(message).toContain(BUILD);
    expect(message).toContain(PYTHON);
  });

  it('no binary, install script ran: no approval step, the build command', () => {
    const pkg = fakePackage({ prebuild: false });
    markInstallRan(pkg);
    const message = failedImport(pkg);
    expect(message).toContain('Cause: No vlalign binary for linux-x64');
    expect(message).not.toContain('never ran');
    expect(message).not.toContain(APPROVE);
    expect(message).toContain(BUILD);
  });

  it("a libtorch library the prebuild links is missing: Debian's packages or a source build", () => {
    const pkg = fakePackage();
    // As on a machine without Debian's libtorch: the prebuild needs a libtorch_cpu that is not there.
    patchBytes(shippedPrebuild, pkg.prebuild, 'libtorch_cpu.so.1.13', 'libtorch_cpu.so.0.99');
    expect(neededLibraries(pkg.prebuild)).toContain('libtorch_cpu.so.0.99');
    const message = failedImport(pkg);
    expect(message).toContain('The loader said: libtorch_cpu.so.0.99: cannot open shared object file');
    expect(message).toContain('links libtorch_cpu.so.0.99, which the dynamic loader cannot find');
    expect(message).toContain(
      "The prebuilt binary links Debian's libtorch 1.13 (CPU) from /usr/lib/x86_64-linux-gnu, which is not installed here",
    );
    expect(message).toContain(DEBIAN);
    expect(message).toContain(BUILD);
    expect(message).toContain("Cause: vlalign's install script never ran here");
  });

  it('a source build whose libtorch has gone: rebuild, not the Debian packages', () => {
    const pkg = fakePackage({ prebuild: false });
    markInstallRan(pkg);
    const built = path.join(pkg.root, 'build/Release/vlalign.node');
    patchBytes(shippedPrebuild, built, 'libc10.so.1.13', 'libc10.so.7.77');
    const message = failedImport(pkg);
    expect(message).toContain('libc10.so.7.77: cannot open shared object file');
    expect(message).toContain('The libtorch it was built against has moved or been removed');
    expect(message).not.toContain(DEBIAN);
    expect(message).toContain(BUILD);
  });

  it('a binary built against another libtorch (undefined symbol): rebuild against this one', () => {
    const pkg = fakePackage();
    // A c10 data symbol this libtorch does not define, as a binary for another version references.
    const symbol = '_ZN3c1019UndefinedTensorImpl10_singletonE';
    const other = '_ZN3c1019UndefinedTensorImpl10_SingletonE';
    patchBytes(shippedPrebuild, pkg.prebuild, symbol, other);
    markInstallRan(pkg);
    const message = failedImport(pkg);
    expect(message).toContain(`The loader said: ${pkg.prebuild}: undefined symbol: ${other}`);
    expect(message).toContain('was built against another libtorch than the one the dynamic loader found');
    expect(message).toContain('c10::UndefinedTensorImpl::_Singleton');
    expect(message).toContain(BUILD);
    expect(message).toContain(PYTHON);
  });

  it('VLALIGN_NATIVE at a binary for another libtorch: the same cause, named for that file', () => {
    const pkg = fakePackage();
    const file = path.join(pkg.root, 'elsewhere/vlalign.node');
    patchBytes(
      shippedPrebuild,
      file,
      '_ZN3c1019UndefinedTensorImpl10_singletonE',
      '_ZN3c1019UndefinedTensorImpl10_singletoNE',
    );
    const message = failedImport(pkg, { VLALIGN_NATIVE: file });
    expect(message).toContain(`Cause: ${file} was built against another libtorch`);
    expect(message).not.toContain("The prebuilt binary is for Debian's");
  });

  it('a stale source build (other cpp/): rebuild, or remove build/ to use the prebuild', () => {
    const pkg = fakePackage();
    markInstallRan(pkg);
    const built = path.join(pkg.root, 'build/Release/vlalign.node');
    const hash = /VLALIGN_SOURCE_HASH=([0-9a-f]+);/.exec(fs.readFileSync(shippedPrebuild, 'latin1'))?.[1] as string;
    patchBytes(shippedPrebuild, built, `VLALIGN_SOURCE_HASH=${hash}`, `VLALIGN_SOURCE_HASH=${'0'.repeat(hash.length)}`);
    const message = failedImport(pkg);
    expect(message).toContain(`Cause: ${built} was built from other sources than this package's cpp/`);
    expect(message).toContain(BUILD);
    expect(message).toContain(`or remove ${path.join(pkg.root, 'build')} to fall back to the prebuilt binary`);
  });

  it('a file dlopen rejects (not an ELF object): the loader line and a rebuild', () => {
    const pkg = fakePackage();
    const hash = /VLALIGN_SOURCE_HASH=([0-9a-f]+);/.exec(fs.readFileSync(shippedPrebuild, 'latin1'))?.[1] as string;
    fs.writeFileSync(pkg.prebuild, `not a shared object\0VLALIGN_SOURCE_HASH=${hash};\0`);
    markInstallRan(pkg);
    const message = failedImport(pkg);
    expect(message).toContain(`Cause: The dynamic loader refused ${pkg.prebuild}`);
    expect(message).toMatch(/The loader said: .*(invalid ELF header|file too short)/);
    expect(message).toContain(BUILD);
  });

  it('VLALIGN_NATIVE naming no file', () => {
    const missing = path.join(os.tmpdir(), 'vlalign-no-such-dir', 'vlalign.node');
    const message = failedImport(fakePackage(), { VLALIGN_NATIVE: missing });
    expect(message).toContain(`Cause: VLALIGN_NATIVE=${missing} names no file.`);
    expect(message).toContain('`unset VLALIGN_NATIVE`');
  });

  it.each(['LIBTORCH', 'Torch_DIR'])('%s pointing nowhere is named beside the cause, with its fix', (name) => {
    const nowhere = path.join(os.tmpdir(), 'vlalign-no-libtorch-here');
    const message = failedImport(fakePackage({ prebuild: false }), { [name]: nowhere });
    expect(message).toContain('Cause: No vlalign binary for linux-x64');
    expect(message).toContain(`Cause: ${name}=${nowhere} holds no TorchConfig.cmake`);
    expect(message).toContain(`- fix or unset ${name} (see above), then ${BUILD}`);
    expect(message).toContain('libtorch on this machine: not searched');
  });
});

describe('the install script and vlalign build in an installed package', () => {
  it('the install script leaves the marker the loader reads', () => {
    const pkg = fakePackage();
    const install = pkg.script('scripts/install.mjs');
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toContain('vlalign: using prebuilds/linux-x64/vlalign.napi.node');
    const marker = JSON.parse(fs.readFileSync(path.join(pkg.root, INSTALL_MARKER), 'utf8'));
    expect(marker.outcome).toBe('using prebuilds/linux-x64/vlalign.napi.node');
  });

  it('`vlalign build` runs when the addon cannot load, and refuses a LIBTORCH that points nowhere', () => {
    const pkg = fakePackage({ prebuild: false });
    const nowhere = path.join(os.tmpdir(), 'vlalign-no-libtorch-here');
    const run = pkg.cli(['build'], { LIBTORCH: nowhere });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`vlalign: LIBTORCH=${nowhere} holds no TorchConfig.cmake`);
    expect(run.stderr).not.toContain('NativeLoadError');
    expect(fs.existsSync(path.join(pkg.root, 'build'))).toBe(false);
  });

  it('with a binary that loads, the command line runs main.js', () => {
    const run = fakePackage().cli(['--help']);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('main ran\n');
  });

  it('any other command prints the load error once, without a stack', () => {
    const run = fakePackage({ prebuild: false }).cli(['--help']);
    expect(run.status).toBe(1);
    expect(run.stderr.startsWith('vlalign: the native addon did not load')).toBe(true);
    expect(run.stderr.split('Possible solutions:').length - 1).toBe(1);
    expect(run.stderr).not.toMatch(/^ {4}at /m);
  });
});
