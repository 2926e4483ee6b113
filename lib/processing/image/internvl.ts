// InternVL's dynamic tiling and pixel values (OpenGVLab/InternVL 2410d1d, internvl_chat/internvl/
// train/dataset.py: find_closest_aspect_ratio, dynamic_preprocess, build_transform(is_train=False)):
// pick a (columns, rows) grid whose aspect ratio is closest to the image's, resize to it with
// Pillow's BICUBIC, cut imageSize-square tiles row-major, append a thumbnail when there is more
// than one tile; per tile ToTensor (float32(u8) / 255) then ImageNet Normalize in float32.
import * as torch from '../../torch/index.js';
import type { Tensor } from '../../torch/index.js';
import { rgbImage, type RgbImage } from './decode.js';
import { uninitialisedFloat32 } from './normalize.js';
import { normalizeTiles } from './tile_normalize.js';
import { resizeBicubic } from './resize.js';

export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];

/** Options of dynamicPreprocess (dataset.py's defaults for training: 1, 12, 448, thumbnail). */
export interface DynamicPreprocessOptions {
  minNum?: number;
  maxNum?: number;
  imageSize?: number;
  useThumbnail?: boolean;
}

/** A tiling grid: `columns` tiles across (InternVL's i), `rows` down (j). */
export interface TileGrid {
  columns: number;
  rows: number;
}

