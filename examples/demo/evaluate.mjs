// Held-out evaluation of a checkpoint on the shapes task through vlalign's public evaluation API:
// greedy answers (evaluation.greedyAnswers; accuracy per question type, on the flawed colours and
// overall, by exact match) and preference accuracy on the flaw's pairs (evaluation.
// preferenceAccuracy: the policy's implicit reward margin against the starting model's, ties 0.5).
import { data, evaluation, models, processing } from 'vlalign';
import { QUESTION_TYPES } from './shapes.mjs';

const BATCH = 64;
// "bottom right" is 10 tokens of the tiny byte-level BPE, then <|im_end|>.
const MAX_NEW_TOKENS = 12;

/** The held-out files as datasets: questions (TRL prompt jsonl) and pairs (VL-RLHF plain_dpo jsonl). */
export async function openHeldout(files) {
  return {
    questions: await data.openDataset({ format: 'trl_prompt', path: files.questions }),
    pairs: await data.openDataset({ format: 'plain_dpo', path: files.pairs }),
  };
}

async function load(dir) {
  const model = (await models.fromPretrained(dir)).eval();
  model.requiresGrad_(false);
  return model;
}

/** Accuracy per question type, on the flawed colours' questions and overall, from the records' columns. */
export function scoreAnswers(answers) {
  const mean = (list) => (list.length === 0 ? null : list.reduce((a, b) => a + b, 0) / list.length);
  const rows = answers.map(({ record, text }) => ({ ...record.columns, right: text.trim() === record.columns.answer }));
  const accuracy = (keep) => mean(rows.filter(keep).map((r) => (r.right ? 1 : 0)));
  const byType = Object.fromEntries(QUESTION_TYPES.map((type) => [type, accuracy((r) => r.type === type)]));
  return { byType, flawed: accuracy((r) => r.flawed), overall: accuracy(() => true) };
}

/**
 * One checkpoint's held-out numbers {byType, flawed, overall, preference} and its answers (text per
 * question, in order). `referenceDir`: the starting model the preference margins are measured
 * against; the starting model itself scores 0.5 there by definition, so it is not recomputed.
 */
export async function evaluateCheckpoint(dir, heldout, referenceDir) {
  const processor = await processing.fromPretrained(dir, { paddingSide: 'left' });
  const model = await load(dir);
  try {
    const answers = [];
    const options = { batchSize: BATCH, maxNewTokens: MAX_NEW_TOKENS };
    for await (const answer of evaluation.greedyAnswers(model, processor, heldout.questions, options)) {
      answers.push(answer);
    }
    let preference = 0.5;
    if (referenceDir !== dir) {
      const reference = await load(referenceDir);
      try {
        const result = await evaluation.preferenceAccuracy(model, processor, heldout.pairs, {
          reference,
          batchSize: BATCH,
        });
        preference = result.accuracy;
      } finally {
        reference.dispose();
      }
    }
    return { scores: { ...scoreAnswers(answers), preference }, answers: answers.map((a) => a.text.trim()) };
  } finally {
    model.dispose();
  }
}
