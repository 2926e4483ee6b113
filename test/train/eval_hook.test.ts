// The trainers' eval hook through a recipe (loadRecipe + buildTrainer + train) on the tiny Qwen2-VL:
// - SFT with eval_metric exact_match on a vqa question file, evaluated at steps 1 and 2: each
//   logged eval_exact_match (overall and per data_source) equals exact match of greedy answers
//   decoded here token by token (a full forward per token, no KV cache, no batching) by the
//   checkpoint-N weights of that step; with eval_save_predictions each step's
//   eval_predictions-N.jsonl holds those answers, their scores by exactMatch, ids and references;
// - DPO with eval_preference_accuracy: each logged value equals the accuracy computed here from
//   summed completion log-probs of policy (checkpoint-N) and reference (the source checkpoint),
//   one unpadded row at a time with log_softmax + gather; with precompute_ref_log_probs and no
//   reference model the run reads the eval pairs' cached values and logs what the live run logs;
// - KTO: eval_loss, eval_kl, eval_rewards/*, eval_logps/* equal TRL's formulas on those hand
//   log-probs (KL rows rolled by +1 within each eval batch), and eval_preference_accuracy the share
//   of each prompt's (desirable, undesirable) pairs ranked right; the same with the reference
//   precomputed; its eval_exact_match and predictions files hold the answers decoded by hand;
// - bad settings are errors naming the key;
// - on 2 Gloo ranks (fixtures/eval_hook_worker.ts) rank 0 alone reads the prompts and logs.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { data, generation, models, processing, torch } from '../../lib/index.js';
import type { CausalLM } from '../../lib/models/index.js';
import type { PreferenceRecord, UnpairedRecord } from '../../lib/data/records.js';
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
  return (await handAnswer(model, proc, record)).text;
}

/** handGreedy's answer and why it ended: its stop token ('stop') or MAX_NEW tokens ('length'). */
async function handAnswer(
  model: CausalLM,
  proc: processing.Processor,
  record: data.PromptRecord,
): Promise<{ text: string; finish: 'stop' | 'length' }> {
  const images = await data.decodeRecordImages(record);
  const batch = await proc.process([{ prompt: record.prompt, images }]);
  const extras = batch as { imageGridThw?: torch.Tensor | null };
  const ids = (batch.inputIds.toArray() as number[][])[0]!;
  const stops = model.textConfig.eosTokenIds;
  const banned = new Set(generation.nonSampledTokenIds(model).filter((id) => !stops.includes(id)));
  const answer: number[] = [];
  let finish: 'stop' | 'length' = 'length';
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
    if (stops.includes(best)) {
      finish = 'stop';
      break;
    }
    answer.push(best);
  }
  return { text: proc.tokenizer.decode(answer, { skipSpecialTokens: true }), finish };
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

