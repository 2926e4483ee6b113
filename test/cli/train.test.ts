// vlalign train end to end: a tiny DPO recipe (tiny Qwen2-VL, LoRA, text-only TRL jsonl) for 2 steps
// through the CLI's main(); the run leaves output_dir/checkpoint-2 and the final adapter.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-train-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const RECIPE = `trainer: dpo
model_name_or_path: ./tiny
dataset:
  format: trl
  path: ./data/train.jsonl
peft:
  r: 4
  lora_alpha: 8
  target_modules: auto
output_dir: ./runs/dpo
loss_type: [sigmoid, bco_pair, sft]
loss_weights: [0.8, 0.2, 1.0]
per_device_train_batch_size: 2
max_steps: 2
save_steps: 2
logging_steps: 1
max_length: 64
report_to: none
gradient_checkpointing: false
`;

describe('vlalign train', () => {
  it('runs a tiny DPO recipe for 2 steps and saves checkpoint-2', async () => {
    await writeTinyCheckpoint(join(root, 'tiny'), 'qwen2_vl', { seed: 7 });
    mkdirSync(join(root, 'data'));
    const rows = Array.from({ length: 4 }, (_, i) => ({
      prompt: [{ role: 'user', content: `question ${i}` }],
      chosen: [{ role: 'assistant', content: `good answer ${i}` }],
      rejected: [{ role: 'assistant', content: `bad ${i}` }],
    }));
    writeFileSync(join(root, 'data/train.jsonl'), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    writeFileSync(join(root, 'recipe.yaml'), RECIPE);
    await main(['node', 'vlalign', 'train', join(root, 'recipe.yaml'), '--seed', '3']);
    expect(process.exitCode ?? 0).toBe(0);
    expect(existsSync(join(root, 'runs/dpo/checkpoint-2'))).toBe(true);
    expect(existsSync(join(root, 'runs/dpo/adapter_model.safetensors'))).toBe(true);
  }, 120_000);
});
