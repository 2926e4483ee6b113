// loadImage against Pillow 9.4's decode (Image.open + ImageOps.exif_transpose + convert('RGB')) on
// images Pillow writes: PNG in every colour mode, JPEG (colour, grey, EXIF-rotated), WebP
// (lossless, lossy, alpha) and GIF; and the error messages.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImage } from '../../../lib/processing/image/index.js';
import { imagePath, rng, runPython } from './helpers.js';

// Writes the test images into argv dir and, per image, name.rgb (Pillow's RGB bytes) and sizes.
const PY_MAKE = `
import json, sys, numpy as np
from PIL import Image, ImageOps
d = sys.argv[1]
rng = np.random.default_rng(0)
h, w = 61, 83
yy, xx = np.mgrid[0:h, 0:w]
smooth = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1) % 256
photo = np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
alpha = rng.integers(0, 256, (h, w), dtype=np.uint8); alpha[:5] = 0
rgb = Image.fromarray(photo)
rgba = Image.fromarray(np.dstack([photo, alpha]), 'RGBA')
grey = rgb.convert('L')
files = {}
def save(name, im, **kw):
    im.save(f"{d}/{name}", **kw); files[name] = True
save('rgb.png', rgb); save('rgba.png', rgba); save('l.png', grey)
save('la.png', Image.merge('LA', [grey, Image.fromarray(alpha)]))
save('p.png', rgb.quantize(64))
p = rgb.quantize(16); p.info['transparency'] = 3; save('p_trns.png', p, transparency=3)
save('rgb.jpg', rgb, quality=90); save('rgb444.jpg', rgb, quality=95, subsampling=0); save('l.jpg', grey, quality=90)
for o in (2, 3, 6, 8):
    ex = Image.Exif(); ex[0x0112] = o
    save(f'exif{o}.jpg', rgb, quality=90, exif=ex.tobytes())
save('lossless.webp', rgb, lossless=True); save('rgba.webp', rgba, lossless=True); save('lossy.webp', rgb, quality=80)
frames = [rgb.quantize(32), Image.fromarray(255 - photo).quantize(32)]
frames[0].save(f"{d}/anim.gif", save_all=True, append_images=frames[1:]); files['anim.gif'] = True
for name in files:
    im = ImageOps.exif_transpose(Image.open(f"{d}/{name}")).convert('RGB')
    open(f"{d}/{name}.rgb", 'wb').write(im.tobytes()); files[name] = list(im.size)
print(json.dumps(files))
`;

let dir = '';
let sizes: Record<string, [number, number]> = {};

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-decode-'));
  const script = `import sys; sys.argv = ['-', ${JSON.stringify(dir)}]\n${PY_MAKE}`;
  sizes = JSON.parse(runPython(script).toString());
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Largest absolute difference between our decode of `name` and Pillow's. */
async function maxDiff(name: string, source: 'path' | 'buffer' = 'path'): Promise<number> {
  const file = path.join(dir, name);
  const img = await loadImage(source === 'path' ? file : fs.readFileSync(file));
  expect([img.width, img.height], name).toEqual(sizes[name]);
  const expected = fs.readFileSync(`${file}.rgb`);
  expect(img.data.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(img.data[i]! - expected[i]!));
  return worst;
}

