// MIA-DPO's three multi-image forms built from one single-image row (rl_data.md section 5; facts
// from Liuziyu77/MIA-DPO gen_data/gen_instruction: mix_data, make_data_pingtu_v1 and
// make_data_pics_in_pics):
// - sequence: the row's image among 1-4 companions, shuffled; `Image1:<image>\n...In Image{k}, q`;
// - grid: 2/3/4/6/9 images, each aspect-fitted into a white 448x448 cell at its top-left, cells 40
//   px apart with a 40 px band above each row holding the black "Image{i}" label (36 px, 20 px in
//   from the cell's left edge); one `<image>` and `In Image{k}, q`;
// - pic-in-pic: the row's image scaled to 0.7 of a companion (aspect kept) pasted at its centre;
//   one `<image>` and a random "central image" phrase.
// Also the noise MIA-DPO adds to the picture the model sees while rejected answers are selected
// (make_data_ping.py / make_data_pip.py); the saved pictures stay clean.
import sharp from 'sharp';
import type { RgbImage } from '../processing/image/index.js';
import type { PythonRandom } from './python_random.js';

export const CELL = 448;
export const MARGIN = 40;
/** PIL's draw.text(xy) puts the text's top at xy; an SVG text sits on its baseline: Arial's ascent at 36 px. */
const LABEL_SIZE = 36;
const LABEL_ASCENT = 33;
export const PIP_SCALE = 0.7;
export const SEQUENCE_COUNTS = [2, 3, 4, 5] as const;
export const GRID_COUNTS = [2, 3, 4, 6, 9] as const;
const GRID_COLUMNS: Record<number, number> = { 2: 2, 3: 3, 4: 2, 6: 3, 9: 3 };

export interface GridCell {
  /** Top-left corner of the 448x448 cell. */
  x: number;
  y: number;
  /** "Image{i}", i from 1 in row-major order. */
  label: string;
  /** Top-left of the label text (PIL coordinates). */
  labelX: number;
  labelY: number;
}

export interface GridLayout {
  rows: number;
  cols: number;
  width: number;
  height: number;
  cells: GridCell[];
}

/** combine_images_with_labels' canvas and positions for n images. */
export function gridLayout(n: number): GridLayout {
  const cols = GRID_COLUMNS[n];
  if (cols === undefined) throw new RangeError(`a grid has ${GRID_COUNTS.join(', ')} images, not ${n}`);
  const rows = n / cols;
  const cells: GridCell[] = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const x = j * (CELL + MARGIN);
      const y = i * (CELL + MARGIN) + MARGIN;
      cells.push({ x, y, label: `Image${i * cols + j + 1}`, labelX: x + 20, labelY: y - 40 });
    }
  }
  return { rows, cols, width: cols * CELL + (cols - 1) * MARGIN, height: rows * (CELL + MARGIN), cells };
}

/** resize_and_pad's size: the long side to 448, the other int()-truncated from the aspect ratio. */
export function cellFit(width: number, height: number): { width: number; height: number } {
  const ratio = width / height;
  if (ratio > 1) return { width: CELL, height: Math.trunc(CELL / ratio) };
  return { width: Math.trunc(CELL * ratio), height: CELL };
}

/** resize_and_paste_image's placement of an inner picture (w x h) in an outer one (W x H). */
export function pipPlacement(
  inner: { width: number; height: number },
  outer: { width: number; height: number },
): { width: number; height: number; left: number; top: number } {
  const aspect = inner.width / inner.height;
  let width: number;
  let height: number;
  if ((outer.width * PIP_SCALE) / aspect <= outer.height * PIP_SCALE) {
    width = Math.trunc(outer.width * PIP_SCALE);
    height = Math.trunc(width / aspect);
  } else {
    height = Math.trunc(outer.height * PIP_SCALE);
    width = Math.trunc(height * aspect);
  }
  return {
    width,
    height,
    left: Math.floor((outer.width - width) / 2),
    top: Math.floor((outer.height - height) / 2),
  };
}

const rgb = (file: string) => sharp(file).rotate().removeAlpha().toColourspace('srgb');

