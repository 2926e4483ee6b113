// Peak memory of quantise-on-load on a Qwen2 checkpoint of ~49 MB (float32, 8 MB shards): the dense
// weights of the 4-bit layers never exist at once. Two measures: the live native bytes
// (torch.memory(), sampled whenever the loader yields, i.e. between shards) and the process's peak
// resident set (VmHWM after resetting it through /proc/self/clear_refs, where the kernel allows it).
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { initWeights } from '../../lib/nn/index.js';
import {
  fromPretrained,
  savePretrained,
  Qwen2ForCausalLM,
  parseTextConfig,
  weightFiles,
  type CausalLM,
} from '../../lib/models/index.js';
import { quantizeModel, type Linear4bit } from '../../lib/quant/index.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const MB = 2 ** 20;
const kb = (field: string): number =>
  Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Runs `load`, sampling torch.memory() whenever the event loop turns; returns the model and the peaks. */
async function measured(
  load: () => Promise<CausalLM>,
): Promise<{ model: CausalLM; peakNative: number; peakRss: number | null; baseRss: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  const rssReset = resetPeakRss();
  const baseRss = kb('VmRSS');
  let peakNative = torch.memory().numBytes;
  const timer = setInterval(() => (peakNative = Math.max(peakNative, torch.memory().numBytes)), 0);
  try {
    const model = await load();
    peakNative = Math.max(peakNative, torch.memory().numBytes);
    return { model, peakNative, peakRss: rssReset ? kb('VmHWM') : null, baseRss };
  } finally {
    clearInterval(timer);
  }
}

describe('quantise on load: peak memory', () => {
  it('stays near the 4-bit model plus one shard, far below the dense model', async () => {
    const raw = {
      model_type: 'qwen2',
      vocab_size: 1024,
      hidden_size: 512,
      intermediate_size: 1408,
      num_hidden_layers: 4,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      tie_word_embeddings: false,
    };
    const dir = mkdtempSync(join(tmpdir(), 'vlalign-quant-mem-'));
    dirs.push(dir);
    {
      const model = new Qwen2ForCausalLM(parseTextConfig(raw, 'test'), raw);
      initWeights(model);
      await savePretrained(model, dir, { maxShardBytes: 8 * MB });
      model.dispose();
    }
    const shards = weightFiles(dir).length;
    const before = torch.memory().numBytes;

    const onLoad = await measured(() => fromPretrained(dir, { quantization: {} }));
    const quantized = torch.memory().numBytes - before;
    const layers = [...onLoad.model.namedModules()]
      .filter(([, m]) => m.constructor.name === 'Linear4bit')
      .map(([, m]) => m as Linear4bit);
    const q4 = layers.reduce((n, l) => n + l.quantizedBytes(), 0);
    const denseOfQuantized = layers.reduce((n, l) => n + 4 * l.inFeatures * l.outFeatures, 0);
    onLoad.model.dispose();

    const dense = await measured(async () => {
      const model = await fromPretrained(dir);
      quantizeModel(model);
      return model;
    });
    dense.model.dispose();
    const denseBytes = denseOfQuantized + (quantized - q4); // the checkpoint in float32

    const report = (m: typeof onLoad): string =>
      `native peak ${((m.peakNative - before) / MB).toFixed(1)} MB, ` +
      (m.peakRss === null ? 'RSS peak n/a' : `RSS peak +${((m.peakRss - m.baseRss) / MB).toFixed(1)} MB`);
    console.log(
      `dense checkpoint ${(denseBytes / MB).toFixed(1)} MB in ${shards} shards of ≤ 8 MB; quantised model ${(quantized / MB).toFixed(1)} MB ` +
        `(4-bit layers ${(q4 / MB).toFixed(1)} MB). Quantise on load: ${report(onLoad)}. Load then quantise: ${report(dense)}.`,
    );
    expect(shards).toBeGreaterThan(4);
    // Sampled between shards: the quantised model so far plus at most the shard being read.
    expect(onLoad.peakNative - before).toBeLessThan(quantized + 8 * MB);
    expect(onLoad.peakNative - before).toBeLessThan(denseBytes / 2);
    expect(dense.peakNative - before).toBeGreaterThan(denseBytes);
    if (onLoad.peakRss !== null) {
      // The true peak (uninitialised dense weights the constructor allocates are never written, so never resident).
      expect(onLoad.peakRss - onLoad.baseRss).toBeLessThan(denseBytes * 0.75);
    }
  });
});