describe('loadImage', () => {
  it('decodes PNG in every mode as convert("RGB") does: alpha dropped, grey replicated, palette expanded', async () => {
    for (const name of ['rgb.png', 'rgba.png', 'l.png', 'la.png', 'p.png', 'p_trns.png'])
      expect(await maxDiff(name), name).toBe(0);
    expect(await maxDiff('rgba.png', 'buffer')).toBe(0);
  });

  it('decodes the golden PNGs', async () => {
    const img = await loadImage(imagePath('img_777x333.png'));
    expect([img.width, img.height, img.data.length]).toEqual([777, 333, 777 * 333 * 3]);
  });

  it('decodes lossless and lossy WebP and the first GIF frame', async () => {
    expect(await maxDiff('lossless.webp')).toBe(0);
    expect(await maxDiff('rgba.webp')).toBe(0);
    expect(await maxDiff('anim.gif')).toBe(0);
    // Lossy too: sharp's bundled libwebp 1.6 and Debian's under Pillow give the same RGB here.
    expect(await maxDiff('lossy.webp')).toBe(0);
  });

  // sharp's mozjpeg and Debian's libjpeg-turbo 2.1 (Pillow) agree bit for bit on these (islow DCT,
  // fancy upsampling); other decoder builds may differ by 1.
  it('decodes JPEG as Pillow does and applies EXIF orientation', async () => {
    for (const name of ['rgb.jpg', 'rgb444.jpg', 'l.jpg', 'exif2.jpg', 'exif3.jpg', 'exif6.jpg', 'exif8.jpg']) {
      expect(await maxDiff(name), name).toBe(0);
    }
    expect(sizes['exif6.jpg']).toEqual([61, 83]); // rotated: width and height swapped
  });

  it('decodes PNGs written with every row filter, interlaced and 16-bit ones as sharp does', async () => {
    // libspng/libpng adaptive filtering picks all five filter types on this mix of noise and ramps.
    const random = rng(9);
    const [w, h] = [67, 45];
    const rgba = new Uint8Array(w * h * 4);
    for (let i = 0; i < rgba.length; i++) rgba[i] = i % 17 === 0 ? random() * 256 : (i >> 3) + ((i / (w * 4)) | 0) * 5;
    const rgb = await sharp(rgba, { raw: { width: w, height: h, channels: 4 } })
      .removeAlpha()
      .raw()
      .toBuffer();
    for (const [channels, options] of [
      [3, { adaptiveFiltering: true }],
      [4, { adaptiveFiltering: true }],
      [3, { progressive: true }],
      [1, { adaptiveFiltering: true }],
    ] as const) {
      let pipeline = sharp(rgba, { raw: { width: w, height: h, channels: 4 } });
      pipeline =
        channels === 3 ? pipeline.removeAlpha() : channels === 1 ? pipeline.removeAlpha().greyscale() : pipeline;
      const png = await pipeline.png({ ...options, compressionLevel: 6 }).toBuffer();
      const expected = channels === 1 ? await sharp(png).toColourspace('srgb').raw().toBuffer() : rgb;
      const ours = await loadImage(png);
      expect(
        Buffer.from(ours.data).equals(channels === 1 ? expected : rgb),
        `${channels} channels ${JSON.stringify(options)}`,
      ).toBe(true);
    }
    const deep = await sharp(rgba, { raw: { width: w, height: h, channels: 4 } })
      .removeAlpha()
      .toColourspace('rgb16')
      .png()
      .toBuffer();
    expect(Buffer.from((await loadImage(deep)).data).equals(rgb)).toBe(true); // 16-bit: sharp keeps the high byte
  });

  it('rejects a PNG whose chunk CRC or image data is corrupt', async () => {
    const png = Buffer.from(fs.readFileSync(path.join(dir, 'rgb.png')));
    const broken = Buffer.from(png);
    broken[60] = broken[60]! ^ 0xff; // inside the IDAT data (the chunk starts at byte 33)
    await expect(loadImage(broken)).rejects.toThrow(
      /loadImage: cannot decode buffer: PNG IDAT chunk fails its CRC check/,
    );
    const truncated = png.subarray(0, png.length - 40);
    await expect(loadImage(truncated)).rejects.toThrow(/loadImage: cannot decode buffer: PNG is truncated/);
    const empty = Buffer.concat([
      png.subarray(0, 8),
      chunk('IHDR', Buffer.from([0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0])),
      chunk('IDAT', zlib.deflateSync(Buffer.alloc(3))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    await expect(loadImage(empty)).rejects.toThrow(/PNG image data is truncated \(3 of 14 bytes\)/);
  });

  it('names the file or buffer and the reason on failure', async () => {
    await expect(loadImage(path.join(dir, 'missing.png'))).rejects.toThrow(
      /loadImage: cannot decode .*missing\.png: .*missing/,
    );
    const corrupt = fs.readFileSync(path.join(dir, 'rgb.png')).subarray(0, 200);
    await expect(loadImage(corrupt)).rejects.toThrow(/loadImage: cannot decode buffer: /);
    await expect(loadImage(new Uint8Array([1, 2, 3, 4]))).rejects.toThrow(
      /loadImage: cannot decode buffer: .*unsupported image format/,
    );
    await expect(loadImage(path.join(dir, 'rgb.png'), { minSize: 62 })).rejects.toThrow(
      /rgb\.png is 83x61 pixels, smaller than minSize 62/,
    );
    expect((await loadImage(path.join(dir, 'rgb.png'), { minSize: 61 })).height).toBe(61);
    await expect(loadImage(path.join(dir, 'rgb.png'), { minSize: 0 })).rejects.toThrow(/positive integer for minSize/);
    await expect(loadImage(42 as unknown as string)).rejects.toThrow(/file path or a Uint8Array/);
  });
});

/** A PNG chunk with its CRC. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(data, zlib.crc32(Buffer.from(type, 'latin1'))));
  return Buffer.concat([head, data, crc]);
}
