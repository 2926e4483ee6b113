// The trainers' eval hook through a recipe (loadRecipe + buildTrainer + train) on the tiny Qwen2-VL:
// - SFT with eval_metric exact_match on a vqa question file, evaluated at steps 1 and 2: each
//   logged eval_exact_match (overall and per data_source) equals exact match of greedy answers
//   decoded here token by token (a full forward per token, no KV cache, no batching) by the
//   checkpoint-N weights of that step;
// - DPO with eval_preference_accuracy: each logged value equals the accuracy computed here from
//   summed completion log-probs of policy (checkpoint-N) and reference (the source checkpoint),
//   one unpadded row at a time with log_softmax + gather;
// - bad settings are errors naming the key;
// - on 2 Gloo ranks (fixtures/eval_hook_worker.ts) rank 0 alone reads the prompts and logs.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { data, generation, models, processing, torch } from '../../lib/index.js';
import type { CausalLM } from '../../lib/models/index.js';
import type { PreferenceRecord } from '../../lib/data/records.js';
import { buildTrainer } from '../../lib/cli/build.js';
import { loadRecipe } from '../../lib/cli/recipe.js';
import { exactMatch } from '../../lib/eval/answer_metrics.js';
import { answerMetrics } from '../../lib/eval/trainer_metrics.js';
import { openQuestions } from '../../lib/eval/question_data.js';
import { evalHookOf } from '../../lib/train/eval_hook.js';
import { readMetricsLog } from '../../lib/train/metrics_log.js';
import { writeTinyCheckpoint } from '../../lib/tiny/index.js';
import { pngOf } from '../eval/fixtures.js';
import { freePort, resultOf, RUN_TS, start } from '../distributed/ranks.js';

const root = fs.mkdtempSync(path.join(tmpdir(), 'vlalign-eval-hook-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const tinyDir = path.join(root, 'tiny');
const MAX_NEW = 6;

const jsonl = (file: string, rows: unknown[]) =>
  fs.writeFileSync(path.join(root, file), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);

const QUESTIONS = ['What colour is it?', 'Name the shape.', 'How many are there?', 'Where is it?'];

beforeAll(async () => {
  await writeTinyCheckpoint(tinyDir, 'qwen2_vl', { seed: 7 });
  fs.writeFileSync(path.join(root, 'a.png'), await pngOf(3));
  jsonl(
    'sft.jsonl',
    [0, 1, 2, 3].map((i) => ({
      messages: [
        { role: 'user', content: `question ${i}` },
        { role: 'assistant', content: `answer ${i}` },
      ],
    })),
  );
  const pairs = [0, 1, 2, 3].map((i) => ({
    prompt: [{ role: 'user', content: `question ${i}` }],
    chosen: [{ role: 'assistant', content: `good answer ${i}` }],
    rejected: [{ role: 'assistant', content: `bad ${i}` }],
  }));
  jsonl('pairs.jsonl', pairs);
  jsonl(
    'eval_pairs.jsonl',
    [4, 5, 6].map((i) => ({
      prompt: [{ role: 'user', content: `query ${i}` }],
      chosen: [{ role: 'assistant', content: `fine ${i} answer` }],
      rejected: [{ role: 'assistant', content: `poor ${i}` }],
    })),
  );
}, 60_000);

/** Greedy decoding by hand: the whole sequence forwarded for every new token, one prompt alone. */
async function handGreedy(model: CausalLM, proc: processing.Processor, record: data.PromptRecord): Promise<string> {
  const images = await data.decodeRecordImages(record);
  const batch = await proc.process([{ prompt: record.prompt, images }]);
  const extras = batch as { imageGridThw?: torch.Tensor | null };
  const ids = (batch.inputIds.toArray() as number[][])[0]!;
  const stops = model.textConfig.eosTokenIds;
  const banned = new Set(generation.nonSampledTokenIds(model).filter((id) => !stops.includes(id)));
  const answer: number[] = [];
  model.eval();
  for (let k = 0; k < MAX_NEW; k++) {
    const logits = torch.noGrad(() =>
      torch.tidy(() => {
        const inputIds = torch.tensor([[...ids, ...answer]], { dtype: 'int64' });
        const out = model.forward({
          inputIds,
          attentionMask: torch.onesLike(inputIds),
          pixelValues: batch.pixelValues,
          imageGridThw: extras.imageGridThw ?? null,
        });
        return (out.logits!.toArray() as number[][][])[0]!.at(-1)!;
      }),
    );
    let best = -1;
    logits.forEach((v, id) => {
      if (!banned.has(id) && (best < 0 || v > logits[best]!)) best = id;
    });
    if (stops.includes(best)) break;
    answer.push(best);
  }
  return proc.tokenizer.decode(answer, { skipSpecialTokens: true });
}

/** Mean exact match over the records, overall and per data_source. */
function meansOf(records: data.PromptRecord[], answers: string[]): Record<string, number> {
  const groups = new Map<string, number[]>();
  records.forEach((r, i) => {
    const score = exactMatch(answers[i]!, [String(r.columns.answer)]);
    for (const name of ['exact_match', `exact_match/${r.columns.data_source}`]) {
      groups.set(name, [...(groups.get(name) ?? []), score]);
    }
  });
  return Object.fromEntries([...groups].map(([k, v]) => [k, v.reduce((s, x) => s + x, 0) / v.length]));
}

async function allRecords<T>(dataset: { length: number; get(i: number): Promise<T | undefined> }): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < dataset.length; i++) out.push((await dataset.get(i))!);
  return out;
}

