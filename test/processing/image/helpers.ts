// Shared by the image preprocessing tests: fixture paths, the Python reference (Debian's
// /usr/bin/python3 with Pillow 9.4 and numpy, the goldens' versions) and hashing.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { runPython as runPeer } from '../../peers/python.js';

export const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures');
export const imagePath = (name: string): string => path.join(fixtures, 'images', name);
export const GOLDEN_IMAGES = ['img_320x240.png', 'img_70x350.png', 'img_777x333.png', 'img_140x140.png'] as const;

export function readJson<T = any>(relative: string): T {
  return JSON.parse(fs.readFileSync(path.join(fixtures, relative), 'utf8')) as T;
}

/** sha256 of a float32 array's little-endian bytes (the goldens' sha256_f32le). */
export function sha256F32(values: Float32Array): string {
  return crypto
    .createHash('sha256')
    .update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
    .digest('hex');
}

/** Runs a Python script with `input` on stdin; returns stdout as bytes (a missing peer fails with the fix). */
export const runPython = (script: string, input: string | Uint8Array = ''): Buffer => runPeer(script, { input });

// The same deterministic generator (mulberry32) as the tensor tests, for sizes and pixels.
export { rng } from '../../torch/gradcheck.js';

/** An integer in [lo, hi]. */
export const between = (random: () => number, lo: number, hi: number): number =>
  lo + Math.floor(random() * (hi - lo + 1));
