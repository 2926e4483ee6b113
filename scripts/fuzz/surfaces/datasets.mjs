// Dataset files in every format the trainers read (MMPR meta.json + jsonl, TRL parquet shards and
// jsonl, VL-RLHF plain_dpo / vlquery json, InternVL SFT jsonl, verl parquet, TRL prompt-only jsonl,
// HF save_to_disk Arrow folders): the seed data with one file broken (a row's JSON edited, a line
// mangled, bytes of a parquet or Arrow shard flipped or cut), opened with data.openDataset and its
// records read. A clean error names the broken file, the dataset path given, or the
// dataset key the case set.
import fs from 'node:fs';
import path from 'node:path';
import { data } from '../../../dist/index.js';
import { HOSTILE_VALUES, mutateBytes, mutateJson, mutateText } from '../rng.mjs';

// [format, folder in the corpus, data file, the file(s) a case may break]
const FORMATS = [
  [
    'mmpr',
    'mmpr',
    'meta.json',
    ['meta.json', 'annotations/shapes_vqa_correctness_rules.jsonl', 'annotations/shapes_multi_image_and_text.jsonl'],
  ],
  [
    'trl',
    'rlaif-v',
    'data',
    ['data/train-00000-of-00002.parquet', 'data/train-00001-of-00002.parquet', 'data/test-00000-of-00001.parquet'],
  ],
  ['trl', 'kto', 'train.jsonl', ['train.jsonl']],
  ['trl', 'sft', 'train.jsonl', ['train.jsonl']],
  ['plain_dpo', 'vlrlhf', 'plain_dpo.json', ['plain_dpo.json']],
  ['vlquery_json', 'vlrlhf', 'vlquery.json', ['vlquery.json']],
  ['internvl_sft', 'internvl_sft', 'train.jsonl', ['train.jsonl']],
  ['verl', 'verl', 'train.parquet', ['train.parquet']],
  ['trl_prompt', 'trl_prompt', 'train.jsonl', ['train.jsonl']],
  ['hf_disk', 'hf_disk', '.', ['data-00000-of-00001.arrow', 'state.json', 'dataset_info.json']],
  ['hf_disk', 'virft_detection', '.', ['dataset_dict.json', 'train/state.json', 'train/data-00000-of-00001.arrow']],
  ['verl', 'mmpr_tiny', 'mmpr_tiny.parquet', ['mmpr_tiny.parquet']],
];
const SPLITS = [
  'train',
  'test',
  'train[:50%]',
  'train[1:3]',
  'train[-2:]',
  'train[:0]',
  'train[abc]',
  'train[200%:]',
  'validation',
  '',
];

// One row of a jsonl file edited as JSON, or the line mangled as text, or a line added.
function breakJsonl(rng, text) {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const k = rng.int(lines.length);
  const edit = rng.int(4);
  if (edit < 2) lines[k] = JSON.stringify(mutateJson(rng, JSON.parse(lines[k])).value);
  else if (edit === 2) lines[k] = mutateText(rng, lines[k]);
  else lines.splice(k, 0, rng.pick(['', ' ', '[]', 'null', '1', '"row"', '{}', '{"image": []}', '\u0000']));
  return { text: `${lines.join('\n')}\n`, where: `line ${k + 1} (edit ${edit})` };
}

function breakFile(rng, file) {
  const bytes = fs.readFileSync(file);
  if (file.endsWith('.parquet') || file.endsWith('.arrow')) {
    // A parquet file's structure is in its footer, an Arrow stream's in its first message: flip there more often.
    const footer = file.endsWith('.parquet');
    const from = rng.chance(0.6)
      ? footer
        ? Math.max(0, bytes.length - 400)
        : rng.int(Math.min(400, bytes.length))
      : 0;
    fs.writeFileSync(file, mutateBytes(rng, bytes, from));
    return 'bytes mutated';
  }
  if (file.endsWith('.jsonl')) {
    const { text, where } = breakJsonl(rng, bytes.toString('utf8'));
    fs.writeFileSync(file, text, 'latin1');
    return where;
  }
  if (rng.chance(0.2)) {
    fs.writeFileSync(file, mutateText(rng, bytes.toString('utf8')), 'latin1');
    return 'text mutated';
  }
  const { value, path: slot } = mutateJson(rng, JSON.parse(bytes.toString('utf8')));
  fs.writeFileSync(file, JSON.stringify(value, null, 1));
  return `${slot?.join('.')} edited`;
}

export async function make(rng, { corpus, dir }) {
  const [format, folder, dataFile, breakable] = rng.pick(FORMATS);
  const copy = path.join(dir, folder);
  fs.cpSync(path.join(corpus, folder), copy, { recursive: true }); // images too: a link would leave the root
  const broken = path.join(copy, rng.pick(breakable));
  const how = breakFile(rng, broken);
  const spec = { format, path: path.join(copy, dataFile), skip_bad_rows: rng.chance(0.3) };
  if (['trl', 'trl_prompt', 'hf_disk'].includes(format) && rng.chance(0.3)) spec.split = rng.pick(SPLITS);
  if (format === 'mmpr' && rng.chance(0.2)) spec.max_dynamic_patch = rng.pick([1, 6, 0, -1, 1.5, 2 ** 40]);
  if (rng.chance(0.05)) spec[rng.pick(['image_root', 'seed', 'kind'])] = rng.pick(HOSTILE_VALUES);
  return {
    what: `${format} ${path.relative(dir, broken)}: ${how}; ${JSON.stringify({ ...spec, path: undefined })}`,
    // Spec keys the case set are named as the user wrote them (split "train[abc]", dataset.seed).
    names: [
      broken,
      spec.path,
      'dataset.',
      ...Object.keys(spec).filter((k) => !['format', 'path', 'skip_bad_rows'].includes(k)),
    ],
    run: async () => {
      const dataset = await data.openDataset(spec, { baseDir: copy });
      // Every row of the seeds; a huge repeat_time makes millions of valid ones, so the ends only.
      const rows = [
        ...new Set([...Array(Math.min(dataset.length, 48)).keys(), dataset.length - 2, dataset.length - 1]),
      ];
      for (const i of rows.filter((k) => k >= 0)) await dataset.get(i);
    },
  };
}
