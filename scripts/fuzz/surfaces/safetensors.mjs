// safetensors files: valid seeds (a hand-written file of every dtype, a zero-element tensor and
// metadata; a tiny checkpoint's weights; the hand-written file in two shards with an index) broken
// at the byte level, in the JSON header or in the index, loaded with loadSafetensors. A clean error
// names the file (the index or the shard at fault).
import fs from 'node:fs';
import path from 'node:path';
import { torch } from '../../../dist/index.js';
import { HOSTILE_VALUES, mutateBytes, mutateJson } from '../rng.mjs';

const SIZES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const DTYPES = Object.keys(SIZES);

/** The bytes of a safetensors file: length, JSON header, data. */
export function safetensorsBytes(header, data) {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

function seedFile(rng) {
  const header = { __metadata__: { format: 'pt', note: 'fuzz seed' } };
  let offset = 0;
  const count = rng.between(1, 5);
  for (let k = 0; k < count; k++) {
    const dtype = rng.pick(DTYPES);
    const shape = rng.chance(0.15) ? [rng.int(3), 0, rng.between(1, 4)] : [rng.between(1, 4), rng.between(1, 4)];
    const bytes = shape.reduce((a, d) => a * d, 1) * SIZES[dtype];
    header[`layer.${k}.weight`] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const data = Buffer.alloc(offset);
  for (let i = 0; i < offset; i++) data[i] = rng.int(256);
  return { header, data };
}

// Header edits the format forbids or the reader must bound: overlapping or reversed ranges,
// repeated keys, dtypes and shapes of the wrong kind, sizes that overflow.
const HEADER_EDITS = [
  (rng, h) => mutateJson(rng, h).value,
  (rng, h) => {
    const names = Object.keys(h).filter((k) => k !== '__metadata__');
    const t = h[rng.pick(names)];
    t.data_offsets = rng.pick([
      [0, t.data_offsets[1]],
      [t.data_offsets[1], t.data_offsets[0]],
      [0, 2 ** 53],
      [-8, 0],
    ]);
    return h;
  },
  (rng, h) => {
    const t = h[rng.pick(Object.keys(h).filter((k) => k !== '__metadata__'))];
    t.shape = rng.pick([[2 ** 31, 2 ** 31, 0], [0, 2 ** 62], [-1], [2 ** 53], [1.5], ['2'], [[1]], Array(70).fill(1)]);
    return h;
  },
  (rng, h) => {
    const t = h[rng.pick(Object.keys(h).filter((k) => k !== '__metadata__'))];
    t.dtype = rng.pick(['F8_E4M3', 'f32', 'U64', 'C64', '', 7, null]);
    return h;
  },
  (rng, h) => {
    h.__metadata__ = rng.pick(HOSTILE_VALUES);
    return h;
  },
];

// The seed split into two shards and a model.safetensors.index.json, then one of them broken: the
// index's JSON edited, a weight_map entry pointing outside the folder, at a missing shard or at the
// wrong one, or a shard's bytes mutated. Loaded from the folder.
function shardedCase(rng, dir) {
  const { header, data } = seedFile(rng);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const shardOf = (k) => `model-0000${k < names.length / 2 ? 1 : 2}-of-00002.safetensors`;
  const weightMap = Object.fromEntries(names.map((name, k) => [name, shardOf(k)]));
  for (const shard of new Set(Object.values(weightMap))) {
    const own = names.filter((name) => weightMap[name] === shard);
    const part = {};
    const chunks = [];
    let offset = 0;
    for (const name of own) {
      const [begin, end] = header[name].data_offsets;
      part[name] = { ...header[name], data_offsets: [offset, offset + end - begin] };
      chunks.push(data.subarray(begin, end));
      offset += end - begin;
    }
    fs.writeFileSync(path.join(dir, shard), safetensorsBytes(part, Buffer.concat(chunks)));
  }
  let index = { metadata: { total_size: data.length }, weight_map: weightMap };
  const name = rng.pick(names);
  const edit = rng.int(5);
  if (edit === 0) index = mutateJson(rng, index).value;
  else if (edit === 1)
    weightMap[name] = rng.pick(['../outside.safetensors', '/etc/passwd', '', 'missing.safetensors', 7]);
  else if (edit === 2) weightMap[name] = shardOf(weightMap[name].includes('00001') ? names.length : 0);
  else if (edit === 3) {
    const shard = path.join(dir, rng.pick([...new Set(Object.values(weightMap))]));
    fs.writeFileSync(shard, mutateBytes(rng, fs.readFileSync(shard)));
  }
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  fs.writeFileSync(indexFile, JSON.stringify(index));
  const listed = index?.weight_map !== null && typeof index?.weight_map === 'object' ? index.weight_map : {};
  const shards = [...new Set(Object.values(listed))].filter((v) => typeof v === 'string' && v.length > 0);
  return {
    what: `sharded, edit ${edit}: ${JSON.stringify(index).slice(0, 160)}`,
    names: [indexFile, ...shards.map((shard) => path.join(dir, shard))],
    source: dir,
  };
}

export async function make(rng, { corpus, dir }) {
  if (rng.chance(0.15)) {
    const { what, names, source } = shardedCase(rng, dir);
    return { what, names, run: () => loadAll(source) };
  }
  const file = path.join(dir, 'fuzz.safetensors');
  let bytes;
  let what;
  if (rng.chance(0.1)) {
    const seed = path.join(corpus, rng.pick(['qwen2_vl', 'qwen2_5_vl', 'internvl']), 'model.safetensors');
    bytes = mutateBytes(rng, fs.readFileSync(seed));
    what = `bytes of ${path.basename(path.dirname(seed))}/model.safetensors mutated`;
  } else {
    const { header, data } = seedFile(rng);
    if (rng.chance(0.5)) {
      const edit = rng.int(HEADER_EDITS.length);
      bytes = safetensorsBytes(HEADER_EDITS[edit](rng, header), data);
      what = `header edit ${edit}: ${JSON.stringify(header).slice(0, 160)}`;
    } else if (rng.chance(0.15)) {
      const key = Object.keys(header)[1];
      const text = JSON.stringify(header).replace(/}$/, `,${JSON.stringify(key)}:${JSON.stringify(header[key])}}`);
      bytes = Buffer.concat([Buffer.alloc(8), Buffer.from(text), data]);
      bytes.writeBigUInt64LE(BigInt(Buffer.byteLength(text)), 0);
      what = `header repeats '${key}'`;
    } else {
      bytes = mutateBytes(rng, safetensorsBytes(header, data));
      what = 'bytes mutated';
    }
  }
  fs.writeFileSync(file, bytes);
  return {
    what,
    names: [file],
    run: () => loadAll(file),
  };
}

async function loadAll(source) {
  const tensors = await torch.loadSafetensors(source);
  for (const t of Object.values(tensors)) t.dispose();
}