/** The grid collage of `files` (row-major order), written as PNG to `output`. */
export async function writeGrid(files: readonly string[], output: string): Promise<GridLayout> {
  const layout = gridLayout(files.length);
  const tiles = await Promise.all(
    files.map(async (file, i) => {
      const meta = await rgb(file).toBuffer({ resolveWithObject: true });
      const fit = cellFit(meta.info.width, meta.info.height);
      const input = await sharp(meta.data)
        .resize(fit.width, fit.height, { fit: 'fill', kernel: 'lanczos3' })
        .png()
        .toBuffer();
      return { input, left: layout.cells[i]!.x, top: layout.cells[i]!.y };
    }),
  );
  const labels = layout.cells
    .map(
      (c) =>
        `<text x="${c.labelX}" y="${c.labelY + LABEL_ASCENT}" font-family="Arial, Liberation Sans, DejaVu Sans, sans-serif" font-size="${LABEL_SIZE}" fill="#000">${c.label}</text>`,
    )
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}">${labels}</svg>`;
  const canvas = await sharp({
    create: { width: layout.width, height: layout.height, channels: 3, background: '#ffffff' },
  })
    .composite([...tiles, { input: Buffer.from(svg), left: 0, top: 0 }])
    .png()
    .toBuffer();
  await writeRgbPng(canvas, output);
  return layout;
}

/** The target `inner` scaled into the companion `outer` at its centre, written as PNG to `output`. */
export async function writePictureInPicture(inner: string, outer: string, output: string): Promise<void> {
  const [a, b] = await Promise.all([
    rgb(inner).toBuffer({ resolveWithObject: true }),
    rgb(outer).toBuffer({ resolveWithObject: true }),
  ]);
  const place = pipPlacement(a.info, b.info);
  // PIL's Image.resize default for RGB is bicubic (a = -0.5): sharp's cubic kernel.
  const small = await sharp(a.data)
    .resize(place.width, place.height, { fit: 'fill', kernel: 'cubic' })
    .png()
    .toBuffer();
  const pasted = await sharp(b.data)
    .composite([{ input: small, left: place.left, top: place.top }])
    .png()
    .toBuffer();
  await writeRgbPng(pasted, output);
}

// A composite comes back with an alpha channel; the saved pictures are RGB as PIL saves them.
async function writeRgbPng(png: Buffer, output: string): Promise<void> {
  await sharp(png).removeAlpha().png().toFile(output);
}

// ---- prompts --------------------------------------------------------------------------------------

/** The question without its image tags (Python's replace of every `<image>\n`, then every `<image>`). */
export function stripImageTags(question: string): string {
  return question.replaceAll('<image>\n', '').replaceAll('<image>', '');
}

const lowerFirst = (text: string) => text.charAt(0).toLowerCase() + text.slice(1);

/** `Image1:<image>\nImage2:<image>\n...In Image{k}, ` + the question with a lowercase first letter. */
export function sequencePrompt(question: string, count: number, target: number): string {
  const tags = Array.from({ length: count }, (_, i) => `Image${i + 1}:<image>\n`).join('');
  return `${tags}In Image${target}, ${lowerFirst(stripImageTags(question))}`;
}

/** `<image>\nIn Image{k}, ` + the question with a lowercase first letter. */
export function gridPrompt(question: string, target: number): string {
  return `<image>\nIn Image${target}, ${lowerFirst(stripImageTags(question))}`;
}

/** `<image>\n{phrase}, ` + the question with a lowercase first letter. */
export function pipPrompt(question: string, phrase: string): string {
  return `<image>\n${phrase}, ${lowerFirst(stripImageTags(question))}`;
}

