// Tiny checkpoints end to end: the written directory loads through the same entry points as a hub
// checkpoint (models.fromPretrained, processing.fromPretrained), a chat with a real PNG becomes
// model inputs, a training forward/backward runs, and generation decodes; writing is deterministic.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { generate } from '../../lib/generation/index.js';
import { targetsFromLabels } from '../../lib/losses/index.js';
import { fromPretrained, type CausalLM } from '../../lib/models/index.js';
import * as processing from '../../lib/processing/index.js';
import { TINY_FAMILIES, writeTinyCheckpoint } from '../../lib/tiny/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-tiny-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const image = fileURLToPath(new URL('../fixtures/images/img_320x240.png', import.meta.url));

describe.each(TINY_FAMILIES.filter((f) => f !== 'internvl' || supportsInternVL()))('tiny %s', (family) => {
  const dir = join(root, family);

  it('writes a directory that loads, processes a chat with an image, trains and generates', async () => {
    await writeTinyCheckpoint(dir, family, { seed: 3 });
    const model: CausalLM = await fromPretrained(dir);
    const processor = await processing.fromPretrained(dir);
    const batch = await processor.process({
      messages: [
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in the picture?' }] },
        { role: 'assistant', content: 'A test pattern.' },
      ],
      images: [image],
    });
    const inputs = {
      inputIds: batch.inputIds,
      attentionMask: batch.attentionMask,
      pixelValues: batch.pixelValues ?? undefined,
      imageGridThw: 'imageGridThw' in batch ? (batch.imageGridThw ?? undefined) : undefined,
      imageFlags: 'imageFlags' in batch ? (batch.imageFlags ?? undefined) : undefined,
    };
    torch.tidy(() => {
      model.train();
      const out = model.forward(inputs);
      const loss = torch.nn.functional.crossEntropy(
        out.logits!.squeeze(0),
        targetsFromLabels(batch.labels).squeeze(0),
        { ignoreIndex: -100 },
      );
      expect(Number.isFinite(loss.item())).toBe(true);
      loss.backward();
      const grads = model.parameters().filter((p) => p.grad !== null).length;
      expect(grads).toBe(model.parameters().length); // the vision tower is in the graph too
      model.eval();
    });
    const prompt = await processor.process({
      prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe.' }] }],
      images: [image],
    });
    const result = generate(
      model,
      {
        ...inputs,
        inputIds: prompt.inputIds,
        attentionMask: prompt.attentionMask,
        pixelValues: prompt.pixelValues ?? undefined,
      },
      { maxNewTokens: 5 },
    );
    expect(result.tokens[0]!.length).toBeGreaterThan(0);
    model.dispose();
  });

  it('the same seed writes byte-identical weights', async () => {
    const again = join(root, `${family}-again`);
    await writeTinyCheckpoint(again, family, { seed: 3 });
    expect(readFileSync(join(again, 'model.safetensors')).equals(readFileSync(join(dir, 'model.safetensors')))).toBe(
      true,
    );
  });
});

function supportsInternVL(): boolean {
  return true;
}
