// The VLM stack end to end on a tiny random Qwen2-VL checkpoint written in the Hugging Face format:
// load it like a hub checkpoint, turn a chat with an image into model inputs, take one supervised
// training step on the assistant's answer, then generate. Run: node examples/vlm-demo.mjs
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { generation, losses, models, processing, tiny, torch } from 'vlalign';

const dir = mkdtempSync(join(tmpdir(), 'vlalign-demo-'));
try {
  await tiny.writeTinyCheckpoint(dir, 'qwen2_vl');
  const model = await models.fromPretrained(dir);
  const processor = await processing.fromPretrained(dir, { paddingSide: 'left' });
  const image = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 200, g: 60, b: 20 } } })
    .png()
    .toBuffer();
  console.log(`loaded ${model.modelType}: ${model.numParameters().toLocaleString()} parameters`);

  const chat = await processor.process({
    messages: [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What colour is this?' }] },
      { role: 'assistant', content: 'Orange.' },
    ],
    images: [image],
  });
  const trained = chat.labels.ne(-100).sum().item();
  console.log(
    `chat: ${chat.inputIds.shape[1]} tokens (${chat.imageGridThw.toArray()[0].join('x')} patch grid), loss on ${trained}`,
  );

  model.train();
  const loss = torch.tidy(() => {
    const { logits } = model.forward(chat);
    const targets = losses.targetsFromLabels(chat.labels); // position t predicts token t + 1
    return torch.nn.functional.crossEntropy(logits.squeeze(0), targets.squeeze(0));
  });
  loss.backward();
  console.log(
    `SFT loss ${loss.item().toFixed(4)}; gradient reaches the vision tower: ${model.visual.patch_embed.proj.weight.grad !== null}`,
  );
  model.eval();

  const prompt = await processor.process({
    prompt: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe it.' }] }],
    images: [image],
  });
  const out = generation.generate(model, prompt, {
    maxNewTokens: 8,
    doSample: true,
    temperature: 0.8,
    topP: 0.95,
    seed: 1,
  });
  console.log(
    `generated ${JSON.stringify(processor.tokenizer.decode(out.tokens[0]))} (${out.finishReasons[0]}), log-probs ${out.logprobs[0].map((l) => l.toFixed(2)).join(' ')}`,
  );
  model.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
