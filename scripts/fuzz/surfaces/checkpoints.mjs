// Checkpoint directories: a tiny checkpoint with one file broken (config.json, tokenizer.json,
// tokenizer_config.json, preprocessor_config.json, chat_template.json, the weights' header) or
// missing, loaded with models.fromPretrained or processing.fromPretrained + process. A clean error
// names the checkpoint folder or the file.
import fs from 'node:fs';
import path from 'node:path';
import { models, processing } from '../../../dist/index.js';
import { jsonSlots, mutateJson, mutateText } from '../rng.mjs';
import { checkpointCopy, FAMILIES, sampleOf } from './checkpoint_dir.mjs';
import { safetensorsBytes } from './safetensors.mjs';

// Sizes a config may claim: each must be refused against sane bounds or the tensors' shapes.
const SIZES = [0, -1, 1, 3, 2 ** 31, 2 ** 31 - 1, 2 ** 40, 1e9, 65537, 1.5];

function breakJson(rng, value) {
  const numeric = jsonSlots(value).filter(([, parent, key]) => typeof parent[key] === 'number');
  if (numeric.length > 0 && rng.chance(0.4)) {
    const copy = structuredClone(value);
    const [slot] = rng.pick(jsonSlots(copy).filter(([, parent, key]) => typeof parent[key] === 'number'));
    let target = copy;
    for (const key of slot.slice(0, -1)) target = target[key];
    target[slot[slot.length - 1]] = rng.pick(SIZES);
    return { value: copy, key: slot.join('.') };
  }
  const { value: broken, path: slot } = mutateJson(rng, value);
  return { value: broken, key: slot?.join('.') ?? '(root)' };
}

// The weights' header with one tensor renamed, reshaped or retyped (the data left as it was).
function breakWeights(rng, bytes) {
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
  const name = rng.pick(Object.keys(header).filter((k) => k !== '__metadata__'));
  const edit = rng.int(3);
  if (edit === 0) {
    header[`${name}.renamed`] = header[name];
    delete header[name];
  } else if (edit === 1) header[name].shape = header[name].shape.map((d) => (rng.chance(0.5) ? d + 1 : d)).reverse();
  else header[name].dtype = rng.pick(['F16', 'I64', 'U8', 'BF16']);
  return { bytes: safetensorsBytes(header, bytes.subarray(8 + length)), key: `${name} (edit ${edit})` };
}

export async function make(rng, { corpus, dir }) {
  const family = rng.pick(FAMILIES);
  const files = fs.readdirSync(path.join(corpus, family)).sort();
  const file = rng.pick(files);
  const missing = rng.chance(0.08);
  const target = checkpointCopy(corpus, dir, family, [file]);
  const original = fs.readFileSync(path.join(corpus, family, file));
  let what = `${family}/${file} missing`;
  if (!missing) {
    if (file.endsWith('.safetensors')) {
      const { bytes, key } = breakWeights(rng, original);
      fs.writeFileSync(path.join(target, file), bytes);
      what = `${family}/${file}: ${key}`;
    } else if (rng.chance(0.15)) {
      fs.writeFileSync(path.join(target, file), mutateText(rng, original.toString('utf8')), 'latin1');
      what = `${family}/${file}: text mutated`;
    } else {
      const { value, key } = breakJson(rng, JSON.parse(original.toString('utf8')));
      fs.writeFileSync(path.join(target, file), JSON.stringify(value));
      what = `${family}/${file}: ${key} = ${JSON.stringify(key.split('.').reduce((v, k) => v?.[k], value))?.slice(0, 80)}`;
    }
  }
  const weights = file.endsWith('.safetensors') || (file === 'config.json' && rng.chance(0.5));
  return {
    what: `${what}; ${weights ? 'models' : 'processing'}.fromPretrained`,
    names: [target, file],
    run: async () => {
      if (weights) {
        (await models.fromPretrained(target)).dispose();
        return;
      }
      const processor = await processing.fromPretrained(target);
      await processor.process(sampleOf(corpus));
    },
  };
}
