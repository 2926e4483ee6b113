// resizeBicubic against Pillow 9.4 Image.resize(BICUBIC): the golden resized image, then random
// images and sizes (up, down, one axis only, extreme ratios) resized by Pillow in one child process.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadImage, resizeBicubic, rgbImage } from '../../../lib/processing/image/index.js';
import { loadSafetensors } from '../../../lib/torch/index.js';
import { between, fixtures, imagePath, rng, runPython } from './helpers.js';

// stdin: for each job "w h ow oh" then the w*h*3 source bytes; stdout: the resized bytes.
const PY_RESIZE = `
import sys, numpy as np
from PIL import Image
data = sys.stdin.buffer.read()
header_len = int.from_bytes(data[:4], "little")
jobs = [list(map(int, l.split())) for l in data[4:4 + header_len].decode().splitlines()]
pos = 4 + header_len
out = sys.stdout.buffer
for w, h, ow, oh in jobs:
    a = np.frombuffer(data[pos:pos + w * h * 3], dtype=np.uint8).reshape(h, w, 3)
    pos += w * h * 3
    out.write(np.asarray(Image.fromarray(a).resize((ow, oh), Image.BICUBIC)).tobytes())
`;

function pillowResize(jobs: Array<{ img: ReturnType<typeof rgbImage>; width: number; height: number }>): Buffer[] {
  const header = Buffer.from(jobs.map((j) => `${j.img.width} ${j.img.height} ${j.width} ${j.height}`).join('\n'));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  const out = runPython(PY_RESIZE, Buffer.concat([length, header, ...jobs.map((j) => j.img.data)]));
  let pos = 0;
  return jobs.map((j) => {
    const start = pos;
    pos += j.width * j.height * 3;
    return out.subarray(start, pos);
  });
}

describe('resizeBicubic', () => {
  it('reproduces the golden img_70x350 resize to 56x336 bit for bit', async () => {
    const stored = await loadSafetensors(path.join(fixtures, 'preprocess/qwen2_vl_pixel_values.safetensors'));
    const golden = stored['img_70x350.resized_uint8']!;
    expect(golden.shape).toEqual([336, 56, 3]);
    const expected = Buffer.from(golden.data() as Uint8Array);
    const out = resizeBicubic(await loadImage(imagePath('img_70x350.png')), 56, 336);
    expect(Buffer.from(out.data).equals(expected)).toBe(true);
  });

  it('matches Pillow on random images and sizes', () => {
    const random = rng(3);
    const jobs: Array<{ img: ReturnType<typeof rgbImage>; width: number; height: number }> = [];
    const add = (w: number, h: number, ow: number, oh: number) => {
      const data = new Uint8Array(w * h * 3);
      const smooth = random() < 0.5; // gradients exercise mid-range sums, noise the clamping
      for (let i = 0; i < data.length; i++)
        data[i] = smooth ? (i * 7 + (i / (w * 3)) * 3) & 255 : Math.floor(random() * 256);
      jobs.push({ img: rgbImage(w, h, data), width: ow, height: oh });
    };
    for (let k = 0; k < 160; k++) {
      const w = between(random, 1, 260);
      const h = between(random, 1, 260);
      const kind = k % 4; // both axes, width only, height only, large upscale
      const ow = kind === 2 ? w : between(random, 1, kind === 3 ? 900 : 400);
      const oh = kind === 1 ? h : between(random, 1, kind === 3 ? 900 : 400);
      add(w, h, ow, oh);
    }
    add(1, 1, 300, 2);
    add(2000, 3, 7, 3);
    add(3, 1500, 3, 11);
    add(777, 333, 784, 336);
    add(320, 240, 1344, 896);
    add(448, 448, 448, 448);
    const expected = pillowResize(jobs);
    for (const engine of ['wasm', 'js'] as const) {
      jobs.forEach((j, k) => {
        const out = resizeBicubic(j.img, j.width, j.height, { engine });
        if (!Buffer.from(out.data).equals(expected[k]!)) {
          expect.fail(`${engine}: ${j.img.width}x${j.img.height} -> ${j.width}x${j.height} differs from Pillow`);
        }
      });
    }
  });

  it('gives the same bytes from the SIMD kernels and JavaScript on large photos-like images', () => {
    const random = rng(5);
    const img = rgbImage(1280, 720, new Uint8Array(1280 * 720 * 3));
    for (let i = 0; i < img.data.length; i++) img.data[i] = (((i / 3840) | 0) + (i % 3840) / 7 + random() * 40) & 255;
    for (const [w, h] of [
      [1792, 896],
      [448, 448],
      [1316, 728],
      [2560, 720],
      [1280, 1500],
    ] as const) {
      expect(
        Buffer.from(resizeBicubic(img, w, h, { engine: 'wasm' }).data).equals(
          Buffer.from(resizeBicubic(img, w, h, { engine: 'js' }).data),
        ),
      ).toBe(true);
    }
  });

  it('returns a copy when the size is unchanged and checks its arguments', () => {
    const img = rgbImage(2, 1, new Uint8Array([1, 2, 3, 4, 5, 6]));
    const out = resizeBicubic(img, 2, 1);
    expect(out.data).toEqual(img.data);
    expect(out.data).not.toBe(img.data);
    expect(() => resizeBicubic(img, 0, 1)).toThrow(
      /resizeBicubic: expected a positive integer for width but received 0/,
    );
    expect(() => resizeBicubic(img, 3, 1, { engine: 'gpu' as 'js' })).toThrow(
      /'auto', 'wasm' or 'js' for engine but received gpu/,
    );
    expect(() => rgbImage(2, 2, new Uint8Array(5))).toThrow(/data holds 5 bytes but a 2x2 RGB image needs 12/);
  });
});