const evalEntries = (dir: string) =>
  readMetricsLog(path.join(dir, 'metrics.jsonl')).filter((e) => Object.keys(e).some((k) => k.startsWith('eval_')));

const BASE = `model_name_or_path: ./tiny
per_device_train_batch_size: 2
per_device_eval_batch_size: 2
max_steps: 2
save_steps: 1
logging_steps: 1
eval_strategy: steps
eval_steps: 1
gradient_checkpointing: false
report_to: tensorboard
`;

function writeRecipe(name: string, text: string): string {
  const file = path.join(root, name);
  fs.writeFileSync(file, BASE + text);
  return file;
}

describe('eval_metric on eval_generation_dataset', () => {
  it('logs eval_exact_match (and per data_source) equal to greedy answers decoded by hand', async () => {
    // References: the untrained model's own answers to questions 0-2, a wrong one for 3, so the
    // mean is neither 0 nor 1 unless training moved the answers (the check below holds either way).
    const proc = await processing.fromPretrained(tinyDir);
    const initial = await models.fromPretrained(tinyDir, { dtype: 'float32' });
    const png = path.join(root, 'a.png');
    const draft = QUESTIONS.map((question, i) => ({
      kind: 'prompt' as const,
      id: `q${i}`,
      prompt: [
        {
          role: 'user' as const,
          content: [...(i % 2 === 0 ? [{ type: 'image' as const }] : []), { type: 'text' as const, text: question }],
        },
      ],
      images: i % 2 === 0 ? [png] : [],
      columns: {},
      source: { file: 'draft', line: i + 1 },
    }));
    const before = [];
    for (const record of draft) before.push(await handGreedy(initial, proc, record));
    initial.dispose();
    jsonl(
      'questions.jsonl',
      QUESTIONS.map((question, i) => ({
        ...(i % 2 === 0 ? { image: 'a.png' } : {}),
        question,
        answer: i < 3 ? before[i] : 'certainly not this',
        data_source: i < 2 ? 'first' : 'second',
      })),
    );
    const recipe = writeRecipe(
      'sft.yaml',
      `trainer: sft
dataset:
  format: trl
  path: ./sft.jsonl
eval_generation_dataset:
  format: vqa
  path: ./questions.jsonl
eval_metric: exact_match
eval_max_new_tokens: ${MAX_NEW}
eval_generation_batch_size: 3
learning_rate: 1.0e-4
output_dir: ./runs/sft
`,
    );
    const trainer = await buildTrainer(loadRecipe(recipe));
    await trainer.train();
    const out = path.join(root, 'runs/sft');
    const entries = evalEntries(out);
    expect(entries.map((e) => e.step)).toEqual([1, 2]);
    const records = await allRecords(await openQuestions(path.join(root, 'questions.jsonl'), 'vqa'));
    const seen: number[] = [];
    for (const entry of entries) {
      const model = await models.fromPretrained(path.join(out, `checkpoint-${entry.step}`), { dtype: 'float32' });
      const answers = [];
      for (const record of records) answers.push(await handGreedy(model, proc, record));
      const expected = meansOf(records, answers);
      const logged = Object.fromEntries(
        Object.entries(entry)
          .filter(([k]) => k.startsWith('eval_exact_match'))
          .map(([k, v]) => [k.slice(5), v]),
      );
      expect(logged).toEqual(expected);
      // The library's own map on the same weights agrees (batched, KV-cached decoding).
      const library = await answerMetrics(model, proc, records, { metric: 'exact_match', maxNewTokens: MAX_NEW });
      expect(library).toEqual(expected);
      seen.push(expected.exact_match!);
      model.dispose();
    }
    // The check had something to check: some answer matched and some did not.
    expect(seen.some((v) => v > 0 && v < 1)).toBe(true);
    const events = fs.readdirSync(path.join(out, 'runs')).map((f) => fs.readFileSync(path.join(out, 'runs', f)));
    expect(events.some((b) => b.includes('eval/exact_match/second'))).toBe(true);
  }, 300_000);
});

