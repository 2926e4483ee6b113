// Scores of a free-text answer against its reference answers, as the VQA-style benchmarks compute
// them. Every rule is the rewards' (lib/rewards/mmpr.ts, math_grader.ts): EvalAI's normalisation,
// ChartQA's relaxed match, ANLS, mathruler's equivalence; what this file adds is how a benchmark
// combines them over several reference answers and its thresholds.
import { anls, evalAiNormalize, extractBoxedContent, gradeAnswer, relaxedCorrectness } from '../rewards/index.js';

/**
 * 1 when the prediction equals one of the answers after EvalAI's normalisation (lowercase, the
 * punctuation rules, number words to digits, articles dropped, contractions restored), else 0. An
 * answer that normalises to nothing matches nothing.
 */
export function exactMatch(prediction: string, answers: readonly string[]): number {
  const p = evalAiNormalize(prediction);
  if (p.length === 0) return 0;
  return answers.some((a) => evalAiNormalize(a) === p) ? 1 : 0;
}

/**
 * The VQA accuracy of VQAv2 / TextVQA over the human answers (usually 10): for each leave-one-out
 * subset, min(1, matches / 3), averaged over the subsets; answers compared after EvalAI's
 * normalisation. With one answer it is exact match.
 */
export function vqaAccuracy(prediction: string, answers: readonly string[]): number {
  if (answers.length <= 1) return exactMatch(prediction, answers);
  const p = evalAiNormalize(prediction);
  const matches = answers.map((a) => (p.length > 0 && evalAiNormalize(a) === p ? 1 : 0));
  const total = matches.reduce<number>((s, m) => s + m, 0);
  const subsets = matches.map((m) => Math.min(1, (total - m) / 3));
  return subsets.reduce((s, v) => s + v, 0) / subsets.length;
}

/**
 * ChartQA's relaxed accuracy: numbers within `tolerance` (5%) of the answer, a "20xx" year or a
 * non-number exactly (case-insensitive); the best over the answers, both sides trimmed.
 */
export function relaxedAccuracy(prediction: string, answers: readonly string[], tolerance = 0.05): number {
  return answers.some((a) => relaxedCorrectness(a.trim(), prediction.trim(), tolerance)) ? 1 : 0;
}

/**
 * ANLS (DocVQA, InfographicVQA): s = 1 - levenshtein / max length over the best answer (lowercased,
 * whitespace squashed); s below `threshold` (0.5) scores 0, as InternVL's and the RRC's evaluation
 * cut it.
 */
export function anlsScore(prediction: string, answers: readonly string[], threshold = 0.5): number {
  const best = Math.max(0, ...answers.map((a) => anls(a, prediction)));
  return best < threshold ? 0 : best;
}

/**
 * The last `\boxed{...}` of the prediction judged by mathruler's grade_answer against the answer
 * (itself unboxed when written boxed), 1 or 0; a prediction without a box scores 0 (verl's geo3k).
 */
export function boxedMathScore(prediction: string, answers: readonly string[]): number {
  const given = extractBoxedContent(prediction);
  if (given === 'None') return 0;
  const unboxed = (a: string) => (a.includes('\\boxed{') ? extractBoxedContent(a) : a.trim());
  return answers.some((a) => gradeAnswer(given, unboxed(a))) ? 1 : 0;
}
