// Image files: the recipe data's PNG and JPEG pictures with bytes flipped, cut or appended, and
// their declared sizes forged (PNG IHDR with a valid CRC, JPEG SOF), decoded with loadImage. A clean
// error names the file.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { processing } from '../../../dist/index.js';
import { mutateBytes } from '../rng.mjs';

const SIDES = [0, 1, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 100000, 30000];

// Width and height in IHDR (bytes 16-23), CRC over type + data recomputed so decoders read them.
function forgePng(rng, bytes) {
  const out = Buffer.from(bytes);
  out.writeUInt32BE(rng.pick(SIDES), 16);
  out.writeUInt32BE(rng.pick(SIDES), 20);
  if (rng.chance(0.3)) out[24] = rng.pick([1, 2, 4, 8, 16, 32]); // bit depth
  if (rng.chance(0.3)) out[25] = rng.pick([0, 1, 2, 3, 4, 6, 7]); // colour type
  out.writeUInt32BE(zlib.crc32(out.subarray(12, 29)), 29);
  return out;
}

// Height and width of the first SOF marker (baseline C0, progressive C2).
function forgeJpeg(rng, bytes) {
  const out = Buffer.from(bytes);
  for (let i = 2; i + 9 < out.length; i++) {
    if (out[i] === 0xff && (out[i + 1] === 0xc0 || out[i + 1] === 0xc2)) {
      out.writeUInt16BE(rng.pick([0, 1, 65535, 30000]), i + 5);
      out.writeUInt16BE(rng.pick([0, 1, 65535, 30000]), i + 7);
      return out;
    }
  }
  return out;
}

export async function make(rng, { corpus, dir }) {
  const images = path.join(corpus, 'mmpr', 'images', 'shapes');
  const seed = path.join(images, rng.pick(fs.readdirSync(images).sort()));
  const png = seed.endsWith('.png');
  const original = fs.readFileSync(seed);
  const forge = rng.chance(0.35);
  const bytes = forge ? (png ? forgePng : forgeJpeg)(rng, original) : mutateBytes(rng, original);
  // Sometimes the wrong extension: decoders go by content, and the error still names the file.
  const file = path.join(dir, `image${rng.chance(0.8) ? path.extname(seed) : '.webp'}`);
  fs.writeFileSync(file, bytes);
  return {
    what: `${path.basename(seed)} ${forge ? 'with a forged size' : 'mutated'} (${bytes.length} bytes)`,
    names: [file],
    run: () => processing.image.loadImage(file, { minSize: rng.pick([1, 1, 1, 28]) }),
  };
}
