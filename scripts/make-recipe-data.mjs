#!/usr/bin/env node
// Writes the tiny checkpoints and tiny data sets the recipes in examples/recipes/ train on, each in
// the real on-disk format of the project it comes from, so a recipe runs as written in seconds:
//   node scripts/make-recipe-data.mjs [--out examples/recipes/.data] [--seed N]
// Checkpoints: qwen2_vl/, qwen2_5_vl/, internvl/ (tiny random weights, real HF layout + tokenizer).
// Images: small PNG/JPEG pictures of one coloured square, circle or triangle on a plain background,
// so every question has a true answer: `chosen` is right and `rejected` is wrong.
// Data: mmpr/ (InternVL meta.json + jsonl), rlaif-v/ (HF parquet shards, images as {bytes, path}
// structs, one shard snappy and one zstd), vlrlhf/ (plain_dpo.json, vlquery.json, images/), kto/
// (TRL unpaired jsonl), sft/ (TRL messages jsonl), internvl_sft/ (InternVL SFT jsonl); for the GRPO
// recipes, virft_detection/ and virft_classification/ (ViRFT's `save_to_disk` DatasetDicts: Arrow IPC
// stream of {image, problem, solution}) and mmpr_tiny/ (verl RL parquet as InternVL3.5's MMPR-Tiny:
// boxed-answer rows and the verl-internvl fork's grounding rows).
// The same seed writes the same bytes.
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Binary, Field, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { parquetWriteFile } from 'hyparquet-writer';
import sharp from 'sharp';
import { tiny } from 'vlalign';

const COLOURS = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [240, 210, 40],
  purple: [140, 60, 180],
  orange: [245, 140, 30],
};
const BACKGROUNDS = { white: [250, 250, 250], grey: [128, 128, 128], black: [15, 15, 15] };
const SHAPES = ['square', 'circle', 'triangle'];
const SIZES = [
  [32, 32],
  [48, 32],
  [64, 48],
  [40, 56],
  [56, 40],
  [64, 64],
];
const SCENES = 12;
// Every folder this script owns under --out: rewritten whole on each run.
const OWNED = [
  'qwen2_vl',
  'qwen2_5_vl',
  'internvl',
  'mmpr',
  'rlaif-v',
  'vlrlhf',
  'kto',
  'sft',
  'internvl_sft',
  'virft_detection',
  'virft_classification',
  'mmpr_tiny',
];

/** mulberry32: a small seeded generator, so the scenes and wrong answers are the same on every run. */
function seededRandom(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (list) => list[Math.floor(next() * list.length)];
  return { next, pick, other: (list, not) => pick(list.filter((x) => x !== not)) };
}

// --- Images ----------------------------------------------------------------------------------

function makeScenes(random) {
  return Array.from({ length: SCENES }, (_, k) => {
    const [width, height] = random.pick(SIZES);
    const background = random.pick(Object.keys(BACKGROUNDS));
    const colour = random.pick(Object.keys(COLOURS));
    const side = Math.floor(0.6 * Math.min(width, height));
    return {
      name: `scene_${String(k).padStart(2, '0')}.${k % 2 === 0 ? 'png' : 'jpg'}`,
      width,
      height,
      background,
      colour,
      shape: SHAPES[k % SHAPES.length],
      side,
      left: Math.floor(random.next() * (width - side)),
      top: Math.floor(random.next() * (height - side)),
    };
  });
}

/** Whether pixel (x, y) (its centre) lies inside the scene's shape. */
function inside(scene, x, y) {
  const [u, v] = [x + 0.5 - scene.left, y + 0.5 - scene.top];
  const s = scene.side;
  if (u < 0 || v < 0 || u > s || v > s) return false;
  if (scene.shape === 'square') return true;
  if (scene.shape === 'circle') return (u - s / 2) ** 2 + (v - s / 2) ** 2 <= (s / 2) ** 2;
  return Math.abs(u - s / 2) <= v / 2; // triangle, apex up
}

