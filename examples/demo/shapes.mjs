// The demo's task: small pictures of coloured shapes on a 2 x 2 grid, and questions about them with
// short exact answers. Everything is a pure function of (seed, index): scene k of a set is the same
// on every machine, and any one can be rebuilt alone. Pictures are raw RGB written here, then
// encoded by sharp (a few thousand per second on one core).
//
// Scene: IMAGE_SIDE² pixels, a grey background with per-pixel noise, 1-4 of the four cells filled,
// each with a circle, square or triangle of one of six colours (size, position and tint jittered).
// Question types (answers are exact strings, lower case):
//   colour    "What colour is the shape in the top left?"   -> "orange"
//   count     "How many circles are there?" / "How many shapes are there?"   -> "2"
//   location  "Where is the orange circle?"   -> "top left"   (asked only of a unique colour+shape)
import sharp from 'sharp';

export const IMAGE_SIDE = 64;
export const CELLS = ['top left', 'top right', 'bottom left', 'bottom right'];
export const SHAPES = ['circle', 'square', 'triangle'];
/** Fill colours (RGB), far enough apart that noise and tint jitter never cross. */
export const COLOURS = {
  red: [215, 35, 35],
  orange: [245, 140, 20],
  yellow: [235, 215, 30],
  green: [40, 170, 60],
  blue: [35, 70, 215],
  purple: [140, 50, 190],
};
export const COLOUR_NAMES = Object.keys(COLOURS);
export const QUESTION_TYPES = ['colour', 'count', 'location'];
/** The base model's deliberate flaw: its SFT labels name these colours wrongly (FLAW_RATE of the time). */
export const FLAW = { orange: 'red', purple: 'blue' };
export const FLAWED_COLOURS = Object.keys(FLAW);
export const FLAW_RATE = 0.8;
export const BACKGROUND = 225;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function seededRandom(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (list) => list[next.int(list.length)];
  next.normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return next;
}

