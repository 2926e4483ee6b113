// A small seeded generator (mulberry32) and the mutations every surface shares. A case is a pure
// function of (seed, surface, index), so any case reruns alone with --repro.

/** A seeded generator with the helpers the case builders need. */
export function seededRandom(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const pick = (list) => list[int(list.length)];
  return { next, int, pick, chance: (p) => next() < p, between: (lo, hi) => lo + int(hi - lo + 1) };
}

/** FNV-1a over the text: the per-case seed from (run seed, surface, index). */
export function caseSeed(seed, surface, index) {
  let h = 0x811c9dc5;
  for (const c of `${seed}/${surface}/${index}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

// Values that break a typed field: wrong types, edge numbers, sizes past any sane bound.
export const HOSTILE_VALUES = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  -0.5,
  2 ** 31,
  2 ** 32 + 1,
  2 ** 53,
  1e308,
  -1e308,
  Number.NaN,
  '',
  'x',
  '1',
  '-1',
  'NaN',
  '../../etc/passwd',
  'a'.repeat(300),
  [],
  [1, 2],
  [null],
  {},
  { a: 1 },
];

/** A copy of `bytes` with 1-8 bytes set to random values within [from, to). */
export function flipBytes(rng, bytes, from = 0, to = bytes.length) {
  const out = Buffer.from(bytes);
  if (to <= from) return out;
  const n = rng.between(1, 8);
  for (let k = 0; k < n; k++) out[from + rng.int(to - from)] = rng.int(256);
  return out;
}

/** `bytes` cut at a random length (never the full length). */
export const truncate = (rng, bytes) => Buffer.from(bytes.subarray(0, rng.int(bytes.length)));

/** One of the byte-level mutations: flips, truncation, junk appended, a slice repeated or removed. */
export function mutateBytes(rng, bytes, from = 0) {
  switch (rng.int(5)) {
    case 0:
      return flipBytes(rng, bytes, from);
    case 1:
      return truncate(rng, bytes);
    case 2:
      return Buffer.concat([bytes, Buffer.from(Array.from({ length: rng.between(1, 64) }, () => rng.int(256)))]);
    case 3: {
      const at = from + rng.int(Math.max(1, bytes.length - from));
      const len = rng.between(1, 64);
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + len), bytes.subarray(at)]);
    }
    default: {
      const at = from + rng.int(Math.max(1, bytes.length - from));
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + rng.between(1, 64))]);
    }
  }
}

/** Every [path, parent, key] of a JSON value, objects and arrays alike, the root excluded. */
export function jsonSlots(value, path = []) {
  if (value === null || typeof value !== 'object') return [];
  return Object.keys(value).flatMap((key) => [[[...path, key], value, key], ...jsonSlots(value[key], [...path, key])]);
}

/**
 * A deep copy of `value` with one slot broken: set to a hostile value, deleted, or given an unknown
 * sibling key. Returns the copy and the key it broke (the name a clean error should carry).
 */
export function mutateJson(rng, value) {
  const copy = structuredClone(value);
  const slots = jsonSlots(copy);
  if (slots.length === 0) return { value: rng.pick(HOSTILE_VALUES), key: null };
  const [path, parent, key] = rng.pick(slots);
  const op = rng.int(10);
  if (op < 6) parent[key] = structuredClone(rng.pick(HOSTILE_VALUES));
  else if (op < 8) {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  } else if (op < 9 && typeof parent[key] === 'number') parent[key] = parent[key] * rng.pick([-1, 1000, 2 ** 20, 0.5]);
  else if (!Array.isArray(parent)) parent[`${key}_x`] = parent[key];
  else parent[key] = structuredClone(rng.pick(HOSTILE_VALUES));
  return { value: copy, key: String(path[path.length - 1]), path };
}

/** Text cut, with a byte or two replaced, or with a random line dropped: broken JSON / YAML. */
export function mutateText(rng, text) {
  const bytes = Buffer.from(text, 'utf8');
  if (rng.chance(0.2)) {
    const lines = text.split('\n');
    lines.splice(rng.int(lines.length), 1);
    return lines.join('\n');
  }
  return mutateBytes(rng, bytes).toString('latin1');
}
