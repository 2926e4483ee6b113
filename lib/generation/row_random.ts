// Per-row random streams for sampling that must not depend on which rows share a batch. torch's
// generator hands out numbers in batch order, so a row's draws change with its neighbours; here
// each draw is a pure function of (seed, stream, substream, step): a counter-based generator, so a
// row sampled alone, among others, or after a resume sees the same uniforms. The hash is Chris
// Wellons' "lowbias32" integer mixer applied word by word; bench/peers/pipelines.py has its twin.

const TWO_POW_32 = 2 ** 32;

/** lowbias32: a bijective 32-bit mixer (xorshift-multiply rounds). */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

// Folds one 32-bit word into the running hash.
function absorb(h: number, word: number): number {
  return mix32((h ^ mix32((word + 0x9e3779b9) >>> 0)) >>> 0);
}

function checkWord(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Expected a non-negative safe integer for ${name} but received ${value}`);
  }
}

/**
 * The uniform in [0, 1) of draw `step` of stream (`stream`, `substream`) under `seed`: 24 bits, so it
 * is exact in float32 (the dtype the sampler compares it in). Every argument is a non-negative
 * safe integer; seed and stream take 53 bits, substream and step 32.
 */
export function streamUniform(seed: number, stream: number, substream: number, step: number): number {
  checkWord(seed, 'seed');
  checkWord(stream, 'stream');
  checkWord(substream, 'substream');
  checkWord(step, 'step');
  if (substream >= TWO_POW_32 || step >= TWO_POW_32) {
    throw new RangeError(`substream and step must be below 2^32, got ${substream} and ${step}`);
  }
  let h = 0x6a09e667;
  h = absorb(h, seed % TWO_POW_32);
  h = absorb(h, Math.floor(seed / TWO_POW_32));
  h = absorb(h, stream % TWO_POW_32);
  h = absorb(h, Math.floor(stream / TWO_POW_32));
  h = absorb(h, substream);
  h = absorb(h, step);
  return (h >>> 8) / 2 ** 24;
}
