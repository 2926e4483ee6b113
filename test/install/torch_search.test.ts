// The libtorch search a source build uses (scripts/native-build.cjs), in docs/install.md's order:
// each way a user names a libtorch (a libtorch prefix, Python's cmake_prefix_path form, a config dir,
// CMAKE_PREFIX_PATH) finds Debian's here and says which variable found it; the version it reports
// is the one the loaded binary was compiled against (buildInfo, read from libtorch's own headers at
// compile time); a variable pointing nowhere stops the search instead of being skipped.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';

const require = createRequire(import.meta.url);
const build = require('../../scripts/native-build.cjs') as {
  torchSearch(env: NodeJS.ProcessEnv): { cmakeDir: string; via: string };
  torchLayout(env: NodeJS.ProcessEnv): {
    cmakeDir: string;
    via: string;
    version: string;
    cuda: boolean;
    libDir: string;
  };
};
const repoRoot = path.resolve(import.meta.dirname, '../..');

const DEBIAN = '/usr/lib/x86_64-linux-gnu/cmake/Torch';
const nowhere = path.join(os.tmpdir(), 'vlalign-no-libtorch-here');

describe('the libtorch search', () => {
  it.each([
    [{ LIBTORCH: '/usr' }, 'LIBTORCH'],
    [{ LIBTORCH: path.dirname(DEBIAN) }, 'LIBTORCH'], // torch.utils.cmake_prefix_path's form: <prefix>/Torch
    [{ Torch_DIR: DEBIAN }, 'Torch_DIR'],
    [{ LIBTORCH: '/usr', Torch_DIR: DEBIAN }, 'LIBTORCH'],
    [{ CMAKE_PREFIX_PATH: `${nowhere}:/usr` }, 'CMAKE_PREFIX_PATH'],
  ])('%j finds the config dir via %s', (env, via) => {
    expect(build.torchSearch(env)).toEqual({ cmakeDir: DEBIAN, via });
  });

  it('reports the version the loaded binary was compiled against, and CPU', () => {
    const layout = build.torchLayout({ Torch_DIR: DEBIAN });
    expect(layout.version).toBe(torch.buildInfo().torchVersion);
    expect(layout.cuda).toBe(torch.buildInfo().cuda);
    expect(layout.libDir).toBe('/usr/lib/x86_64-linux-gnu');
  });

  it.each(['LIBTORCH', 'Torch_DIR'])('%s pointing nowhere stops the search, naming the variable', (name) => {
    expect(() => build.torchSearch({ [name]: nowhere })).toThrow(
      new RegExp(`^vlalign: ${name}=${nowhere} holds no TorchConfig\\.cmake`),
    );
  });

  it('the build script refuses it before compiling, in one line', () => {
    const run = spawnSync(process.execPath, [path.join(repoRoot, 'scripts/build-native.mjs')], {
      env: { ...process.env, LIBTORCH: nowhere },
      timeout: 30_000,
      encoding: 'utf8',
    });
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toMatch(new RegExp(`^vlalign: LIBTORCH=${nowhere} holds no TorchConfig\\.cmake[^\\n]*$`));
    expect(run.stdout).not.toContain('building with');
  });
});