function positiveInteger(where: string, name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${where}: expected a positive integer for ${name} but received ${String(value)}`);
  }
  return value;
}

/**
 * Every (columns, rows) with minNum <= columns * rows <= maxNum, ordered by tile count (stable;
 * within a count by columns then rows; the order within a count never decides the winner).
 */
export function candidateGrids(minNum: number, maxNum: number): TileGrid[] {
  const grids: TileGrid[] = [];
  for (let columns = 1; columns <= maxNum; columns++) {
    for (let rows = 1; columns * rows <= maxNum; rows++) {
      if (columns * rows >= minNum) grids.push({ columns, rows });
    }
  }
  return grids.sort((a, b) => a.columns * a.rows - b.columns * b.rows);
}

/**
 * find_closest_aspect_ratio: the candidate with the smallest |aspect - columns/rows|; on an exact
 * tie a later candidate wins only if the image has more than half the pixels of its canvas
 * (width * height > 0.5 * imageSize^2 * columns * rows). Starts from (1, 1) as the reference does.
 */
export function closestAspectRatio(
  aspectRatio: number,
  candidates: readonly TileGrid[],
  width: number,
  height: number,
  imageSize: number,
): TileGrid {
  let bestDiff = Number.POSITIVE_INFINITY;
  let best: TileGrid = { columns: 1, rows: 1 };
  const area = width * height;
  for (const grid of candidates) {
    const diff = Math.abs(aspectRatio - grid.columns / grid.rows);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = grid;
    } else if (diff === bestDiff && area > 0.5 * imageSize * imageSize * grid.columns * grid.rows) {
      best = grid;
    }
  }
  return { ...best };
}

/** The grid dynamic_preprocess picks for a width x height image. */
export function tileGrid(
  width: number,
  height: number,
  options: { minNum?: number; maxNum?: number; imageSize?: number } = {},
): TileGrid {
  const where = 'tileGrid';
  positiveInteger(where, 'width', width);
  positiveInteger(where, 'height', height);
  const minNum = positiveInteger(where, 'minNum', options.minNum ?? 1);
  const maxNum = positiveInteger(where, 'maxNum', options.maxNum ?? 12);
  const imageSize = positiveInteger(where, 'imageSize', options.imageSize ?? 448);
  if (minNum > maxNum) throw new RangeError(`${where}: minNum ${minNum} is larger than maxNum ${maxNum}`);
  return closestAspectRatio(width / height, candidateGrids(minNum, maxNum), width, height, imageSize);
}

/** The size x size square at tile (column, row) of an image, copied. */
function crop(img: RgbImage, column: number, row: number, size: number): RgbImage {
  const out = new Uint8Array(size * size * 3);
  const stride = img.width * 3;
  const x0 = column * size * 3;
  for (let y = 0; y < size; y++) {
    const s = (row * size + y) * stride + x0;
    out.set(img.data.subarray(s, s + size * 3), y * size * 3);
  }
  return rgbImage(size, size, out);
}

/** dynamic_preprocess: the tiles (row-major), then the thumbnail when enabled and tiles > 1. */
export function dynamicPreprocess(img: RgbImage, options: DynamicPreprocessOptions = {}): RgbImage[] {
  rgbImage(img.width, img.height, img.data);
  const imageSize = options.imageSize ?? 448;
  const grid = tileGrid(img.width, img.height, { ...options, imageSize });
  const resized = resizeBicubic(img, imageSize * grid.columns, imageSize * grid.rows);
  const tiles: RgbImage[] = [];
  for (let row = 0; row < grid.rows; row++) {
    for (let column = 0; column < grid.columns; column++) tiles.push(crop(resized, column, row, imageSize));
  }
  if ((options.useThumbnail ?? true) && tiles.length !== 1) tiles.push(resizeBicubic(img, imageSize, imageSize));
  return tiles;
}

/** Options of internvlPixelValues. */
export interface InternvlPixelOptions extends DynamicPreprocessOptions {
  /**
   * The tile budget of a row with several images (InternVL's max_dynamic_patch); default maxNum.
   * A single image may use maxNum tiles; with n > 1 images each gets max(1, floor(budget / n)),
   * the rule of internvl_chat_finetune.py / internvl_chat_mpo.py's multi-image get_item
   * (`max_num=max(1, self.max_dynamic_patch // num_image)`).
   */
  maxTilesPerRow?: number;
  /**
   * Each image's own max_num, already shared out (a record's `max(1, max_dynamic_patch // n)`, see
   * lib/data/records.ts maxTiles); when given, maxNum and maxTilesPerRow are not consulted.
   */
  maxTilesPerImage?: number;
}

/** Pixel values of one row's images: all tiles in order, and how many tiles each image gave. */
export interface InternvlPixelValues {
  /** [tiles, 3, imageSize, imageSize] float32. */
  pixelValues: Tensor;
  tilesPerImage: number[];
}

// max_num of each of a row's `count` images.
function tilesPerImageBudget(count: number, options: InternvlPixelOptions): number {
  const where = 'internvlPixelValues';
  if (options.maxTilesPerImage !== undefined)
    return positiveInteger(where, 'maxTilesPerImage', options.maxTilesPerImage);
  const maxNum = positiveInteger(where, 'maxNum', options.maxNum ?? 12);
  const budget = positiveInteger(where, 'maxTilesPerRow', options.maxTilesPerRow ?? maxNum);
  return count === 1 ? maxNum : Math.max(1, Math.floor(budget / count));
}

/** InternVL's pixel_values for the images of one sample (row), tiles concatenated in order. */
export function internvlPixelValues(images: RgbImage[], options: InternvlPixelOptions = {}): InternvlPixelValues {
  if (!Array.isArray(images) || images.length === 0) {
    throw new RangeError('internvlPixelValues: expected a non-empty array of images');
  }
  const perImage = tilesPerImageBudget(images.length, options);
  const size = options.imageSize ?? 448;
  const tiles = images.map((img) => dynamicPreprocess(img, { ...options, maxNum: perImage }));
  const count = tiles.reduce((n, t) => n + t.length, 0);
  const out = uninitialisedFloat32(count * 3 * size * size);
  normalizeTiles(tiles.flat(), out, IMAGENET_MEAN, IMAGENET_STD);
  return {
    pixelValues: torch.frombuffer(out, { dtype: 'float32', shape: [count, 3, size, size] }),
    tilesPerImage: tiles.map((t) => t.length),
  };
}