/** RGB pixels of a picture: each object (a scene's shape fields) painted over the background. */
function paint(width, height, background, objects) {
  const pixels = Buffer.alloc(width * height * 3);
  const ground = BACKGROUNDS[background];
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const hit = objects.find((object) => inside(object, x, y));
      pixels.set(hit === undefined ? ground : COLOURS[hit.colour], (y * width + x) * 3);
    }
  }
  return pixels;
}

const asBytes = (buffer) => new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);

async function encodeScene(scene) {
  const pixels = paint(scene.width, scene.height, scene.background, [scene]);
  const image = sharp(pixels, { raw: { width: scene.width, height: scene.height, channels: 3 } });
  const bytes = scene.name.endsWith('.png')
    ? await image.png().toBuffer()
    : await image.jpeg({ quality: 90 }).toBuffer();
  return asBytes(bytes);
}

function writeImages(folder, scenes, encoded) {
  mkdirSync(folder, { recursive: true });
  for (const scene of scenes) writeFileSync(join(folder, scene.name), encoded.get(scene.name));
}

// --- Questions with a true answer ------------------------------------------------------------

/** One question about a scene, its right answer and a wrong one (kind cycles colour / shape / background). */
function question(scene, kind, random) {
  if (kind === 0) {
    const wrong = random.other(Object.keys(COLOURS), scene.colour);
    return {
      q: `What colour is the ${scene.shape}?`,
      a: `The ${scene.shape} is ${scene.colour}.`,
      w: `The ${scene.shape} is ${wrong}.`,
    };
  }
  if (kind === 1) {
    const wrong = random.other(SHAPES, scene.shape);
    return {
      q: 'What shape is drawn in the picture?',
      a: `A ${scene.colour} ${scene.shape}.`,
      w: `A ${scene.colour} ${wrong}.`,
    };
  }
  const wrong = random.other(Object.keys(BACKGROUNDS), scene.background);
  return { q: 'What colour is the background?', a: `It is ${scene.background}.`, w: `It is ${wrong}.` };
}

const article = (word) => (/^[aeiou]/.test(word) ? 'an' : 'a');

const FACTS = [
  ['How many sides does a triangle have?', 'A triangle has three sides.', 'A triangle has four sides.'],
  ['How many corners does a square have?', 'A square has four corners.', 'A square has five corners.'],
  ['Is a circle round or pointed?', 'A circle is round.', 'A circle is pointed.'],
  ['What colour do you get by mixing blue and yellow paint?', 'Green.', 'Purple.'],
];

// --- MMPR / InternVL: meta.json + jsonl ------------------------------------------------------

