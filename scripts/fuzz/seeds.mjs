// Seed data for the readers the recipe data generator does not cover yet: verl RL parquet
// (geo3k's columns), TRL prompt-only jsonl (GRPO) and a ViRFT `save_to_disk` folder (Arrow stream
// shard + state.json), on the generator's pictures.
import fs from 'node:fs';
import path from 'node:path';
import { Binary, Field, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { parquetWriteFile } from 'hyparquet-writer';

const string = (name) => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' });
// verl's layout as pandas / pyarrow write it: prompt list<struct<content, role>>, images
// list<struct<bytes, path>>, reward_model struct<ground_truth, style>, extra_info struct<split>.
const VERL_SCHEMA = [
  { name: 'schema', num_children: 6 },
  string('data_source'),
  { name: 'prompt', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
  string('content'),
  string('role'),
  { name: 'images', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
  { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  string('path'),
  string('ability'),
  { name: 'reward_model', repetition_type: 'OPTIONAL', num_children: 2 },
  string('ground_truth'),
  string('style'),
  { name: 'extra_info', repetition_type: 'OPTIONAL', num_children: 1 },
  string('split'),
];

const QUESTIONS = ['What colour is the square?', 'What shape is drawn?', 'What colour is the background?'];

/** Writes verl/train.parquet, trl_prompt/train.jsonl and hf_disk/ under `corpus`, images copied from mmpr's. */
export function writeExtraSeeds(corpus) {
  const pictures = path.join(corpus, 'mmpr', 'images', 'shapes');
  const names = fs.readdirSync(pictures).sort().slice(0, 6);
  for (const folder of ['verl', 'trl_prompt']) {
    fs.mkdirSync(path.join(corpus, folder), { recursive: true });
    fs.cpSync(pictures, path.join(corpus, folder, 'images'), { recursive: true }); // a link would leave the root
  }
  const rows = names.map((name, k) => ({
    data_source: 'fuzz/shapes',
    prompt: [{ content: `<image>${QUESTIONS[k % QUESTIONS.length]}`, role: 'user' }],
    images: [{ bytes: null, path: `images/${name}` }],
    ability: 'vision',
    reward_model: { ground_truth: String(k), style: 'rule' },
    extra_info: { split: 'train' },
  }));
  parquetWriteFile({
    filename: path.join(corpus, 'verl', 'train.parquet'),
    schema: VERL_SCHEMA,
    columnData: Object.keys(rows[0]).map((name) => ({ name, data: rows.map((row) => row[name]) })),
  });
  const prompts = names.map((name, k) => ({
    prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: QUESTIONS[k % QUESTIONS.length] }] }],
    images: [`images/${name}`],
    solution: String(k),
  }));
  fs.writeFileSync(
    path.join(corpus, 'trl_prompt', 'train.jsonl'),
    prompts.map((p) => `${JSON.stringify(p)}\n`).join(''),
  );
  writeVirft(
    path.join(corpus, 'hf_disk'),
    names.map((name) => fs.readFileSync(path.join(pictures, name))),
  );
}

// ViRFT's rows {image: {bytes, path}, problem, solution} as `Dataset.save_to_disk` writes them.
function writeVirft(folder, pictures) {
  fs.mkdirSync(folder, { recursive: true });
  const image = new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);
  const table = new Table({
    image: vectorFromArray(
      pictures.map((bytes, k) => ({ bytes, path: `scene_${k}.png` })),
      image,
    ),
    problem: vectorFromArray(
      pictures.map((_, k) => QUESTIONS[k % QUESTIONS.length]),
      new Utf8(),
    ),
    solution: vectorFromArray(
      pictures.map((_, k) => `<answer>${k}</answer>`),
      new Utf8(),
    ),
  });
  const shard = 'data-00000-of-00001.arrow';
  fs.writeFileSync(path.join(folder, shard), tableToIPC(table, 'stream'));
  const state = { _data_files: [{ filename: shard }], _fingerprint: 'fuzz', _format_columns: null, _split: 'train' };
  fs.writeFileSync(path.join(folder, 'state.json'), JSON.stringify(state));
  fs.writeFileSync(path.join(folder, 'dataset_info.json'), JSON.stringify({ features: {} }));
}