/** A stream's seed from a set seed, a stream name and an index: sets never share scenes. */
export function streamSeed(seed, stream, index) {
  let h = 2166136261 ^ seed;
  for (const ch of `${stream}:${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

/**
 * One scene: objects {cell, shape, colour, cx, cy, r, tint}. `colours` (optional) forces the colour
 * of the first object, so a set can hold enough questions about a given colour.
 */
export function makeScene(random, options = {}) {
  const count = 1 + random.int(4);
  const cells = shuffled([0, 1, 2, 3], random).slice(0, count).sort();
  const half = IMAGE_SIDE / 2;
  const objects = cells.map((cell, k) => {
    const r = 7 + random.int(5); // 7..11 px: the shape stays inside its 32 px cell
    const slack = half / 2 - r - 2;
    return {
      cell,
      shape: random.pick(SHAPES),
      colour: k === 0 && options.colour ? options.colour : random.pick(COLOUR_NAMES),
      cx: (cell % 2) * half + half / 2 + Math.round((random() * 2 - 1) * slack),
      cy: Math.floor(cell / 2) * half + half / 2 + Math.round((random() * 2 - 1) * slack),
      r,
      tint: [0, 1, 2].map(() => Math.round(random.normal() * 8)),
    };
  });
  return { objects, noiseSeed: Math.floor(random() * 2 ** 32) };
}

function shuffled(list, random) {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Whether pixel (x, y)'s centre lies inside the object. */
export function covers(o, x, y) {
  const dx = x + 0.5 - o.cx;
  const dy = y + 0.5 - o.cy;
  if (o.shape === 'circle') return dx * dx + dy * dy <= o.r * o.r;
  if (o.shape === 'square') return Math.abs(dx) <= o.r * 0.85 && Math.abs(dy) <= o.r * 0.85;
  // An upright triangle: apex at cy - r, base at cy + r, half-width growing linearly down.
  const t = (dy + o.r) / (2 * o.r);
  return t >= 0 && t <= 1 && Math.abs(dx) <= t * o.r;
}

// Pixel noise: a fixed table of normal(0, 10) samples, indexed by a per-scene LCG (cheap per pixel).
const NOISE = (() => {
  const random = seededRandom(12345);
  return Int8Array.from({ length: 1 << 16 }, () => Math.max(-127, Math.min(127, Math.round(random.normal() * 10))));
})();

/** The scene as raw RGB bytes (IMAGE_SIDE² x 3): background, then each object over its bounding box. */
export function paint(scene) {
  const side = IMAGE_SIDE;
  const rgb = Buffer.alloc(side * side * 3, BACKGROUND);
  for (const o of scene.objects) {
    const fill = COLOURS[o.colour].map((c, i) => clampByte(c + o.tint[i]));
    const [x0, x1] = [Math.max(0, Math.floor(o.cx - o.r) - 1), Math.min(side, Math.ceil(o.cx + o.r) + 1)];
    const [y0, y1] = [Math.max(0, Math.floor(o.cy - o.r) - 1), Math.min(side, Math.ceil(o.cy + o.r) + 1)];
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) if (covers(o, x, y)) rgb.set(fill, (y * side + x) * 3);
    }
  }
  let state = scene.noiseSeed >>> 0;
  for (let i = 0; i < rgb.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    rgb[i] = clampByte(rgb[i] + NOISE[state >>> 16]);
  }
  return rgb;
}

const clampByte = (v) => Math.max(0, Math.min(255, Math.round(v)));

/** PNG bytes of the scene (sharp, fast settings: the files are small anyway). */
export function encodePng(scene) {
  return sharp(paint(scene), { raw: { width: IMAGE_SIDE, height: IMAGE_SIDE, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

const plural = (shape) => `${shape}s`;

/** The questions a scene can answer, by type: {type, question, answer, colour?}. */
export function questionsOf(scene) {
  const colour = scene.objects.map((o) => ({
    type: 'colour',
    question: `What colour is the shape in the ${CELLS[o.cell]}?`,
    answer: o.colour,
    colour: o.colour,
  }));
  const count = [
    { type: 'count', question: 'How many shapes are there?', answer: String(scene.objects.length) },
    ...SHAPES.map((shape) => ({
      type: 'count',
      question: `How many ${plural(shape)} are there?`,
      answer: String(scene.objects.filter((o) => o.shape === shape).length),
    })),
  ];
  const location = scene.objects
    .filter((o) => scene.objects.filter((p) => p.colour === o.colour && p.shape === o.shape).length === 1)
    .map((o) => ({ type: 'location', question: `Where is the ${o.colour} ${o.shape}?`, answer: CELLS[o.cell] }));
  return { colour, count, location };
}

/** Wrong answers of the same type as `q` (the candidates a rejected answer is drawn from). */
export function wrongAnswers(q) {
  const all = q.type === 'colour' ? COLOUR_NAMES : q.type === 'location' ? CELLS : ['0', '1', '2', '3', '4'];
  return all.filter((a) => a !== q.answer);
}

/** What the flawed SFT labels say for `q`: the flawed colour FLAW_RATE of the time, else the truth. */
export function flawedLabel(q, random) {
  const wrong = q.type === 'colour' ? FLAW[q.answer] : undefined;
  return wrong !== undefined && random() < FLAW_RATE ? wrong : q.answer;
}

/**
 * A question of `type` about a fresh scene of stream (seed, name, index); `colour` asks a colour
 * question about a shape of that colour. Returns {scene, q}.
 */
export function sampleQuestion(seed, name, index, type, colour) {
  const random = seededRandom(streamSeed(seed, name, index));
  for (;;) {
    const scene = makeScene(random, { colour });
    const options = questionsOf(scene)[type].filter((q) => colour === undefined || q.colour === colour);
    // A count question is as often about all shapes as about one kind (answers 0-4 stay varied).
    if (options.length > 0) return { scene, q: type === 'count' && random() < 0.5 ? options[0] : random.pick(options) };
  }
}
