// Image preprocessing throughput: vlalign's image pipelines against PIL + numpy doing the same
// steps (bench/peers/preprocess.py), per image, in images per second.
//
//   node bench/preprocess.mjs [--quick] [--threads 2] [--reps 7] [--min-seconds 0.25]
//
// (a) InternVL tiling: decode + dynamic_preprocess (max_num 12, 448, thumbnail) + ToTensor and
//     Normalize -> pixel_values [T, 3, 448, 448] float32.
// (b) Qwen2-VL patching: decode + smart_resize (class defaults) + BICUBIC resize + rescale,
//     normalize, temporal repeat, patch flattening -> pixel_values [patches, 1176] float32.
// Inputs: the 4 golden PNGs and two synthetic photos written as JPEG (1920x1080, 1024x768) into a
// temporary directory. Every iteration starts from the file path. A rep runs one image enough
// times to last about --min-seconds, after a warm-up. The peer runs as a server so that its reps
// and ours alternate (the host is shared and its load drifts; alternating exposes both sides to
// the same load); times are medians of the reps. Both sides get the same thread budget:
// OMP_NUM_THREADS and libvips/sharp concurrency = --threads (PIL and numpy run these steps on one
// thread, and so does vlalign's JavaScript). The outputs' sha256 are compared with the peer's.
// Prints a table, then one JSON line, last on stdout.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

import { processing, torch } from 'vlalign';

const { internvlPixelValues, loadImage, qwen2VlPixelValues } = processing.image;
import { intFlag, median, parseFlags, printJsonLine, sig, table } from './lib/report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const flags = parseFlags();
const quick = flags.has('quick');
const threads = intFlag(flags, 'threads', 2);
const reps = intFlag(flags, 'reps', quick ? 3 : 7);
const minSeconds = Number(flags.get('min-seconds') ?? (quick ? 0.1 : 0.25));
process.env.OMP_NUM_THREADS = String(threads);
torch.setNumThreads(threads);
sharp.concurrency(threads);

/** A deterministic photo-like RGB image: smooth colour fields plus noise, as JPEG. */
async function syntheticJpeg(file, width, height, seed) {
  const data = Buffer.alloc(width * height * 3);
  let state = seed >>> 0;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const noise = (state >>> 24) / 16 - 8;
      data[i++] = 128 + 100 * Math.sin(x / 97 + y / 211) + noise;
      data[i++] = 128 + 90 * Math.cos(x / 53 - y / 131) + noise;
      data[i++] = (x * y) / (width * 6) + 40 + noise;
    }
  }
  await sharp(data, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toFile(file);
}

/** The Python peer as a line-protocol server: ask(...fields) resolves with its JSON reply. */
function startPeer() {
  const python = process.env.PYTHON || '/usr/bin/python3';
  const child = spawn(python, [path.join(here, 'peers/preprocess.py'), '--serve'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done)
      throw new Error(
        `${python} bench/peers/preprocess.py exited early (set PYTHON to an interpreter with numpy and PIL)`,
      );
    return JSON.parse(value);
  };
  return {
    hello: next(),
    ask: (...fields) => {
      child.stdin.write(`${fields.join('\t')}\n`);
      return next();
    },
    close: () => child.stdin.end(),
  };
}

const pipelines = {
  internvl: async (file) => internvlPixelValues([await loadImage(file)], { maxNum: 12 }).pixelValues,
  qwen2_vl: async (file) => qwen2VlPixelValues([await loadImage(file)]).pixelValues,
};

/** Seconds per image over `iters` runs. */
async function runOurs(run, file, iters) {
  const start = performance.now();
  for (let k = 0; k < iters; k++) (await run(file)).dispose();
  return (performance.now() - start) / 1e3 / iters;
}

/** Warm-up, output check, then `reps` alternating reps of both sides on one image. */
async function compare(peer, name, file) {
  const out = await pipelines[name](file);
  const mine = {
    shape: out.shape,
    sha256: crypto.createHash('sha256').update(new Uint8Array(out.data().buffer)).digest('hex'),
  };
  out.dispose();
  const theirs = await peer.ask('describe', name, file);
  const ourIters = Math.max(1, Math.round(minSeconds / (await runOurs(pipelines[name], file, 1))));
  const peerIters = Math.max(1, Math.round(minSeconds / (await peer.ask('run', name, file, 1)).seconds));
  const ours = [];
  const peers = [];
  for (let r = 0; r < reps; r++) {
    const pair = [
      async () => ours.push(await runOurs(pipelines[name], file, ourIters)),
      async () => peers.push((await peer.ask('run', name, file, peerIters)).seconds),
    ];
    if (r % 2 === 1) pair.reverse();
    for (const step of pair) await step();
  }
  return { shape: mine.shape, identical: mine.sha256 === theirs.sha256, ours, peers };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-bench-preprocess-'));
const peer = startPeer();
try {
  const images = ['img_320x240.png', 'img_70x350.png', 'img_777x333.png', 'img_140x140.png'].map((n) =>
    path.join(here, '../test/fixtures/images', n),
  );
  for (const [w, h, seed] of [
    [1920, 1080, 1],
    [1024, 768, 2],
  ]) {
    const file = path.join(tmp, `photo_${w}x${h}.jpg`);
    await syntheticJpeg(file, w, h, seed);
    images.push(file);
  }
  const peerName = (await peer.hello).peer;
  const rows = [];
  const results = [];
  for (const name of Object.keys(pipelines)) {
    let ourTotal = 0;
    let peerTotal = 0;
    for (const file of images) {
      const c = await compare(peer, name, file);
      const vl = median(c.ours);
      const pil = median(c.peers);
      ourTotal += vl;
      peerTotal += pil;
      rows.push([
        `${name} ${path.basename(file)}`,
        c.shape.join('x'),
        1 / vl,
        1 / pil,
        `${(pil / vl).toFixed(2)}x`,
        c.identical ? 'yes' : 'NO',
      ]);
      results.push({
        pipeline: name,
        image: path.basename(file),
        shape: c.shape,
        images_per_s: sig(1 / vl),
        peer_images_per_s: sig(1 / pil),
        ratio: sig(pil / vl),
        identical: c.identical,
        reps_s: c.ours.map((s) => sig(s)),
        peer_reps_s: c.peers.map((s) => sig(s)),
      });
    }
    const n = images.length;
    rows.push([
      `${name}: all ${n}, one each`,
      '-',
      n / ourTotal,
      n / peerTotal,
      `${(peerTotal / ourTotal).toFixed(2)}x`,
      '-',
    ]);
    results.push({
      pipeline: name,
      image: 'all',
      images_per_s: sig(n / ourTotal),
      peer_images_per_s: sig(n / peerTotal),
      ratio: sig(peerTotal / ourTotal),
    });
  }
  console.log(
    `image preprocessing, images/s (vlalign vs ${peerName}); threads ${threads}, median of ${reps} alternating reps`,
  );
  console.log(
    table(['pipeline / image', 'output', 'vlalign img/s', 'PIL+numpy img/s', 'speed-up', 'same bytes'], rows),
  );
  printJsonLine({ bench: 'preprocess', threads, reps, minSeconds, peer: peerName, results });
} finally {
  peer.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
