// Image preprocessing: decoding to RGB, Pillow-exact BICUBIC, and the Qwen2-VL and InternVL
// pixel pipelines.
export { loadImage, rgbImage, type RgbImage, type LoadImageOptions } from './decode.js';
export { resizeBicubic, type ResizeOptions } from './resize.js';
export {
  smartResize,
  roundHalfEven,
  type SmartResizeOptions,
  QWEN2_VL_IMAGE_DEFAULTS,
  qwen2VlImageOptionsFromConfig,
  type Qwen2VlImageOptions,
  qwen2VlPixelValues,
  type Qwen2VlPixelValues,
} from './qwen2_vl.js';
export {
  IMAGENET_MEAN,
  IMAGENET_STD,
  candidateGrids,
  closestAspectRatio,
  tileGrid,
  dynamicPreprocess,
  internvlPixelValues,
  type DynamicPreprocessOptions,
  type TileGrid,
  type InternvlPixelOptions,
  type InternvlPixelValues,
} from './internvl.js';
