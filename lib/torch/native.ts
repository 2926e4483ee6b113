// Loads the addon: the only module that touches it. A binary is loaded only when the hash of the
// sources it was built from (a marker in its bytes) equals the hash of this package's cpp/, so a
// stale build or prebuild is refused before dlopen, never half-used. When nothing loads, importing
// vlalign throws one NativeLoadError naming the cause and the commands that fix it (load_error.ts).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { nativeLoadError } from './load_error.js';

const require = createRequire(import.meta.url);

// lib/torch/native.ts and dist/torch/native.js both sit two levels below the package root.
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface NativeBuild {
  sourceHash(): string | null;
  binarySourceHash(file: string): string | null;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, (...args: any[]) => any>;

// VLALIGN_NATIVE, else a source build in build/, else the prebuild; null when there is none.
function locateBinary(): string | null {
  const explicit = process.env.VLALIGN_NATIVE;
  if (explicit) return fs.existsSync(explicit) ? path.resolve(explicit) : null;
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  try {
    return nodeGypBuild.resolve(packageRoot);
  } catch {
    return null;
  }
}

const build = require(path.join(packageRoot, 'scripts/native-build.cjs')) as NativeBuild;

/** Throws unless `file` was built from this package's cpp/ (read from its bytes, before any dlopen). */
export function verifyBinary(file: string): void {
  const expected = build.sourceHash();
  const actual = build.binarySourceHash(file);
  if (expected !== null && actual !== expected) {
    throw new Error(
      `vlalign: ${file} was built from other sources (hash ${actual ?? 'none'}) than this package's cpp/ ` +
        `(hash ${expected}); rebuild it with \`npx vlalign build\` (\`npm run build:native\` in a checkout)`,
    );
  }
}

function loadAddon(): { file: string; addon: NativeAddon } {
  const file = locateBinary();
  try {
    if (file === null) throw new Error('no binary found');
    verifyBinary(file);
    return { file, addon: require(file) as NativeAddon };
  } catch (error) {
    throw nativeLoadError({ packageRoot, binary: file, error });
  }
}

const loaded = loadAddon();

/** The path of the addon binary this process loaded (VLALIGN_NATIVE, else a source build, else the prebuild). */
export const nativeBinaryPath: string = loaded.file;

export const native: NativeAddon = loaded.addon;
