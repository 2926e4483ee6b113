// The shapes task written in the formats vlalign's readers take: InternVL SFT jsonl (the flawed base
// model's data), MMPR meta.json + jsonl preference pairs (MPO), TRL prompt-only jsonl with a
// `solution` column (GRPO, scored by exact_match), and the held-out evaluation set. Each writer
// takes a seed and sizes; pictures go to `<dir>/images/`, one PNG per row.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  COLOUR_NAMES,
  encodePng,
  FLAW,
  FLAWED_COLOURS,
  flawedLabel,
  QUESTION_TYPES,
  sampleQuestion,
  seededRandom,
  streamSeed,
  wrongAnswers,
} from './shapes.mjs';

/** Question types in a mixed set: colour, count, location in turn (colour questions over all colours). */
function mixedQuestions(seed, name, n, colourOf) {
  return Array.from({ length: n }, (_, i) => {
    const type = QUESTION_TYPES[i % QUESTION_TYPES.length];
    return { index: i, ...sampleQuestion(seed, name, i, type, type === 'colour' ? colourOf(i) : undefined) };
  });
}

/** PNGs of the items under dir/images/<name>-<i>.png; returns their paths relative to dir. */
async function writeImages(dir, name, items) {
  mkdirSync(join(dir, 'images'), { recursive: true });
  const paths = [];
  const chunk = 64;
  for (let start = 0; start < items.length; start += chunk) {
    const slice = items.slice(start, start + chunk);
    const pngs = await Promise.all(slice.map((item) => encodePng(item.scene)));
    slice.forEach((item, k) => {
      const file = `images/${name}-${String(item.index).padStart(6, '0')}.png`;
      writeFileSync(join(dir, file), pngs[k]);
      paths.push(file);
    });
  }
  return paths;
}

const writeJsonl = (file, rows) => writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);

/**
 * The base model's SFT data (InternVL SFT jsonl): mixed question types; colour labels carry the
 * flaw (orange -> "red", purple -> "blue", FLAW_RATE of the time). Returns the jsonl path.
 */
export async function writeSftData(dir, { seed, size }) {
  const items = mixedQuestions(seed, 'sft', size, () => undefined);
  const images = await writeImages(dir, 'sft', items);
  const flaw = seededRandom(streamSeed(seed, 'flaw', 0));
  const rows = items.map((item, i) => ({
    image: images[i],
    conversations: [
      { from: 'human', value: `<image>\n${item.q.question}` },
      { from: 'gpt', value: flawedLabel(item.q, flaw) },
    ],
    type: item.q.type,
    truth: item.q.answer,
  }));
  const file = join(dir, 'sft.jsonl');
  writeJsonl(file, rows);
  return file;
}

// An alignment set's colour questions cycle through orange, purple (the flaw), red, blue (what the
// flaw says instead: kept in view so that the fix does not turn every red into orange) and two of
// any colour.
const ALIGN_COLOURS = [...FLAWED_COLOURS, ...FLAWED_COLOURS.map((c) => FLAW[c]), undefined, undefined];
const alignColour = (i) => ALIGN_COLOURS[Math.floor(i / QUESTION_TYPES.length) % ALIGN_COLOURS.length];
// A red / blue shape's over-corrected name: the rejected answer of its MPO pairs.
const OVERCORRECTED = Object.fromEntries(Object.entries(FLAW).map(([right, wrong]) => [wrong, right]));

/**
 * MPO pairs (MMPR meta.json + jsonl): chosen = the true answer; rejected = the flawed colour for a
 * question about orange / purple, orange / purple for red / blue, else another wrong answer of the
 * same type. Returns meta.json.
 */
const colourRejected = (q) => (q.type === 'colour' ? (FLAW[q.answer] ?? OVERCORRECTED[q.answer]) : undefined);

export async function writeMpoData(dir, { seed, size }) {
  const items = mixedQuestions(seed, 'mpo', size, alignColour);
  const images = await writeImages(dir, 'mpo', items);
  const random = seededRandom(streamSeed(seed, 'mpo-rejected', 0));
  const rows = items.map((item, i) => ({
    image: images[i].slice('images/'.length),
    question: `<image>\n${item.q.question}`,
    chosen: item.q.answer,
    rejected: colourRejected(item.q) ?? random.pick(wrongAnswers(item.q)),
  }));
  writeJsonl(join(dir, 'mpo.jsonl'), rows);
  const meta = { shapes_mpo: { root: 'images', annotation: 'mpo.jsonl', data_augment: false, repeat_time: 1 } };
  const file = join(dir, 'meta.json');
  writeFileSync(file, `${JSON.stringify(meta, null, 2)}\n`);
  return file;
}

/** GRPO prompts (TRL prompt-only jsonl, conversational) with the answer as `solution`. Returns the jsonl. */
export async function writeGrpoData(dir, { seed, size }) {
  const items = mixedQuestions(seed, 'grpo', size, alignColour);
  const images = await writeImages(dir, 'grpo', items);
  const rows = items.map((item, i) => ({
    prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: item.q.question }] }],
    images: [images[i]],
    solution: item.q.answer,
    type: item.q.type,
  }));
  const file = join(dir, 'grpo.jsonl');
  writeJsonl(file, rows);
  return file;
}

/**
 * The held-out set (its own stream): `perType` questions of each type, the colour questions spread
 * evenly over the six colours, as TRL prompt jsonl (heldout.jsonl, with answer / type / flawed
 * columns); and preference pairs about the flaw as VL-RLHF plain_dpo jsonl (heldout-pairs.jsonl:
 * chosen the true colour, rejected the flawed one), one per flawed-colour question.
 * Returns {questions, pairs} (the jsonl paths) and `rows` (image paths relative to dir).
 */
export async function writeEvalData(dir, { seed, perType }) {
  const colourOf = (i) => COLOUR_NAMES[Math.floor(i / QUESTION_TYPES.length) % COLOUR_NAMES.length];
  const items = mixedQuestions(seed, 'heldout', perType * QUESTION_TYPES.length, colourOf);
  const images = await writeImages(dir, 'heldout', items);
  const rows = items.map((item, i) => ({
    image: images[i],
    question: item.q.question,
    answer: item.q.answer,
    type: item.q.type,
    flawed: item.q.type === 'colour' && FLAW[item.q.answer] !== undefined,
  }));
  const questions = rows.map((r) => ({
    prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: r.question }] }],
    images: [r.image],
    answer: r.answer,
    type: r.type,
    flawed: r.flawed,
  }));
  const pairs = rows
    .filter((r) => r.flawed)
    .map((r) => ({ image: r.image, prompt: r.question, chosen: r.answer, rejected: FLAW[r.answer] }));
  const files = { questions: join(dir, 'heldout.jsonl'), pairs: join(dir, 'heldout-pairs.jsonl') };
  writeJsonl(files.questions, questions);
  writeJsonl(files.pairs, pairs);
  return { ...files, rows };
}
