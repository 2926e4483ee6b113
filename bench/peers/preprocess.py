"""PIL + numpy peer of bench/preprocess.mjs: the reference image pipelines, timed per image.

(a) InternVL tiling: open + exif_transpose + convert('RGB'), dynamic_preprocess (max_num 12,
    448, thumbnail; InternVL 2410d1d dataset.py), then per tile ToTensor (float32 / 255) and
    ImageNet Normalize in numpy, stacked to [T, 3, 448, 448].
(b) Qwen2-VL patching, as transformers v4.47 Qwen2VLImageProcessor (slow): open + exif_transpose +
    convert('RGB'), to numpy, smart_resize, PIL BICUBIC resize (numpy -> PIL -> numpy, as HF's
    resize does), rescale in float64 then float32, normalize in float32, CHW, temporal repeat and
    the patch transpose to [patches, 1176].
No torch or torchvision: single-threaded Python, as those libraries run these steps.
Standalone: /usr/bin/python3 bench/peers/preprocess.py --images a.png,b.jpg --reps 5
(bench/preprocess.mjs runs it with --serve)
"""
import argparse
import hashlib
import json
import math
import sys
import time

import numpy as np
from PIL import Image, ImageOps

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def open_rgb(path):
    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


def closest_grid(aspect, ratios, width, height, size):
    best_diff, best = float("inf"), (1, 1)
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and width * height > 0.5 * size * size * ratio[0] * ratio[1]:
            best = ratio
    return best


def dynamic_preprocess(image, min_num=1, max_num=12, size=448, use_thumbnail=True):
    w, h = image.size
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1) if min_num <= i * j <= max_num)
    ratios = sorted(ratios, key=lambda x: x[0] * x[1])
    cols, rows = closest_grid(w / h, ratios, w, h, size)
    resized = image.resize((size * cols, size * rows))
    tiles = []
    for k in range(cols * rows):
        box = ((k % cols) * size, (k // cols) * size, (k % cols + 1) * size, (k // cols + 1) * size)
        tiles.append(resized.crop(box))
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((size, size)))
    return tiles


def internvl(path):
    tiles = dynamic_preprocess(open_rgb(path))
    out = []
    for tile in tiles:
        x = np.asarray(tile).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        out.append((x - IMAGENET_MEAN) / IMAGENET_STD)
    return np.stack(out)


def smart_resize(height, width, factor=28, min_pixels=3136, max_pixels=1003520):
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2_vl(path, patch=14, merge=2, temporal=2):
    image = np.array(open_rgb(path))
    h, w = smart_resize(image.shape[0], image.shape[1])
    image = np.array(Image.fromarray(image).resize((w, h), resample=Image.BICUBIC))
    image = (image.astype(np.float64) * (1 / 255)).astype(np.float32)
    image = ((image - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)
    patches = np.tile(image[None], (temporal, 1, 1, 1))
    gh, gw = h // patch, w // patch
    patches = patches.reshape(1, temporal, 3, gh // merge, merge, patch, gw // merge, merge, patch)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(gh * gw, 3 * temporal * patch * patch)


PIPELINES = {"internvl": internvl, "qwen2_vl": qwen2_vl}


def run(pipeline, path, iters):
    """Seconds per image over `iters` runs of one pipeline on one file."""
    fn = PIPELINES[pipeline]
    start = time.perf_counter()
    for _ in range(iters):
        fn(path)
    return (time.perf_counter() - start) / iters


def describe(pipeline, path):
    """Runs once (the warm-up) and returns the output's shape and sha256 of its float32 bytes."""
    out = PIPELINES[pipeline](path)
    return {"shape": list(out.shape), "sha256": hashlib.sha256(np.ascontiguousarray(out, dtype="<f4").tobytes()).hexdigest()}


def serve():
    """Line protocol for bench/preprocess.mjs, which interleaves its reps with ours (the host is
    shared, so load drifts): `describe <pipeline> <path>` or `run <pipeline> <path> <iters>` per
    line, one JSON line back."""
    print(json.dumps({"peer": "PIL " + Image.__version__ + " + numpy " + np.__version__}), flush=True)
    for line in sys.stdin:
        cmd, pipeline, path, *rest = line.split("\t")
        path = path.strip()
        if cmd == "describe":
            reply = describe(pipeline, path)
        else:
            reply = {"seconds": run(pipeline, path, int(rest[0]))}
        print(json.dumps(reply), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--images", default="")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    for pipeline in PIPELINES:
        for path in args.images.split(","):
            info = describe(pipeline, path)
            seconds = sorted(run(pipeline, path, 3) for _ in range(args.reps))
            print(pipeline, path, info["shape"], "%.2f ms" % (seconds[len(seconds) // 2] * 1e3))


if __name__ == "__main__":
    main()
