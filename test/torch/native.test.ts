// The shipped prebuild and the source build: both carry the hash of cpp/, both load, and a binary
// built from other sources is refused before it is loaded.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { torch } from '../../lib/index.js';
import { nativeBinaryPath, packageRoot, verifyBinary } from '../../lib/torch/native.js';

const require = createRequire(import.meta.url);
const build = require('../../scripts/native-build.cjs') as {
  sourceHash(): string;
  binarySourceHash(file: string): string | null;
  sources(isa?: string): string[];
  cppSources(): string[];
};
const prebuild = path.join(packageRoot, `prebuilds/${process.platform}-${process.arch}/vlalign.napi.node`);

// Loads a binary in a fresh process and runs one op through it.
function runIn(file: string): { status: number | null; stdout: string; stderr: string } {
  const script = `
    const n = require(${JSON.stringify(file)});
    const a = n.fromBytes(new Float32Array([1, 2, 3]), 6, [3]);
    const b = n.mulScalar(a, 2);
    console.log(JSON.stringify({ values: Array.from(new Float32Array(n.bytes(b))), info: n.buildInfo() }));`;
  return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
}

describe('native binaries', () => {
  it('the loaded addon was built from the current cpp/', () => {
    expect(torch.buildInfo().sourceHash).toBe(build.sourceHash());
    expect(torch.buildInfo().torchVersion).toMatch(/^\d+\.\d+/);
  });

  it('the shipped prebuild matches cpp/ and loads', () => {
    expect(fs.existsSync(prebuild)).toBe(true);
    expect(build.binarySourceHash(prebuild)).toBe(build.sourceHash());
    const run = runIn(prebuild);
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout) as { values: number[]; info: { sourceHash: string; cuda: boolean } };
    expect(out.values).toEqual([2, 4, 6]);
    expect(out.info.sourceHash).toBe(build.sourceHash());
    expect(out.info.cuda).toBe(false);
  });

  // CI runs this file once against the prebuild and once per source build (VLALIGN_NATIVE).
  it('the binary the loader picked matches cpp/ and loads in a fresh process', () => {
    expect(build.binarySourceHash(nativeBinaryPath)).toBe(build.sourceHash());
    const run = runIn(nativeBinaryPath);
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout).values).toEqual([2, 4, 6]);
  });

  it('a binary built from other sources is refused before loading', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-stale-'));
    const stale = path.join(dir, 'vlalign.node');
    const bytes = fs.readFileSync(prebuild);
    const marker = bytes.indexOf('VLALIGN_SOURCE_HASH=') + 'VLALIGN_SOURCE_HASH='.length;
    bytes.write('000000000000000000000000', marker, 'latin1');
    fs.writeFileSync(stale, bytes);
    expect(() => verifyBinary(stale)).toThrow(/built from other sources .* rebuild it/);
    expect(() => verifyBinary(prebuild)).not.toThrow();
    fs.rmSync(dir, { recursive: true });
  });

  it('binding.gyp and CMakeLists.txt build every C++ source from one list', () => {
    const onDisk = fs
      .readdirSync(path.join(packageRoot, 'cpp'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.cc'))
      .map((f) => `cpp/${f}`)
      .sort();
    expect(build.cppSources()).toEqual(onDisk);
    const split = [...build.sources(), ...build.sources('avx2'), ...build.sources('avx512')].sort();
    expect(split).toEqual(onDisk);
    expect(build.sources('avx512').every((f) => f.endsWith('_avx512.cc'))).toBe(true);
    const gyp = fs.readFileSync(path.join(packageRoot, 'binding.gyp'), 'utf8');
    for (const list of ['sources)', 'sources-avx2)', 'sources-avx512)'])
      expect(gyp).toContain(`native-build.cjs ${list}`);
    expect(fs.readFileSync(path.join(packageRoot, 'CMakeLists.txt'), 'utf8')).toContain('native_build_query(sources');
  });
});
