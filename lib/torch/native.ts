// Loads the addon: the only module that touches it. A binary is loaded only when the hash of the
// sources it was built from (a marker in its bytes) equals the hash of this package's cpp/, so a
// stale build or prebuild is refused before dlopen, never half-used.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const require = createRequire(import.meta.url);

// lib/torch/native.ts and dist/torch/native.js both sit two levels below the package root.
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface NativeBuild {
  sourceHash(): string | null;
  binarySourceHash(file: string): string | null;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, (...args: any[]) => any>;

function locateBinary(): string {
  const explicit = process.env.VLALIGN_NATIVE;
  if (explicit) return path.resolve(explicit);
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  return nodeGypBuild.resolve(packageRoot);
}

const build = require(path.join(packageRoot, 'scripts/native-build.cjs')) as NativeBuild;

/** Throws unless `file` was built from this package's cpp/ (read from its bytes, before any dlopen). */
export function verifyBinary(file: string): void {
  const expected = build.sourceHash();
  const actual = build.binarySourceHash(file);
  if (expected !== null && actual !== expected) {
    throw new Error(
      `vlalign: ${file} was built from other sources (hash ${actual ?? 'none'}) than this package's cpp/ ` +
        `(hash ${expected}); rebuild it with \`npm run build:native\``,
    );
  }
}

function findBinary(): string {
  try {
    return locateBinary();
  } catch (cause) {
    throw new Error('vlalign: no native binary found; build it with `npm run build:native`', { cause });
  }
}

/** The path of the addon binary this process loaded (VLALIGN_NATIVE, else a source build, else the prebuild). */
export const nativeBinaryPath: string = findBinary();

function loadAddon(file: string): NativeAddon {
  verifyBinary(file);
  return require(file) as NativeAddon;
}

export const native: NativeAddon = loadAddon(nativeBinaryPath);
