// The metrics `vlalign eval` and `evaluation.greedyAccuracy` name, each a function of one
// prediction and its record's columns (where the reference answers live). A metric's score is a
// number per record (averaged over records); some also report parts (ViRFT's iou / confidence /
// format), averaged the same way.
import { groundTruthOf } from '../rewards/index.js';
import { anlsScore, boxedMathScore, exactMatch, relaxedAccuracy, vqaAccuracy } from './answer_metrics.js';
import { groundingTruthOf, refcocoHit, virftDetection } from './grounding.js';
import { multipleChoiceScore } from './multiple_choice.js';

export const METRICS = [
  'exact_match',
  'vqa_accuracy',
  'relaxed_accuracy',
  'anls',
  'multiple_choice',
  'boxed_math',
  'refcoco_iou',
  'virft_detection',
] as const;
export type MetricName = (typeof METRICS)[number];

export interface MetricScore {
  score: number;
  /** Named parts of the score (virft_detection: iou, confidence, format). */
  parts?: Record<string, number>;
}

type Columns = Readonly<Record<string, unknown>>;
type Scorer = (prediction: string, columns: Columns, where: string) => MetricScore;

const onAnswers =
  (score: (prediction: string, answers: readonly string[]) => number): Scorer =>
  (prediction, columns, where) => ({ score: score(prediction, answersOf(columns, where)) });

const SCORERS: Record<MetricName, Scorer> = {
  exact_match: onAnswers(exactMatch),
  vqa_accuracy: onAnswers(vqaAccuracy),
  relaxed_accuracy: onAnswers((p, a) => relaxedAccuracy(p, a)),
  anls: onAnswers((p, a) => anlsScore(p, a)),
  multiple_choice: onAnswers((p, a) => multipleChoiceScore(p, a)),
  boxed_math: onAnswers(boxedMathScore),
  refcoco_iou: (prediction, columns, where) => ({ score: refcocoHit(prediction, groundingTruthOf(columns, where)) }),
  virft_detection: (prediction, columns, where) => {
    const { score, ...parts } = virftDetection(prediction, solutionOf(columns, where));
    return { score, parts };
  },
};

/** Scores one prediction; `where` (the record's file and line) names it when its reference is missing. */
export function scorePrediction(metric: MetricName, prediction: string, columns: Columns, where: string): MetricScore {
  const scorer = SCORERS[metric];
  if (scorer === undefined)
    throw new RangeError(`unknown metric ${JSON.stringify(metric)}; one of ${METRICS.join(', ')}`);
  return scorer(prediction, columns, where);
}

/**
 * What `metric` scores an answer against, as plain JSON (the predictions files show it): the
 * reference answers, refcoco's box (pixels or /1000, with the image size), or ViRFT's solution text.
 */
export function referenceOf(metric: MetricName, columns: Columns, where: string): unknown {
  if (metric === 'refcoco_iou') return groundingTruthOf(columns, where);
  if (metric === 'virft_detection') return solutionOf(columns, where);
  return answersOf(columns, where);
}

/** Whether `name` is a metric (for option checks). */
export const isMetricName = (name: string): name is MetricName => (METRICS as readonly string[]).includes(name);

/**
 * The reference answers of a record: `answers` (a list, VQAv2 / TextVQA's human answers), else
 * `answer`, else the rewards' ground truth (`ground_truth`, verl's `reward_model.ground_truth`,
 * `solution`); a string or a list of strings (numbers are written as text).
 */
export function answersOf(columns: Columns, where: string): string[] {
  const value = columns.answers ?? columns.answer ?? groundTruthOf(columns);
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || !list.every((v) => typeof v === 'string' || typeof v === 'number')) {
    throw new TypeError(
      `${where}: no reference answer: expected a string (or list of strings) in answers / answer / ground_truth / solution, received ${JSON.stringify(value)}`,
    );
  }
  return list.map(String);
}

function solutionOf(columns: Columns, where: string): string {
  const value = columns.solution ?? groundTruthOf(columns);
  if (typeof value !== 'string') {
    throw new TypeError(
      `${where}: virft_detection reads the solution column (text), received ${JSON.stringify(value)}`,
    );
  }
  return value;
}