/** Summed log-probs of the completion tokens of `sample` (labels != -100), one row alone. */
async function completionLogp(model: CausalLM, proc: processing.Processor, sample: processing.Sample): Promise<number> {
  const batch = await proc.process([sample]);
  const ids = (batch.inputIds.toArray() as number[][])[0]!;
  const labels = (batch.labels!.toArray() as number[][])[0]!;
  const logps = torch.noGrad(() =>
    torch.tidy(() => {
      const inputIds = torch.tensor([ids], { dtype: 'int64' });
      const { logits } = model.forward({ inputIds, attentionMask: torch.onesLike(inputIds) });
      return (logits!.to({ dtype: 'float64' }).logSoftmax(-1).toArray() as number[][][])[0]!;
    }),
  );
  let sum = 0;
  // The token at position t + 1 is predicted by the logits at t.
  for (let t = 0; t + 1 < ids.length; t++) if (labels[t + 1] !== -100) sum += logps[t]![labels[t + 1]!]!;
  return sum;
}

describe('eval_preference_accuracy', () => {
  it('logs the accuracy (ties 0.5) of the implicit rewards computed by hand from log-probs', async () => {
    const recipe = writeRecipe(
      'dpo.yaml',
      `trainer: dpo
dataset:
  format: trl
  path: ./pairs.jsonl
eval_dataset:
  format: trl
  path: ./eval_pairs.jsonl
eval_preference_accuracy: true
learning_rate: 5.0e-3
max_length: 64
output_dir: ./runs/dpo
`,
    );
    const trainer = await buildTrainer(loadRecipe(recipe));
    await trainer.train();
    const out = path.join(root, 'runs/dpo');
    const entries = evalEntries(out);
    expect(entries.map((e) => e.step)).toEqual([1, 2]);
    const proc = await processing.fromPretrained(tinyDir);
    const reference = await models.fromPretrained(tinyDir, { dtype: 'float32' });
    reference.eval();
    const pairs = (await allRecords(await data.openTrl(path.join(root, 'eval_pairs.jsonl')))) as PreferenceRecord[];
    for (const entry of entries) {
      const policy = await models.fromPretrained(path.join(out, `checkpoint-${entry.step}`), { dtype: 'float32' });
      policy.eval();
      let correct = 0;
      for (const record of pairs) {
        const samples = data.preferenceSamples({ index: 0, record, pixels: [] }, { eosToken: proc.tokenizer.eosToken });
        const margin =
          (await completionLogp(policy, proc, samples.chosen)) -
          (await completionLogp(reference, proc, samples.chosen)) -
          ((await completionLogp(policy, proc, samples.rejected)) -
            (await completionLogp(reference, proc, samples.rejected)));
        // Far from a tie, so float32 rounding in the library's fused path cannot flip it.
        expect(Math.abs(margin)).toBeGreaterThan(1e-4);
        correct += margin > 0 ? 1 : 0;
      }
      expect(entry.eval_preference_accuracy).toBe(correct / pairs.length);
      // TRL's rewards/accuracies (ties 0) is logged beside it and never above it.
      expect(entry['eval_rewards/accuracies'] as number).toBeLessThanOrEqual(correct / pairs.length + 1e-12);
      policy.dispose();
    }
    reference.dispose();
  }, 300_000);
});

