// QLoRA on a tiny random Qwen2-VL checkpoint: load the base in NF4 (quantised layer by layer),
// put LoRA on the language model only, train a few AdamW steps with a cosine schedule, clipping and
// gradient checkpointing, then save the adapter in PEFT's format. Run: node examples/qlora-demo.mjs
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adapters, losses, models, optim, tiny, torch } from 'vlalign';

const dir = mkdtempSync(join(tmpdir(), 'vlalign-qlora-'));
try {
  await tiny.writeTinyCheckpoint(join(dir, 'base'), 'qwen2_vl');
  const model = await models.fromPretrained(join(dir, 'base'), {
    quantization: { quantType: 'nf4', doubleQuant: true },
  });
  const peft = adapters.getPeftModel(model, {
    r: 8,
    loraAlpha: 16,
    targetModules: adapters.languageModelTargets(model),
  });
  console.log(peft.printTrainable());
  const params = peft.trainableParameters().map(([, p]) => p);
  const opt = new optim.AdamW(params, { lr: 5e-3, weightDecay: 0 });
  const schedule = new optim.LRScheduler(opt, { name: 'cosine', totalSteps: 10, warmupSteps: 2 });
  const ids = torch.tensor([[482, 17, 33, 95, 483, 482, 61, 62, 63, 64, 65, 66, 483]]);
  const targets = losses.targetsFromLabels(ids); // every token is trained: position t predicts token t + 1
  model.train(); // blocks recompute their activations in backward (gradient checkpointing)
  for (let step = 0; step < 10; step++) {
    const loss = torch.tidy(() => {
      const logits = model.forward({ inputIds: ids }).logits;
      const l = torch.nn.functional.crossEntropy(logits.reshape([-1, logits.shape[2]]), targets.reshape([-1]));
      l.backward();
      return l.item();
    });
    optim.clipGradNorm_(params, 1.0);
    opt.step();
    schedule.step();
    opt.zeroGrad();
    console.log(`step ${step + 1}: loss ${loss.toFixed(4)}, lr ${schedule.lastLr[0].toExponential(2)}`);
  }
  await peft.saveAdapter(join(dir, 'adapter'));
  console.log(`adapter files: ${readdirSync(join(dir, 'adapter')).join(', ')}`);
  model.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