function writeJsonl(file, rows) {
  writeFileSync(file, `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
}

function writeJson(file, value) {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Single-image rows, `<image>\n` written in some questions and left for the reader to add in others. */
function mmprSingleRows(scenes, random) {
  return scenes.slice(0, 8).map((scene, k) => {
    const { q, a, w } = question(scene, k % 3, random);
    const phrase = k % 2 === 0 ? `${q}\nAnswer the question using a single word or phrase.` : q;
    return { image: scene.name, question: k % 4 === 0 ? `<image>\n${phrase}` : phrase, chosen: a, rejected: w };
  });
}

/** Two-image rows (one `<image>` per image, as MMPR's multi-image sets) and text-only rows (no `image`). */
function mmprMixedRows(scenes) {
  const pairs = [0, 1, 2, 3].map((i) => {
    const first = scenes[i];
    const second = scenes.slice(6).find((s) => s.colour !== first.colour && s.shape !== first.shape);
    if (second === undefined) throw new Error(`seed gives no partner scene for ${first.name}; try another --seed`);
    return [first, second];
  });
  const multi = pairs.map(([first, second], k) => {
    const target = k % 2 === 0 ? first : second;
    const [right, wrong] = target === first ? ['Image-1', 'Image-2'] : ['Image-2', 'Image-1'];
    return {
      image: [first.name, second.name],
      question: `Image-1: <image>\nImage-2: <image>\nWhich image shows ${article(target.colour)} ${target.colour} ${target.shape}?`,
      chosen: `${right} shows the ${target.colour} ${target.shape}.`,
      rejected: `${wrong} shows the ${target.colour} ${target.shape}.`,
    };
  });
  const text = FACTS.map(([q, a, w]) => ({ question: q, chosen: a, rejected: w }));
  return [...multi, ...text];
}

function writeMmpr(folder, scenes, encoded, random) {
  mkdirSync(join(folder, 'annotations'), { recursive: true });
  writeImages(join(folder, 'images', 'shapes'), scenes, encoded);
  const single = mmprSingleRows(scenes, random);
  const mixed = mmprMixedRows(scenes);
  writeJsonl(join(folder, 'annotations', 'shapes_vqa_correctness_rules.jsonl'), single);
  writeJsonl(join(folder, 'annotations', 'shapes_multi_image_and_text.jsonl'), mixed);
  const meta = {
    shapes_vqa_correctness_rules: {
      root: 'images/shapes',
      annotation: 'annotations/shapes_vqa_correctness_rules.jsonl',
      data_augment: true,
      repeat_time: 2,
      max_dynamic_patch: 2,
      length: single.length,
    },
    shapes_multi_image_and_text: {
      root: 'images/shapes',
      annotation: 'annotations/shapes_multi_image_and_text.jsonl',
      data_augment: false,
      repeat_time: 0.5,
      length: mixed.length,
    },
  };
  writeJson(join(folder, 'meta.json'), meta);
  return { 'mmpr/meta.json': single.length * 2 + Math.floor(mixed.length * 0.5) };
}

// --- TRL / HF rlaif-v: parquet shards --------------------------------------------------------

// pyarrow's nested layout, as HF datasets writes it: list<struct<content: list<struct<text, type>>, role>>.
function messagesSchema(name) {
  const string = (n) => ({ name: n, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' });
  return [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'content', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
    string('text'),
    string('type'),
    string('role'),
  ];
}

const RLAIF_SCHEMA = [
  { name: 'schema', num_children: 4 },
  ...messagesSchema('prompt'),
  ...messagesSchema('chosen'),
  ...messagesSchema('rejected'),
  { name: 'images', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
  { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
];

const value = (dtype) => ({ dtype, _type: 'Value' });
const messagesFeature = [{ content: [{ text: value('string'), type: value('string') }], role: value('string') }];
// The `huggingface` key HF datasets puts in the footer, so `datasets` restores the Image feature.
const HF_FEATURES = JSON.stringify({
  info: {
    features: {
      prompt: messagesFeature,
      chosen: messagesFeature,
      rejected: messagesFeature,
      images: { feature: { _type: 'Image' }, _type: 'Sequence' },
    },
  },
});

const ZSTD_BLOCK = 1 << 17;

/**
 * A zstd frame of raw (stored) blocks: valid Zstandard (RFC 8878: single-segment frame header with a
 * 4-byte content size, then Raw_Blocks of at most 128 KiB) that every decoder reads, only not
 * smaller. Node 20's zlib has no zstd encoder and hyparquet-writer ships none, so the zstd shard is
 * zstd-framed but not entropy-coded (the readers' tests cover entropy-coded pages, written by DuckDB).
 */
function zstdStored(input) {
  const blocks = Math.max(1, Math.ceil(input.length / ZSTD_BLOCK));
  const out = new Uint8Array(9 + blocks * 3 + input.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0xfd2fb528, true); // magic
  out[4] = 0xa0; // Frame_Content_Size_flag 2 (4 bytes), Single_Segment_flag, no checksum, no dictionary
  view.setUint32(5, input.length, true);
  let at = 9;
  for (let b = 0; b < blocks; b += 1) {
    const start = b * ZSTD_BLOCK;
    const size = Math.min(ZSTD_BLOCK, input.length - start);
    const header = (size << 3) | (b === blocks - 1 ? 1 : 0); // Block_Type 0 = Raw_Block
    out.set([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff], at);
    out.set(input.subarray(start, start + size), at + 3);
    at += 3 + size;
  }
  return out;
}

const parts = (role, text, withImage) => [
  { role, content: [...(withImage ? [{ type: 'image', text: null }] : []), { type: 'text', text }] },
];

/** rlaif-v_formatted rows: the image leads the user turn; bytes kept, path only when HF knew a file name. */
function rlaifRows(scenes, encoded, random, keepPath) {
  return scenes.map((scene, k) => {
    const { q, a, w } = question(scene, k % 3, random);
    return {
      prompt: parts('user', q, true),
      chosen: parts('assistant', a, false),
      rejected: parts('assistant', w, false),
      images: [{ bytes: encoded.get(scene.name), path: keepPath ? scene.name : null }],
    };
  });
}

function writeParquet(file, rows, codec) {
  const columnData = ['prompt', 'chosen', 'rejected', 'images'].map((name) => ({
    name,
    data: rows.map((row) => row[name]),
  }));
  parquetWriteFile({
    filename: file,
    schema: RLAIF_SCHEMA,
    columnData,
    codec,
    compressors: { ZSTD: zstdStored },
    kvMetadata: [{ key: 'huggingface', value: HF_FEATURES }],
  });
}

function writeRlaif(folder, scenes, encoded, random) {
  const data = join(folder, 'data');
  mkdirSync(data, { recursive: true });
  const half = scenes.length / 2;
  writeParquet(
    join(data, 'train-00000-of-00002.parquet'),
    rlaifRows(scenes.slice(0, half), encoded, random, false),
    'SNAPPY',
  );
  writeParquet(
    join(data, 'train-00001-of-00002.parquet'),
    rlaifRows(scenes.slice(half), encoded, random, true),
    'ZSTD',
  );
  writeParquet(
    join(data, 'test-00000-of-00001.parquet'),
    rlaifRows(scenes.slice(0, 2), encoded, random, false),
    'SNAPPY',
  );
  return { 'rlaif-v (train)': scenes.length, 'rlaif-v (test)': 2 };
}

// --- VL-RLHF: plain_dpo and vlquery_json -----------------------------------------------------

function writeVlRlhf(folder, scenes, encoded, random) {
  writeImages(join(folder, 'images'), scenes, encoded);
  const dpo = scenes.slice(0, 7).map((scene, k) => {
    const { q, a, w } = question(scene, k % 3, random);
    return { image: scene.name, prompt: q, chosen: a, rejected: w };
  });
  const [q, a, w] = FACTS[0];
  dpo.push({ prompt: q, chosen: a, rejected: w }); // plain_dpo's image is optional
  writeJson(join(folder, 'plain_dpo.json'), dpo);
  const sft = scenes.slice(0, 6).map((scene, k) => {
    const first = question(scene, k % 3, random);
    const turns = [
      { from: 'user', value: first.q },
      { from: 'assistant', value: first.a },
    ];
    if (k % 2 === 1) {
      const second = question(scene, (k + 1) % 3, random);
      turns.push({ from: 'user', value: second.q }, { from: 'assistant', value: second.a });
    }
    return { image: scene.name, conversations: turns };
  });
  writeJson(join(folder, 'vlquery.json'), sft);
  return { 'vlrlhf/plain_dpo.json': dpo.length, 'vlrlhf/vlquery.json': sft.length };
}

// --- TRL unpaired (KTO) and SFT jsonl ---------------------------------------------------------

/** Each pair split into a desirable and an undesirable row, as TRL's unpairing does. */
function writeKto(folder, scenes, encoded, random) {
  writeImages(join(folder, 'images'), scenes.slice(0, 4), encoded);
  const rows = scenes.slice(0, 4).flatMap((scene, k) => {
    const { q, a, w } = question(scene, k % 3, random);
    const base = { prompt: parts('user', q, true), images: [`images/${scene.name}`] };
    return [
      { ...base, completion: parts('assistant', a, false), label: true },
      { ...base, completion: parts('assistant', w, false), label: false },
    ];
  });
  writeJsonl(join(folder, 'train.jsonl'), rows);
  return { 'kto/train.jsonl': rows.length };
}

function writeSft(folder, scenes, encoded, random) {
  writeImages(join(folder, 'images'), scenes.slice(0, 6), encoded);
  const rows = scenes.slice(0, 6).map((scene, k) => {
    const first = question(scene, k % 3, random);
    const messages = [...parts('user', first.q, true), ...parts('assistant', first.a, false)];
    if (k % 2 === 1) {
      const second = question(scene, (k + 2) % 3, random);
      messages.push(...parts('user', second.q, false), ...parts('assistant', second.a, false));
    }
    return { messages, images: [`images/${scene.name}`] };
  });
  writeJsonl(join(folder, 'train.jsonl'), rows);
  return { 'sft/train.jsonl': rows.length };
}

/** InternVL's SFT jsonl: human / gpt turns, `<image>` written or left for the reader, multi-image and text-only rows. */
function writeInternVlSft(folder, scenes, encoded, random) {
  writeImages(join(folder, 'images'), scenes.slice(0, 6), encoded);
  const rows = scenes.slice(0, 4).map((scene, k) => {
    const { q, a } = question(scene, k % 3, random);
    const human = k % 2 === 0 ? `<image>\n${q}` : q;
    return {
      id: k,
      image: scene.name,
      conversations: [
        { from: 'human', value: human },
        { from: 'gpt', value: a },
      ],
    };
  });
  const [first, second] = [scenes[4], scenes[5]];
  rows.push({
    id: 4,
    image: [first.name, second.name],
    conversations: [
      { from: 'human', value: `Image-1: <image>\nImage-2: <image>\nWhat shapes do the two images show?` },
      {
        from: 'gpt',
        value: `Image-1 shows a ${first.colour} ${first.shape}; Image-2 shows a ${second.colour} ${second.shape}.`,
      },
    ],
  });
  rows.push({
    id: 5,
    conversations: [
      { from: 'human', value: FACTS[1][0] },
      { from: 'gpt', value: FACTS[1][1] },
    ],
  });
  writeJsonl(join(folder, 'train.jsonl'), rows);
  return { 'internvl_sft/train.jsonl': rows.length };
}

// --- ViRFT: HF save_to_disk DatasetDicts (Arrow IPC stream) ----------------------------------

// ViRFT's detection prompt (its COCO / LVIS data): format instructions live in `problem`.
const virftDetectionProblem = (category) =>
  `Detect all objects belonging to the category '${category}' in the image, and provide the bounding boxes ` +
  `(between 0 and 1000, integer) and confidence (between 0 and 1, with two decimal places).\n` +
  `If no object belonging to the category '${category}' in the image, return 'No Objects'.\n` +
  `Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.` +
  `The output answer format should be as follows:\n` +
  `<think> ... </think> <answer>[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]</answer>\n` +
  'Please strictly follow the format.';

// ViRFT's few-shot classification prompt (its aircraft one, about shapes).
const VIRFT_CLASSIFICATION_PROBLEM =
  'This is an image containing a shape. Please identify the type of the shape based on the image.\n' +
  'Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.' +
  'The output answer format should be as follows:\n' +
  '<think> ... </think> <answer>shape name</answer>\n' +
  'Please strictly follow the format.';

const DETECTION_SIZES = [
  [96, 64],
  [112, 64],
  [80, 80],
  [120, 72],
];
const DETECTION_IMAGES = 8;
const SHOTS = 4; // few-shot classification: images per class

/** A box in Qwen2-VL's thousandths of the image size, as ViRFT's solutions and the grounding data write it. */
function thousandths(object, width, height) {
  const { left, top, side } = object;
  return [left / width, top / height, (left + side) / width, (top + side) / height].map((v) => Math.round(v * 1000));
}

/**
 * Pictures of two or three shapes, one per column, and the question for the first one's shape: the
 * true boxes are every object of that shape (every third picture repeats it, so some have two).
 */
function detectionScenes(random) {
  return Array.from({ length: DETECTION_IMAGES }, (_, k) => {
    const [width, height] = DETECTION_SIZES[k % DETECTION_SIZES.length];
    const count = 2 + (k % 2);
    const cell = Math.floor(width / count);
    const objects = Array.from({ length: count }, (_, c) => {
      const side = Math.floor((0.5 + 0.4 * random.next()) * Math.min(cell, height));
      return {
        shape: random.pick(SHAPES),
        colour: random.pick(Object.keys(COLOURS)),
        side,
        left: c * cell + Math.floor(random.next() * (cell - side)),
        top: Math.floor(random.next() * (height - side)),
      };
    });
    if (k % 3 === 0) objects[count - 1].shape = objects[0].shape;
    const category = objects[0].shape;
    const boxes = objects.filter((o) => o.shape === category).map((o) => thousandths(o, width, height));
    return { width, height, background: random.pick(Object.keys(BACKGROUNDS)), objects, category, boxes };
  });
}

/** ViRFT's build_dataset notebook opens each picture with `.convert('RGBA')`, so `datasets` stores RGBA PNG bytes. */
async function encodeRgba({ width, height, background, objects }) {
  const pixels = paint(width, height, background, objects);
  return asBytes(
    await sharp(pixels, { raw: { width, height, channels: 3 } })
      .ensureAlpha()
      .png()
      .toBuffer(),
  );
}

/** Python's str() of ViRFT's solution list: `[{'Position': [x1, y1, x2, y2], 'Confidence': 1}, ...]`. */
const virftSolution = (boxes) =>
  `<answer>[${boxes.map((b) => `{'Position': [${b.join(', ')}], 'Confidence': 1}`).join(', ')}]</answer>`;

async function virftDetectionRows(random) {
  const rows = [];
  for (const scene of detectionScenes(random)) {
    rows.push({
      image: { bytes: await encodeRgba(scene), path: null },
      problem: virftDetectionProblem(scene.category),
      solution: virftSolution(scene.boxes),
    });
  }
  return rows;
}

async function virftClassificationRows(random) {
  const rows = [];
  for (let k = 0; k < SHOTS * SHAPES.length; k += 1) {
    const [width, height] = random.pick(SIZES);
    const side = Math.floor((0.4 + 0.2 * random.next()) * Math.min(width, height)); // the background stays the commonest colour
    const object = {
      shape: SHAPES[k % SHAPES.length],
      colour: random.pick(Object.keys(COLOURS)),
      side,
      left: Math.floor(random.next() * (width - side)),
      top: Math.floor(random.next() * (height - side)),
    };
    const scene = { width, height, background: random.pick(Object.keys(BACKGROUNDS)), objects: [object] };
    rows.push({
      image: { bytes: await encodeRgba(scene), path: null },
      problem: VIRFT_CLASSIFICATION_PROBLEM,
      solution: `<answer>${object.shape}</answer>`,
    });
  }
  return rows;
}

// `datasets` features of ViRFT's columns: Image() and two Value('string').
const VIRFT_FEATURES = { image: { _type: 'Image' }, problem: value('string'), solution: value('string') };

/** An Arrow IPC stream as `datasets`' ArrowWriter writes it: one record batch, the features in the schema metadata. */
function virftStream(rows) {
  const image = new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);
  const table = new Table({
    image: vectorFromArray(
      rows.map((r) => r.image),
      image,
    ),
    problem: vectorFromArray(
      rows.map((r) => r.problem),
      new Utf8(),
    ),
    solution: vectorFromArray(
      rows.map((r) => r.solution),
      new Utf8(),
    ),
  });
  table.schema.metadata.set('huggingface', JSON.stringify({ info: { features: VIRFT_FEATURES } }));
  return tableToIPC(table, 'stream');
}

/** `DatasetDict({'train': ...}).save_to_disk(folder)`: dataset_dict.json, train/{arrow shard, dataset_info.json, state.json}. */
function writeSaveToDisk(folder, rows) {
  const split = join(folder, 'train');
  mkdirSync(split, { recursive: true });
  const shard = 'data-00000-of-00001.arrow';
  const stream = virftStream(rows);
  writeFileSync(join(split, shard), stream);
  writeJson(join(split, 'dataset_info.json'), {
    citation: '',
    description: '',
    features: VIRFT_FEATURES,
    homepage: '',
    license: '',
  });
  writeJson(join(split, 'state.json'), {
    _data_files: [{ filename: shard }],
    _fingerprint: createHash('sha256').update(stream).digest('hex').slice(0, 16),
    _format_columns: null,
    _format_kwargs: {},
    _format_type: null,
    _output_all_columns: false,
    _split: null,
  });
  writeFileSync(join(folder, 'dataset_dict.json'), JSON.stringify({ splits: ['train'] }));
}

async function writeVirft(out, random) {
  const detection = await virftDetectionRows(random);
  const classification = await virftClassificationRows(random);
  writeSaveToDisk(join(out, 'virft_detection'), detection);
  writeSaveToDisk(join(out, 'virft_classification'), classification);
  return { 'virft_detection (train)': detection.length, 'virft_classification (train)': classification.length };
}

// --- MMPR-Tiny / verl RL parquet (InternVL3.5 GSPO) ---------------------------------------------

// verl's geo3k preprocessor appends this to every problem; MMPR-Tiny's boxed questions carry the like.
const GEO3K_INSTRUCTION =
  'You FIRST think about the reasoning process as an internal monologue and then provide the final answer. ' +
  'The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.';

const CORNERS = { triangle: 3, square: 4, circle: 0 };

// The layout pandas / pyarrow give verl's rows: prompt list<struct<content, role>>, images
// list<struct<bytes, path>>, reward_model and extra_info structs, integers int64 (bigint to hyparquet-writer).
// Schema subtrees (arrays of elements, depth first), so a struct counts its children, not their elements.
const utf8 = (name) => [{ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }];
const int64 = (name) => [{ name, type: 'INT64', repetition_type: 'OPTIONAL' }];
const binary = (name) => [{ name, type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' }];
const struct = (name, children) => [
  { name, repetition_type: 'OPTIONAL', num_children: children.length },
  ...children.flat(),
];
const list = (name, element) => [
  { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  ...element,
];
const verlSchema = (groundTruth, extraInfo) => [
  { name: 'schema', num_children: 6 },
  ...utf8('data_source'),
  ...list('prompt', struct('element', [utf8('content'), utf8('role')])),
  ...list('images', struct('element', [binary('bytes'), utf8('path')])),
  ...utf8('ability'),
  ...struct('reward_model', [groundTruth, utf8('style')]),
  ...struct('extra_info', extraInfo),
];
const BOXED_SCHEMA = verlSchema(utf8('ground_truth'), [
  utf8('answer'),
  int64('index'),
  utf8('question'),
  utf8('split'),
]);
const GROUNDING_SCHEMA = verlSchema(list('ground_truth', int64('element')), [
  int64('height'),
  utf8('id'),
  int64('index'),
  utf8('question'),
  utf8('split'),
  int64('width'),
]);

/** A question with a boxed answer: the number of corners, or a multiple-choice letter (shape or colour). */
function boxedQuestion(scene, k) {
  if (k % 3 === 0)
    return { question: 'How many corners does the shape in the picture have?', answer: String(CORNERS[scene.shape]) };
  const [what, choices, truth] =
    k % 3 === 1
      ? ['Which shape is drawn in the picture?', SHAPES, scene.shape]
      : ['What colour is the shape?', Object.keys(COLOURS).slice(0, 4).concat(scene.colour), scene.colour];
  const options = [...new Set(choices)].sort();
  const letters = options.map((_, i) => String.fromCharCode(65 + i));
  const lines = options.map((o, i) => `${letters[i]}. ${o}`).join('\n');
  return { question: `${what}\nOptions:\n${lines}`, answer: letters[options.indexOf(truth)] };
}

/** Rows 0-5 carry the image bytes (geo3k's parquet); 6-7 only an `images/...` path beside the parquet (MMPR-Tiny's). */
function boxedRows(scenes, encoded) {
  return scenes.slice(0, 8).map((scene, k) => {
    const { question, answer } = boxedQuestion(scene, k);
    const image =
      k < 6 ? { bytes: encoded.get(scene.name), path: scene.name } : { bytes: null, path: `images/${scene.name}` };
    return {
      data_source: 'hiyouga/geometry3k',
      prompt: [{ content: `<image>\n${question} ${GEO3K_INSTRUCTION}`, role: 'user' }],
      images: [image],
      ability: 'math',
      reward_model: { ground_truth: answer, style: 'rule' },
      extra_info: { answer, index: BigInt(k), question, split: 'train' },
    };
  });
}

/** The verl-internvl fork's grounding rows: a 0-1000 box as ground truth, the image size in extra_info. */
function groundingRows(scenes, encoded) {
  return scenes.slice(8, 12).map((scene, k) => {
    const sentence = `the ${scene.colour} ${scene.shape}`;
    const question = `Please provide the bounding box coordinate of the region this sentence describes: <ref>${sentence}</ref>`;
    return {
      data_source: 'grounding',
      prompt: [{ content: `<image>\n${question}`, role: 'user' }],
      images: [{ bytes: encoded.get(scene.name), path: scene.name }],
      ability: 'grounding',
      reward_model: { ground_truth: thousandths(scene, scene.width, scene.height).map(BigInt), style: 'rule' },
      extra_info: {
        height: BigInt(scene.height),
        id: `shapes_${k}`,
        index: BigInt(k),
        question,
        split: 'train',
        width: BigInt(scene.width),
      },
    };
  });
}

function writeVerlParquet(file, schema, rows) {
  parquetWriteFile({
    filename: file,
    schema,
    columnData: Object.keys(rows[0]).map((name) => ({ name, data: rows.map((row) => row[name]) })),
    codec: 'SNAPPY',
  });
}

function writeMmprTiny(folder, scenes, encoded) {
  mkdirSync(join(folder, 'images'), { recursive: true });
  const boxed = boxedRows(scenes, encoded);
  const grounding = groundingRows(scenes, encoded);
  for (const scene of scenes.slice(6, 8)) writeFileSync(join(folder, 'images', scene.name), encoded.get(scene.name));
  writeVerlParquet(join(folder, 'mmpr_tiny.parquet'), BOXED_SCHEMA, boxed);
  writeVerlParquet(join(folder, 'grounding.parquet'), GROUNDING_SCHEMA, grounding);
  return { 'mmpr_tiny/mmpr_tiny.parquet': boxed.length, 'mmpr_tiny/grounding.parquet': grounding.length };
}

// --- Main --------------------------------------------------------------------------------------

const { values } = parseArgs({
  options: { out: { type: 'string', default: 'examples/recipes/.data' }, seed: { type: 'string', default: '0' } },
});
const seed = Number(values.seed);
if (!Number.isInteger(seed) || seed < 0) {
  console.error(`--seed: expected a non-negative integer but received '${values.seed}'`);
  process.exit(2);
}
const out = resolve(values.out);
mkdirSync(out, { recursive: true });
for (const name of OWNED) rmSync(join(out, name), { recursive: true, force: true });

for (const family of ['qwen2_vl', 'qwen2_5_vl', 'internvl'])
  await tiny.writeTinyCheckpoint(join(out, family), family, { seed });
const random = seededRandom(seed);
const scenes = makeScenes(random);
const encoded = new Map();
for (const scene of scenes) encoded.set(scene.name, await encodeScene(scene));
const counts = {
  ...writeMmpr(join(out, 'mmpr'), scenes, encoded, random),
  ...writeRlaif(join(out, 'rlaif-v'), scenes, encoded, random),
  ...writeVlRlhf(join(out, 'vlrlhf'), scenes, encoded, random),
  ...writeKto(join(out, 'kto'), scenes, encoded, random),
  ...writeSft(join(out, 'sft'), scenes, encoded, random),
  ...writeInternVlSft(join(out, 'internvl_sft'), scenes, encoded, random),
  ...writeMmprTiny(join(out, 'mmpr_tiny'), scenes, encoded),
  // Their own generator, so the data above stays the same bytes.
  ...(await writeVirft(out, seededRandom(seed + 1))),
};
const near = relative(process.cwd(), out);
const shown = near === '' ? '.' : near.startsWith('..') ? out : near;
console.log(`wrote ${shown}/ (seed ${seed}):`);
for (const name of ['qwen2_vl', 'qwen2_5_vl', 'internvl']) console.log(`  ${name}/  tiny checkpoint`);
for (const [name, count] of Object.entries(counts)) console.log(`  ${name}: ${count} records`);
const bytes = (file) => statSync(join(out, file)).size;
console.log(
  `  rlaif-v/data/train-00000-of-00002.parquet (snappy, ${bytes('rlaif-v/data/train-00000-of-00002.parquet')} B), ` +
    `train-00001-of-00002.parquet (zstd, ${bytes('rlaif-v/data/train-00001-of-00002.parquet')} B)`,
);
console.log(`  ${scenes.length} images (${scenes.map((s) => `${s.width}x${s.height}`).join(' ')})`);
