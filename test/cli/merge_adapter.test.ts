// vlalign merge-adapter on a tiny Qwen2-VL and a tiny LoRA adapter: every merged weight equals
// W + (alpha / r)·B·A computed here from the two files, the rest is the base, the tokenizer is copied.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { getPeftModel } from '../../lib/adapters/index.js';
import { main } from '../../lib/cli/main.js';
import { fromPretrained } from '../../lib/models/pretrained.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';
import * as torch from '../../lib/torch/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-merge-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('vlalign merge-adapter', () => {
  it('writes base + scaling·B·A for every adapted layer', async () => {
    const base = join(root, 'base');
    const adapterDir = join(root, 'adapter');
    const output = join(root, 'merged');
    await writeTinyCheckpoint(base, 'qwen2_vl', { seed: 5 });
    const model = await fromPretrained(base);
    // init false: A and B both random, so the delta is not zero.
    const peft = getPeftModel(model, {
      r: 4,
      loraAlpha: 8,
      targetModules: ['q_proj', 'down_proj'],
      initLoraWeights: false,
    });
    await peft.saveAdapter(adapterDir);
    model.dispose();

    await main(['node', 'vlalign', 'merge-adapter', '--adapter', adapterDir, '--base', base, '--output', output]);
    expect(process.exitCode ?? 0).toBe(0);

    const baseTensors = await torch.loadSafetensors(join(base, 'model.safetensors'));
    const adapter = await torch.loadSafetensors(join(adapterDir, 'adapter_model.safetensors'));
    const merged = await torch.loadSafetensors(join(output, 'model.safetensors'));
    expect(Object.keys(merged).sort()).toEqual(Object.keys(baseTensors).sort());
    let adapted = 0;
    for (const [name, w] of Object.entries(baseTensors)) {
      const stem = `base_model.model.${name.replace(/\.weight$/, '')}`;
      const a = adapter[`${stem}.lora_A.weight`];
      const b = adapter[`${stem}.lora_B.weight`];
      const expected = a && b ? w.add(b.matmul(a).mul(8 / 4)) : w;
      if (a && b) adapted++;
      const diff = merged[name]!.sub(expected).abs().max().item() as number;
      expect(diff, name).toBeLessThan(1e-5);
    }
    expect(adapted).toBeGreaterThan(0);
    expect(existsSync(join(output, 'tokenizer.json'))).toBe(true);
  });

  it('a bad folder is one message on stderr and exit code 1', async () => {
    const previous = process.exitCode;
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => errors.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      await main([
        'node',
        'vlalign',
        'merge-adapter',
        '--adapter',
        join(root, 'none'),
        '--base',
        join(root, 'none'),
        '--output',
        join(root, 'x'),
      ]);
    } finally {
      process.stderr.write = write;
    }
    expect(process.exitCode).toBe(1);
    process.exitCode = previous;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^vlalign: .*none/);
    expect(errors[0]).not.toMatch(/\n\s+at /);
  });
});