/** BASE and `text` as one recipe; a top-level key of `text` replaces BASE's. */
function writeRecipe(name: string, text: string): string {
  const file = path.join(root, name);
  const keyOf = (line: string) => /^(\w+):/.exec(line)?.[1] ?? null;
  const keys = new Set(text.split('\n').map(keyOf));
  const base = BASE.split('\n').filter((line) => line !== '' && !keys.has(keyOf(line)));
  fs.writeFileSync(file, `${base.join('\n')}\n${text}`);
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
eval_save_predictions: true
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
      const hand = [];
      for (const record of records) hand.push(await handAnswer(model, proc, record));
      const answers = hand.map((h) => h.text);
      const expected = meansOf(records, answers);
      // eval_save_predictions: the step's file holds each answer decoded here, scored here by exact
      // match against the row's answer, with the row's id (file:line), data_source and reference.
      const file = path.join(out, `eval_predictions-${entry.step}.jsonl`);
      const lines = fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual(
        records.map((r, i) => ({
          id: `questions.jsonl:${i + 1}`,
          prediction: answers[i],
          score: exactMatch(answers[i]!, [String(r.columns.answer)]),
          data_source: r.columns.data_source,
          finish_reason: hand[i]!.finish,
          reference: [String(r.columns.answer)],
        })),
      );
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
    // One file per evaluation, nothing left of the atomic writes.
    expect(
      fs
        .readdirSync(out)
        .filter((f) => f.includes('eval_predictions') || f.includes('.tmp'))
        .sort(),
    ).toEqual(['eval_predictions-1.jsonl', 'eval_predictions-2.jsonl']);
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

const DPO_RECIPE = `trainer: dpo
dataset:
  format: trl
  path: ./pairs.jsonl
eval_dataset:
  format: trl
  path: ./eval_pairs.jsonl
eval_preference_accuracy: true
learning_rate: 5.0e-3
max_length: 64
`;

/** Trains a recipe once per name (the live-reference DPO run serves two tests). */
const runs = new Map<string, Promise<string>>();
function trained(name: string, text: string): Promise<string> {
  if (!runs.has(name)) {
    runs.set(
      name,
      (async () => {
        const trainer = await buildTrainer(
          loadRecipe(writeRecipe(`${name}.yaml`, `${text}output_dir: ./runs/${name}\n`)),
        );
        await trainer.train();
        return path.join(root, 'runs', name);
      })(),
    );
  }
  return runs.get(name)!;
}

/**
 * The preference accuracy (ties 0.5) of checkpoint-`step` of `out` against the source checkpoint on
 * eval_pairs.jsonl, from log-probs summed here row by row.
 */
async function handPairAccuracy(out: string, step: number): Promise<number> {
  const proc = await processing.fromPretrained(tinyDir);
  const reference = await models.fromPretrained(tinyDir, { dtype: 'float32' });
  const policy = await models.fromPretrained(path.join(out, `checkpoint-${step}`), { dtype: 'float32' });
  const pairs = (await allRecords(await data.openTrl(path.join(root, 'eval_pairs.jsonl')))) as PreferenceRecord[];
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
  policy.dispose();
  reference.dispose();
  return correct / pairs.length;
}

describe('eval_preference_accuracy', () => {
  it('logs the accuracy (ties 0.5) of the implicit rewards computed by hand from log-probs', async () => {
    const out = await trained('dpo', DPO_RECIPE);
    const entries = evalEntries(out);
    expect(entries.map((e) => e.step)).toEqual([1, 2]);
    for (const entry of entries) {
      const accuracy = await handPairAccuracy(out, entry.step as number);
      expect(entry.eval_preference_accuracy).toBe(accuracy);
      // TRL's rewards/accuracies (ties 0) is logged beside it and never above it.
      expect(entry['eval_rewards/accuracies'] as number).toBeLessThanOrEqual(accuracy + 1e-12);
    }
  }, 300_000);

  it('with precompute_ref_log_probs and no reference model, reads the eval pairs precomputed (equal to a live reference)', async () => {
    const saved = process.env.VLALIGN_CACHE;
    process.env.VLALIGN_CACHE = path.join(root, 'cache');
    try {
      const live = evalEntries(await trained('dpo', DPO_RECIPE));
      const out = await trained('dpo_pre', `${DPO_RECIPE}precompute_ref_log_probs: true\n`);
      // The cache holds the eval pairs too: 4 training pairs + 3 eval pairs.
      const cached = fs.readdirSync(path.join(root, 'cache', 'ref_logps'));
      expect(cached).toHaveLength(1);
      const lines = fs
        .readFileSync(path.join(root, 'cache', 'ref_logps', cached[0]!), 'utf8')
        .trim()
        .split('\n');
      expect(lines).toHaveLength(7);
      const entries = evalEntries(out);
      expect(entries.map((e) => e.step)).toEqual([1, 2]);
      for (const [k, entry] of entries.entries()) {
        // The same reference values, so the same training and the same evaluation as the live run's;
        // and the independent hand computation against the source checkpoint (a policy used as its own
        // reference would read exactly 0.5, which 3 pairs without ties cannot).
        expect(entry.eval_preference_accuracy).toBe(live[k]!.eval_preference_accuracy);
        expect(entry.eval_preference_accuracy).toBe(await handPairAccuracy(out, entry.step as number));
        for (const name of ['eval_rewards/chosen', 'eval_rewards/rejected', 'eval_loss']) {
          expect(entry[name] as number).toBeCloseTo(live[k]![name] as number, 5);
        }
      }
    } finally {
      if (saved === undefined) delete process.env.VLALIGN_CACHE;
      else process.env.VLALIGN_CACHE = saved;
    }
  }, 400_000);
});

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('kto evaluation', () => {
  // Eval rows: prompts 4-6 each with a desirable and an undesirable completion (3 pairs; prompt 5's
  // labels go against what training teaches, so the accuracy is neither 0 nor 1), prompt 7 with a
  // desirable one only (in no pair). Eval batches of 3, 3 and 1 rows.
  const evalRows = [
    { p: 4, c: 'good answer 4', label: true },
    { p: 4, c: 'bad 4', label: false },
    { p: 5, c: 'good answer 5', label: false },
    { p: 5, c: 'bad 5', label: true },
    { p: 6, c: 'good answer 6', label: true },
    { p: 6, c: 'bad 6', label: false },
    { p: 7, c: 'good answer 7', label: true },
  ];
  const BATCH = 3;

  const KTO_RECIPE = `trainer: kto
dataset:
  format: trl
  path: ./kto.jsonl
eval_dataset:
  format: trl
  path: ./kto_eval.jsonl
per_device_eval_batch_size: ${BATCH}
eval_preference_accuracy: true
eval_generation_dataset:
  format: vqa
  path: ./kto_questions.jsonl
eval_metric: exact_match
eval_max_new_tokens: ${MAX_NEW}
eval_save_predictions: true
learning_rate: 5.0e-3
max_length: 64
`;

  beforeAll(() => {
    // The hook's generation metric runs for KTO as for any trainer.
    jsonl('kto_questions.jsonl', [
      { question: 'query 4', answer: 'good answer 4', data_source: 'kto' },
      { question: 'query 8', answer: 'bad 8', data_source: 'kto' },
    ]);
    const row = (p: number, c: string, label: boolean) => ({
      prompt: [{ role: 'user', content: `query ${p}` }],
      completion: [{ role: 'assistant', content: c }],
      label,
    });
    jsonl(
      'kto.jsonl',
      [0, 1, 2, 3].map((i) => row(i, i % 2 === 0 ? `good answer ${i}` : `bad ${i}`, i % 2 === 0)),
    );
    jsonl(
      'kto_eval.jsonl',
      evalRows.map((r) => row(r.p, r.c, r.label)),
    );
  });

  it("logs TRL's eval metrics (loss, kl, rewards, logps) and preference accuracy equal to a hand computation", async () => {
    await checkKtoEval(await trained('kto', KTO_RECIPE));
  }, 400_000);

  it('with precompute_ref_log_probs and no reference model: the same formulas on the cached eval values', async () => {
    // The precompute pass rolls the eval rows' KL completions in batches of 3, as the eval batches do.
    const saved = process.env.VLALIGN_CACHE;
    process.env.VLALIGN_CACHE = path.join(root, 'cache_kto');
    try {
      const recipe = `${KTO_RECIPE}precompute_ref_log_probs: true\nprecompute_ref_batch_size: ${BATCH}\n`;
      await checkKtoEval(await trained('kto_pre', recipe));
    } finally {
      if (saved === undefined) delete process.env.VLALIGN_CACHE;
      else process.env.VLALIGN_CACHE = saved;
    }
  }, 400_000);

  /** The run's eval entries against TRL's formulas on log-probs of checkpoint-N and the source checkpoint. */
  async function checkKtoEval(out: string): Promise<void> {
    const entries = evalEntries(out);
    expect(entries.map((e) => e.step)).toEqual([1, 2]);
    const proc = await processing.fromPretrained(tinyDir);
    const reference = await models.fromPretrained(tinyDir, { dtype: 'float32' });
    const records = (await allRecords(await data.openTrl(path.join(root, 'kto_eval.jsonl')))) as UnpairedRecord[];
    const eos = { eosToken: proc.tokenizer.eosToken };
    const sample = (record: UnpairedRecord) => data.unpairedSample({ index: 0, record, pixels: [] }, eos);
    const beta = 0.1; // KTOConfig's default
    const accuracies: number[] = [];
    const questions = await allRecords(await openQuestions(path.join(root, 'kto_questions.jsonl'), 'vqa'));
    for (const entry of entries) {
      const policy = await models.fromPretrained(path.join(out, `checkpoint-${entry.step}`), { dtype: 'float32' });
      const logps = async (s: processing.Sample) =>
        [await completionLogp(policy, proc, s), await completionLogp(reference, proc, s)] as const;
      const [pi, ref] = [[] as number[], [] as number[]];
      for (const record of records) {
        const [p, r] = await logps(sample(record));
        pi.push(p);
        ref.push(r);
      }
      // Per eval batch: the KL rows (each row's prompt with the previous row's completion, TRL's
      // roll by +1), z0 = max(0, mean(policy - reference)) over them, and the mean row loss.
      const [losses, kls] = [[] as number[], [] as number[]];
      for (let start = 0; start < records.length; start += BATCH) {
        const batch = records.slice(start, start + BATCH);
        const shifted = [];
        for (const [i, record] of batch.entries()) {
          const previous = batch[(i + batch.length - 1) % batch.length]!;
          const [p, r] = await logps(sample({ ...record, completion: previous.completion }));
          shifted.push(p - r);
        }
        const z0 = Math.max(0, mean(shifted));
        kls.push(z0);
        losses.push(
          mean(
            batch.map((record, i) => {
              const r = pi[start + i]! - ref[start + i]!;
              return record.label ? 1 - sigmoid(beta * (r - z0)) : 1 - sigmoid(beta * (z0 - r));
            }),
          ),
        );
      }
      const good = records.flatMap((r, i) => (r.label ? [i] : []));
      const bad = records.flatMap((r, i) => (r.label ? [] : [i]));
      const chosen = mean(good.map((i) => beta * (pi[i]! - ref[i]!)));
      const rejected = mean(bad.map((i) => beta * (pi[i]! - ref[i]!)));
      const expected: Record<string, number> = {
        // HF's evaluation loop repeats each batch's loss per sample: batches of 3, 3 and 1 rows.
        eval_loss: (3 * losses[0]! + 3 * losses[1]! + losses[2]!) / 7,
        eval_kl: mean(kls),
        'eval_rewards/chosen': chosen,
        'eval_rewards/rejected': rejected,
        'eval_rewards/margins': chosen - rejected,
        'eval_logps/chosen': mean(good.map((i) => pi[i]!)),
        'eval_logps/rejected': mean(bad.map((i) => pi[i]!)),
      };
      for (const [name, value] of Object.entries(expected)) {
        expect(Math.abs((entry[name] as number) - value), name).toBeLessThan(2e-5 * Math.max(1, Math.abs(value)));
      }
      // The KL term is not trivially zero here (the check above would not see the roll otherwise).
      expect(kls.some((k) => k > 1e-3)).toBe(true);
      // Preference accuracy: each prompt's desirable reward against its undesirable one (rows 0/1,
      // 3/2, 4/5); row 6 has no undesirable counterpart and takes part in no pair.
      const pairs = [
        [0, 1],
        [3, 2],
        [4, 5],
      ];
      let correct = 0;
      for (const [g, b] of pairs) {
        const margin = pi[g!]! - ref[g!]! - (pi[b!]! - ref[b!]!);
        expect(Math.abs(margin)).toBeGreaterThan(1e-4);
        correct += margin > 0 ? 1 : 0;
      }
      expect(entry.eval_preference_accuracy).toBe(correct / pairs.length);
      accuracies.push(correct / pairs.length);
      // eval_exact_match and the step's predictions file: the answers decoded here by checkpoint-N.
      const file = path.join(out, `eval_predictions-${entry.step}.jsonl`);
      const predicted = fs
        .readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { prediction: string });
      const answers = [];
      for (const question of questions) answers.push(await handGreedy(policy, proc, question));
      expect(predicted.map((p) => p.prediction)).toEqual(answers);
      expect(entry.eval_exact_match).toBe(meansOf(questions, answers).exact_match);
      policy.dispose();
    }
    reference.dispose();
    // The pairing had something to rank: some pairs right and some wrong.
    expect(accuracies.some((a) => a > 0 && a < 1)).toBe(true);
  }
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
    ['eval_save_predictions: true\n', 'invalid eval_save_predictions: writes the answers eval_metric scores'],
    [
      'eval_metric: anls\neval_generation_dataset:\n  format: vqa\n  path: ./q.jsonl\neval_save_predictions: 1\n',
      'eval_save_predictions',
    ],
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

  it('a kto recipe asking preference accuracy without eval_dataset', () => {
    const file = writeRecipe(
      'bad_kto.yaml',
      'trainer: kto\ndataset:\n  format: trl\n  path: ./kto.jsonl\noutput_dir: ./runs/bad\neval_preference_accuracy: true\n',
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
    [{ evalPreferenceAccuracy: true }, { method: 'sft' }, 'evalPreferenceAccuracy: for dpo and kto'],
    [{ evalPreferenceAccuracy: true }, { method: 'grpo' }, 'evalPreferenceAccuracy: for dpo and kto'],
    [{ evalPreferenceAccuracy: true }, { evalDataset: null }, 'evalPreferenceAccuracy: needs an evalDataset'],
    [
      { evalPreferenceAccuracy: true },
      { method: 'kto', evalDataset: null },
      'evalPreferenceAccuracy: needs an evalDataset of unpaired rows',
    ],
    [{ evalPreferenceAccuracy: true }, { evalDataset: {} as never }, 'evalPreferenceAccuracy: needs a reference'],
    [{ evalSavePredictions: true }, {}, 'evalSavePredictions (eval_save_predictions): writes the answers'],
    // KTO's eval KL with precomputed reference values: the eval batches must pair the rows the pass paired.
    [
      { precomputeRefLogProbs: true, perDeviceTrainBatchSize: 2, perDeviceEvalBatchSize: 3, lossType: 'kto' },
      { method: 'kto', evalDataset: {} as never },
      "perDeviceEvalBatchSize: kto's eval KL term reads reference values precomputed for the mismatched pairs of batches of 2",
    ],
  ])('%o %o', (extra, init, message) => {
    const make = () =>
      evalHookOf({ method: 'dpo', model: none, processor: none, ...init, args: { ...args, ...extra } });
    expect(make).toThrow(message);
  });

  it('nothing asked: no hook', () => {
    expect(evalHookOf({ method: 'dpo', model: none, processor: none, args })).toBeNull();
    // Matching batch sizes (and apo_zero_unpaired, which has no KL term) pass the KTO check.
    const kto = { precomputeRefLogProbs: true, perDeviceTrainBatchSize: 2, lossType: 'kto' };
    const evalDataset = {} as never;
    expect(
      evalHookOf({ method: 'kto', model: none, processor: none, evalDataset, args: { ...args, ...kto } }),
    ).toBeNull();
    const apo = { ...kto, perDeviceEvalBatchSize: 3, lossType: 'apo_zero_unpaired' };
    expect(
      evalHookOf({ method: 'kto', model: none, processor: none, evalDataset, args: { ...args, ...apo } }),
    ).toBeNull();
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