describe('bad settings name the key', () => {
  const sft = (extra: string) =>
    writeRecipe(
      'bad.yaml',
      `trainer: sft\ndataset:\n  format: trl\n  path: ./sft.jsonl\noutput_dir: ./runs/bad\n${extra}`,
    );

  it.each([
    ['eval_metric: bleu\n', 'eval_metric'],
    ['eval_metric: exact_match\n', 'invalid eval_generation_dataset:'],
    ['eval_generation_dataset:\n  format: vqa\n  path: ./questions.jsonl\n', 'invalid eval_metric:'],
    [
      'eval_metric: anls\neval_generation_dataset:\n  format: mmpr\n  path: ./x.json\n',
      'invalid eval_generation_dataset.format:',
    ],
    [
      'eval_metric: anls\neval_generation_dataset:\n  format: vqa\n  path: ./q.jsonl\n  max_tile: 2\n',
      'eval_generation_dataset.max_tile',
    ],
    ['eval_preference_accuracy: true\n', 'eval_preference_accuracy'],
  ])('%s', (extra, key) => {
    expect(() => loadRecipe(sft(extra))).toThrow(key);
  });

  it('a dpo recipe asking preference accuracy without eval_dataset', () => {
    const file = writeRecipe(
      'bad_dpo.yaml',
      'trainer: dpo\ndataset:\n  format: trl\n  path: ./pairs.jsonl\noutput_dir: ./runs/bad\neval_preference_accuracy: true\n',
    );
    expect(() => loadRecipe(file)).toThrow('invalid eval_dataset: eval_preference_accuracy reads the pairs');
  });

  it('a missing question file is named by eval_generation_dataset.path when the trainer is built', async () => {
    const file = sft('eval_metric: anls\neval_generation_dataset:\n  format: vqa\n  path: ./nowhere.jsonl\n');
    await expect(buildTrainer(loadRecipe(file))).rejects.toThrow(
      `invalid eval_generation_dataset.path: ${path.join(root, 'nowhere.jsonl')} does not exist`,
    );
  }, 60_000);
});

describe('evalHookOf (createTrainer API)', () => {
  const none = {} as never;
  const args = { perDeviceEvalBatchSize: 2, maxLength: null };
  const prompts: data.PromptRecord[] = [];

  it.each([
    [{ evalMetric: 'exact_match' }, {}, "evalMetric: 'exact_match' scores answers to a prompt set"],
    [{ evalMetric: 'bleu' }, { evalGenerationDataset: prompts }, 'evalMetric: expected one of exact_match'],
    [{}, { evalGenerationDataset: prompts }, 'evalGenerationDataset: given, but evalMetric'],
    [{ evalPreferenceAccuracy: true }, { method: 'sft' }, 'evalPreferenceAccuracy: for dpo'],
    [{ evalPreferenceAccuracy: true }, { evalDataset: null }, 'evalPreferenceAccuracy: needs an evalDataset'],
    [{ evalPreferenceAccuracy: true }, { evalDataset: {} as never }, 'evalPreferenceAccuracy: needs the reference'],
  ])('%o %o', (extra, init, message) => {
    const make = () =>
      evalHookOf({ method: 'dpo', model: none, processor: none, ...init, args: { ...args, ...extra } });
    expect(make).toThrow(message);
  });

  it('nothing asked: no hook', () => {
    expect(evalHookOf({ method: 'dpo', model: none, processor: none, args })).toBeNull();
  });
});

describe('two Gloo ranks', () => {
  it('rank 0 alone runs the hook and logs eval_exact_match; rank 1 reads no prompt', async () => {
    const port = await freePort();
    const out = path.join(root, 'runs/ranks');
    const env = (rank: number): NodeJS.ProcessEnv => ({
      ...process.env,
      OMP_NUM_THREADS: '1',
      EVAL_HOOK_SPEC: JSON.stringify({ tiny: tinyDir, trainFile: path.join(root, 'sft.jsonl'), out }),
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      WORLD_SIZE: '2',
      LOCAL_WORLD_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
    });
    const worker = path.join(import.meta.dirname, 'fixtures/eval_hook_worker.ts');
    const ranks = [0, 1].map((r) => start(process.execPath, [RUN_TS, worker], env(r)));
    const limit = setTimeout(() => {
      for (const { child } of ranks) if (child.exitCode === null) child.kill('SIGKILL');
    }, 150_000);
    const runs = await Promise.all(ranks.map((r) => r.done)).finally(() => clearTimeout(limit));
    const [zero, one] = runs.map(resultOf);
    expect(zero).toMatchObject({ rank: 0, globalStep: 2, reads: 6 }); // 3 prompts at steps 1 and 2
    expect(one).toMatchObject({ rank: 1, globalStep: 2, reads: 0 });
    const logged = evalEntries(out);
    expect(logged.map((e) => e.step)).toEqual([1, 2]);
    for (const entry of logged) {
      expect(
        Object.keys(entry)
          .filter((k) => k.startsWith('eval_'))
          .sort(),
      ).toEqual(['eval_exact_match', 'eval_exact_match/toy']);
    }
  }, 200_000);
});
