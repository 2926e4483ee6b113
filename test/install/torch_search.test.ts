// The libtorch search a source build uses (scripts/native-build.cjs), in docs/install.md's order:
// each way a user names a libtorch (a libtorch prefix, Python's cmake_prefix_path form, a config dir,
// CMAKE_PREFIX_PATH) finds Debian's here and says which variable found it; the version it reports
// is the one the loaded binary was compiled against (buildInfo, read from libtorch's own headers at
// compile time); a variable pointing nowhere stops the search instead of being skipped.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
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

  // pip's torch (and the libtorch zip) keep TorchConfig.cmake in <prefix>/share/cmake/Torch, the
  // libraries in <prefix>/lib, and 2.x releases ask for C++20 on their imported target.
  it("lays out pip's torch: <prefix>/lib, <prefix>/include, its version and C++ standard", () => {
    const prefix = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-pip-')), 'torch');
    const api = path.join(prefix, 'include/torch/csrc/api/include/torch');
    fs.mkdirSync(path.join(prefix, 'share/cmake/Torch'), { recursive: true });
    fs.mkdirSync(path.join(prefix, 'lib'));
    fs.mkdirSync(api, { recursive: true });
    fs.writeFileSync(
      path.join(prefix, 'share/cmake/Torch/TorchConfig.cmake'),
      'set_target_properties(torch PROPERTIES\n    CXX_STANDARD 20\n)\n',
    );
    fs.writeFileSync(path.join(prefix, 'lib/libtorch.so'), '');
    fs.writeFileSync(path.join(api, 'torch.h'), '');
    fs.writeFileSync(
      path.join(api, 'version.h'),
      '#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 13\n#define TORCH_VERSION_PATCH 0\n',
    );
    const layout = build.torchLayout({ LIBTORCH: path.join(prefix, 'share/cmake') });
    expect(layout).toMatchObject({
      cmakeDir: path.join(prefix, 'share/cmake/Torch'),
      via: 'LIBTORCH',
      version: '2.13.0',
      libDir: path.join(prefix, 'lib'),
      includeDirs: [path.join(prefix, 'include'), path.join(prefix, 'include/torch/csrc/api/include')],
      cxxFlags: ['-std=c++20'],
      cuda: false,
    });
    fs.rmSync(path.dirname(prefix), { recursive: true });
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
