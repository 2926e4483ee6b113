// The QLoRA flow end to end on a tiny checkpoint, as the README shows it: 4-bit load, LoRA on the
// language model only, AdamW with a schedule and clipping, gradient checkpointing on; the loss
// falls, the base stays bit-identical, and the adapter and optimizer files resume training exactly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as torch from '../../lib/torch/index.js';
import { fromPretrained, type CausalLM } from '../../lib/models/index.js';
import { getPeftModel, languageModelTargets, loadAdapter, type LoraModel } from '../../lib/adapters/index.js';
import { AdamW, LRScheduler, clipGradNorm_, loadOptimizer, saveOptimizer } from '../../lib/optim/index.js';
import { targetsFromLabels } from '../../lib/losses/index.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';

const root = mkdtempSync(join(tmpdir(), 'vlalign-qlora-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function setup(): Promise<{ model: CausalLM; peft: LoraModel; opt: AdamW; schedule: LRScheduler }> {
  const model = await fromPretrained(join(root, 'base'), { quantization: { quantType: 'nf4', doubleQuant: true } });
  torch.manualSeed(1);
  const peft = getPeftModel(model, {
    r: 8,
    loraAlpha: 16,
    targetModules: languageModelTargets(model, ['q_proj', 'v_proj', 'gate_proj']),
  });
  const opt = new AdamW(peft.trainableParameters(), { lr: 1e-2, weightDecay: 0 });
  const schedule = new LRScheduler(opt, { name: 'cosine', totalSteps: 12, warmupSteps: 2 });
  return { model: model.train(), peft, opt, schedule };
}

function step(model: CausalLM, opt: AdamW, schedule: LRScheduler, ids: torch.Tensor): number {
  const loss = torch.tidy(() => {
    const logits = model.forward({ inputIds: ids }).logits!;
    const l = torch.nn.functional.crossEntropy(
      logits.reshape([-1, logits.shape[2]!]),
      targetsFromLabels(ids).reshape([-1]),
    );
    l.backward();
    return l.item() as number;
  });
  clipGradNorm_(opt.paramGroups[0]!.params, 1.0);
  opt.step();
  schedule.step();
  opt.zeroGrad();
  return loss;
}

describe('QLoRA training flow', () => {
  it('trains, keeps the 4-bit base frozen, and resumes exactly from adapter + optimizer files', async () => {
    await writeTinyCheckpoint(join(root, 'base'), 'qwen2_vl', { seed: 2 });
    const ids = torch.tensor([[482, 17, 33, 95, 483, 482, 61, 62, 63, 64, 65, 66, 483]]).keep();
    const { model, peft, opt, schedule } = await setup();
    const base = new Map(
      [...model.namedParameters()].filter(([n]) => !n.includes('lora_')).map(([n, p]) => [n, p.clone().keep()]),
    );
    const losses = [0, 1, 2, 3, 4, 5].map(() => step(model, opt, schedule, ids));
    expect(losses[5]).toBeLessThan(losses[0]! * 0.8);
    for (const [n, p] of model.namedParameters()) if (base.has(n)) expect(p.equal(base.get(n)!), n).toBe(true);
    expect(
      [...model.namedModules()].some(([n, m]) => n.startsWith('visual.') && m.constructor.name === 'LoraLinear'),
    ).toBe(false);

    await peft.saveAdapter(join(root, 'adapter'));
    await saveOptimizer(join(root, 'opt.safetensors'), opt, schedule);
    const continued = [0, 1, 2].map(() => step(model, opt, schedule, ids));

    const resumed = await setup();
    resumed.peft.discard();
    const reloaded = await loadAdapter(resumed.model, join(root, 'adapter'), { trainable: true });
    const opt2 = new AdamW(reloaded.trainableParameters(), { lr: 1e-2, weightDecay: 0 });
    const schedule2 = new LRScheduler(opt2, { name: 'cosine', totalSteps: 12, warmupSteps: 2 });
    await loadOptimizer(join(root, 'opt.safetensors'), opt2, schedule2);
    const again = [0, 1, 2].map(() => step(resumed.model.train(), opt2, schedule2, ids));
    expect(again).toEqual(continued);
    model.dispose();
    resumed.model.dispose();
  });
});