/** make_data_pics_in_pics' meta_prompt: the phrases that point at the central picture. */
export const PIP_PHRASES = [
  'For the image in the center',
  'Regarding the central image',
  'Concerning the middle image',
  'Pertaining to the central picture',
  'With respect to the image in the middle',
  'As for the image at the center',
  'Focusing on the central image',
  'In relation to the middle picture',
  'When it comes to the central image',
  'With regards to the image in the center',
  'For the image located in the center',
  'About the central image',
  'Referring to the image in the middle',
  'In terms of the central picture',
  'For the middle picture',
  'Regarding the image in the middle',
  'Concerning the image at the center',
  'Pertaining to the image in the center',
  'With respect to the central picture',
  'As for the image in the middle',
  'Focusing on the middle image',
  'In relation to the central image',
  'When it comes to the image in the center',
  'With regards to the central picture',
  'For the picture in the center',
  'Regarding the middle image',
  'Concerning the picture in the middle',
  'Pertaining to the middle image',
  'With respect to the image at the center',
  'As for the central picture',
  'Focusing on the image in the center',
  'In relation to the image in the middle',
  'When it comes to the central picture',
  'With regards to the middle image',
  'For the central picture',
  'Regarding the image in the center',
  'Concerning the image in the middle',
  'Pertaining to the central image',
  'With respect to the middle picture',
  'As for the picture in the center',
  'Focusing on the central picture',
  'In relation to the middle image',
  'When it comes to the image at the center',
  'With regards to the image in the middle',
  'For the image at the center',
  'Regarding the central picture',
  'Concerning the central image',
  'Pertaining to the picture in the center',
  'With respect to the central image',
  'As for the image in the center',
  'Regarding the central subplot',
  'Concerning the central subplot',
  'Pertaining to the central subplot',
  'With respect to the central subplot',
  'As for the central subplot',
  'Focusing on the central subplot',
  'In relation to the central subplot',
  'When it comes to the central subplot',
  'With regards to the central subplot',
  'For the subplot in the center',
  'About the central subplot',
  'Referring to the central subplot',
  'In terms of the central subplot',
  'For the subplot at the center',
  'Regarding the subplot in the center',
  'Concerning the subplot in the middle',
  'Pertaining to the subplot in the center',
  'With respect to the subplot at the center',
  'As for the subplot in the middle',
  'Focusing on the subplot at the center',
  'In relation to the subplot in the middle',
  'When it comes to the subplot in the center',
  'With regards to the subplot at the center',
  'For the subplot located in the center',
  'Regarding the middle subplot',
  'Concerning the subplot in the center',
  'Pertaining to the middle subplot',
  'With respect to the subplot in the middle',
  'As for the middle subplot',
  'Focusing on the middle subplot',
  'In relation to the middle subplot',
  'When it comes to the middle subplot',
  'With regards to the middle subplot',
  'For the central plot',
  'Regarding the plot in the middle',
  'Concerning the plot at the center',
  'Pertaining to the central plot',
  'With respect to the central plot',
  'As for the plot in the center',
  'Focusing on the plot in the middle',
  'In relation to the plot at the center',
  'When it comes to the plot in the middle',
  'With regards to the central plot',
] as const;

/** contains_bbox: a `[x, y, x, y]` box of numbers (MIA-DPO skips such coco rows for grid and pic-in-pic). */
export function containsBox(text: string): boolean {
  return /\[\s*\d+(\.\d+)?,\s*\d+(\.\d+)?,\s*\d+(\.\d+)?,\s*\d+(\.\d+)?\s*\]/.test(text);
}

// ---- noise the selecting model sees ---------------------------------------------------------------

/** A decoded picture as the processors take it. */
export async function decodeRgb(file: string): Promise<RgbImage> {
  const { data, info } = await rgb(file).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** Python's random.random() (53 bits from two draws) on a PythonRandom. */
function random01(rng: PythonRandom): number {
  const a = rng.uint32() >>> 5;
  const b = rng.uint32() >>> 6;
  return (a * 67108864 + b) / 9007199254740992;
}

/** Standard normal draws by Box-Muller (the values differ from numpy's; the distribution is the same). */
function gaussian(rng: PythonRandom): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = 1 - random01(rng);
    const r = Math.sqrt(-2 * Math.log(u));
    const t = 2 * Math.PI * random01(rng);
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}

/**
 * add_gaussian_noise_to_region (grid, σ = 225): noise added in float, clipped to [0, 255] and truncated to uint8 on
 * region `index` (from 1, row-major) of a rows x cols split of the whole picture (H // rows by
 * W // cols, margins included, as MIA-DPO splits it).
 */
export function noiseGridRegion(
  image: RgbImage,
  rows: number,
  cols: number,
  index: number,
  rng: PythonRandom,
  std = 225,
): RgbImage {
  const out = new Uint8Array(image.data);
  const h = Math.floor(image.height / rows);
  const w = Math.floor(image.width / cols);
  const y0 = Math.floor((index - 1) / cols) * h;
  const x0 = ((index - 1) % cols) * w;
  const normal = gaussian(rng);
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      for (let c = 0; c < 3; c++) {
        const at = (y * image.width + x) * 3 + c;
        out[at] = Math.trunc(Math.min(255, Math.max(0, out[at]! + normal() * std))); // np.clip then astype(uint8)
      }
    }
  }
  return { width: image.width, height: image.height, data: out };
}

/**
 * add_gaussian_noise (pic-in-pic, σ = 49) with its uint8 arithmetic: the noise is truncated and
 * cast to uint8 (a negative draw wraps to 256 + n) and added modulo 256, so the clip never acts.
 */
export function noiseWrapped(image: RgbImage, rng: PythonRandom, std = 49): RgbImage {
  const out = new Uint8Array(image.data.length);
  const normal = gaussian(rng);
  for (let i = 0; i < out.length; i++) {
    const n = Math.trunc(normal() * std);
    out[i] = (image.data[i]! + (((n % 256) + 256) % 256)) % 256;
  }
  return { width: image.width, height: image.height, data: out };
}
