// The lockstep rules of ZeRO-3 ranks (lib/models/lockstep.ts) in one process, with a stand-in for
// the ranks' agreement: a text-only forward told that another rank has images runs the vision tower
// on its dummy input, changes nothing (hidden states bit for bit), and leaves every vision gradient
// exactly zero (Qwen2-VL, Qwen2.5-VL, InternVL); told that no rank has images it skips the tower.
// Decoding told that another rank is unfinished keeps stepping on one idle row until maxNewTokens
// (its forwards counted) and returns what decoding alone returns.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { generate } from '../../lib/generation/index.js';
import { fromPretrained, setLockstep, type CausalLM } from '../../lib/models/index.js';
import { writeTinyCheckpoint, TINY_FAMILIES } from '../../lib/tiny/index.js';

const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-lockstep-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function tinyModel(family: (typeof TINY_FAMILIES)[number]): Promise<CausalLM> {
  const dir = path.join(root, family);
  if (!fs.existsSync(dir)) await writeTinyCheckpoint(dir, family, { seed: 5 });
  return fromPretrained(dir, { dtype: 'float64' });
}

const VISION_PREFIX = /^(visual|vision_model|mlp1)\./;

// Loss = sum of the hidden states of a text-only batch; returns the hidden states (float64 values)
// and each vision parameter's gradient (null when none).
function textOnlyStep(model: CausalLM): { hidden: Float64Array; grads: Map<string, Float64Array | null> } {
  model.zeroGrad();
  const inputIds = torch.tensor(
    [
      [11, 12, 13, 14, 15],
      [21, 22, 23, 24, 25],
    ],
    { dtype: 'int64' },
  );
  const hidden = torch.tidy(() => {
    const out = model.forward({ inputIds }, { logits: false });
    out.hidden.sum().backward();
    return out.hidden.detach().data() as Float64Array;
  });
  inputIds.dispose();
  const grads = new Map<string, Float64Array | null>();
  for (const [name, p] of model.namedParameters()) {
    if (!VISION_PREFIX.test(name)) continue;
    grads.set(
      name,
      torch.tidy(() => (p.grad === null ? null : (p.grad.data() as Float64Array).slice())),
    );
  }
  return { hidden, grads };
}

describe('a text-only forward in lockstep with a rank that has images', () => {
  it.each(TINY_FAMILIES)(
    '%s: the vision tower runs on its dummy input, nothing changes, vision gradients exactly 0',
    async (family) => {
      const model = await tinyModel(family);
      model.train();
      const alone = textOnlyStep(model);
      // Alone, the tower is not reached: no vision gradient at all.
      expect([...alone.grads.values()].every((g) => g === null)).toBe(true);

      const asked: boolean[] = [];
      setLockstep(model, {
        any: (local) => {
          asked.push(local);
          return true; // another rank has images
        },
      });
      const synced = textOnlyStep(model);
      expect(asked).toEqual([false]); // one question per sequence-starting forward, this rank has none
      expect(synced.hidden).toEqual(alone.hidden); // bit for bit
      expect(synced.grads.size).toBeGreaterThan(0);
      for (const [name, g] of synced.grads) {
        expect(g, name).not.toBeNull(); // the tower's blocks ran and took part in backward ...
        expect(
          g!.every((v) => v === 0),
          name,
        ).toBe(true); // ... with gradients exactly 0
      }

      // No rank has images: the tower is skipped again.
      setLockstep(model, { any: (local) => local });
      const skipped = textOnlyStep(model);
      expect([...skipped.grads.values()].every((g) => g === null)).toBe(true);
      setLockstep(model, null);
      model.dispose();
    },
  );
});

describe('decoding in lockstep with a rank that is not done', () => {
  it('a finished rank steps on one idle row until maxNewTokens; the result is decoding alone', async () => {
    const model = await tinyModel('qwen2_vl');
    model.eval();
    const inputs = () => ({
      inputIds: torch.tensor(
        [
          [31, 32, 33],
          [41, 42, 43],
        ],
        { dtype: 'int64' },
      ),
    });
    // Greedy alone, then the same with the rows' third tokens as stop tokens: both rows end early.
    const free = generate(model, inputs(), { maxNewTokens: 8, stopTokenIds: [] });
    const stops = free.tokens.map((t) => t[2]!);
    const alone = generate(model, inputs(), { maxNewTokens: 8, stopTokenIds: stops });
    const lengths = alone.tokens.map((t) => t.length);
    expect(Math.max(...lengths)).toBeLessThan(8);

    const forward = model.forward.bind(model);
    let forwards = 0;
    model.forward = (...args: Parameters<CausalLM['forward']>) => {
      forwards += 1;
      return forward(...args);
    };
    const asked: boolean[] = [];
    setLockstep(model, {
      any: (local) => {
        asked.push(local);
        return true; // another rank decodes to the limit
      },
    });
    const synced = generate(model, inputs(), { maxNewTokens: 8, stopTokenIds: stops });
    setLockstep(model, null);
    model.forward = forward;
    expect(synced).toEqual(alone);
    // The prefill, then one forward per step but the last: 8 - 1 decoding forwards, as the other rank.
    expect(forwards).toBe(1 + 7);
    // Asked at the prefill (vision) and after each step but the last; "unfinished" until both rows stopped.
    expect(asked.length).toBe(1 + 7);
    const done = Math.max(...lengths);
    expect(asked.slice(1)).toEqual(Array.from({ length: 7 }, (_, k) => k + 1 < done));
    model.dispose();
  });
});
