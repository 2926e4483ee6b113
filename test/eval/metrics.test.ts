// Every metric against hand-written cases: EvalAI's normalisation rules one by one (from its
// processPunctuation / processDigitArticle and the VQA accuracy formula), ChartQA's 5% tolerance,
// ANLS with its 0.5 cut, option letters, boxed math answers, InternVL's refcoco hit and ViRFT's
// detection reward, each worked out by hand.
import { describe, expect, it } from 'vitest';
import { anlsScore, boxedMathScore, exactMatch, relaxedAccuracy, vqaAccuracy } from '../../lib/eval/answer_metrics.js';
import {
  groundingTruthOf,
  REFCOCO_PROMPT,
  refcocoHit,
  refcocoPrompt,
  virftDetection,
} from '../../lib/eval/grounding.js';
import { answersOf, scorePrediction } from '../../lib/eval/metrics.js';
import { extractChoiceLetter, multipleChoiceScore } from '../../lib/eval/multiple_choice.js';

describe('exact match with EvalAI normalisation', () => {
  it.each([
    ['Two', '2', 'number words become digits'],
    ['none', '0', "'none' is 0 in the manual map"],
    ['the dog', 'dog', 'articles go'],
    ['A Red Car', 'red car', 'lowercased, article dropped'],
    ['dont', "don't", 'contractions are restored'],
    ['yes.', 'yes', 'a period not before a digit goes'],
    ['3.5', '3.5', 'a period before a digit stays'],
    ['1,000', '1000', 'commas inside numbers go'],
    ['t-shirt', 't shirt', 'an unspaced hyphen becomes a space'],
    ['t - shirt', 't shirt', 'a spaced hyphen is removed (the spaces remain and squash)'],
    ['what?', 'what', 'question marks go'],
    ['  left\n', 'left', 'whitespace is trimmed'],
  ])('%j matches %j (%s)', (prediction, answer) => {
    expect(exactMatch(prediction, [answer])).toBe(1);
  });

  it.each([
    ['3.5', '35'],
    ['cat', 'cats'],
    ['two dogs', '2 cats'],
  ])('%j does not match %j', (prediction, answer) => {
    expect(exactMatch(prediction, [answer])).toBe(0);
  });

  it('an answer that normalises to nothing matches nothing; any listed answer counts', () => {
    expect(exactMatch('', [''])).toBe(0);
    expect(exactMatch('the', ['a'])).toBe(0);
    expect(exactMatch('blue', ['red', 'Blue'])).toBe(1);
  });
});

describe('VQA accuracy', () => {
  // 10 human answers, k of them the prediction: mean over the 10 leave-one-out subsets of min(1, matches / 3).
  const answers = (k: number) => [...Array(k).fill('two'), ...Array(10 - k).fill('three')];
  it.each([
    [0, 0],
    [1, (1 * 0 + 9 * (1 / 3)) / 10],
    [2, (2 * (1 / 3) + 8 * (2 / 3)) / 10],
    [3, (3 * (2 / 3) + 7 * 1) / 10],
    [4, 1],
  ])('%i of 10 annotators agree: %f', (k, expected) => {
    expect(vqaAccuracy('2', answers(k))).toBeCloseTo(expected, 12);
  });
  it('one answer is exact match', () => {
    expect(vqaAccuracy('Two', ['2'])).toBe(1);
  });
});

describe('relaxed accuracy (ChartQA)', () => {
  it.each([
    ['10.4', '10', 1, '4% off'],
    ['10.6', '10', 0, '6% off'],
    ['9.5', '10', 1, '5% exactly'],
    ['45%', '45', 1, 'a percent sign is stripped'],
    ['2021', '2020', 0, 'a 20xx year must be exact'],
    ['2020', '2020', 1, 'the year itself'],
    ['Yes', 'yes', 1, 'text: case-insensitive exact'],
    ['no', 'yes', 0, 'text: different'],
  ])('%j against %j: %i (%s)', (prediction, answer, expected) => {
    expect(relaxedAccuracy(prediction, [answer])).toBe(expected);
  });
});

describe('ANLS (threshold 0.5)', () => {
  it('1 - levenshtein / max length, lowercased', () => {
    expect(anlsScore('Hello Word', ['hello world'])).toBeCloseTo(1 - 1 / 11, 12);
    expect(anlsScore('helo', ['hello'])).toBeCloseTo(0.8, 12);
    expect(anlsScore('hel', ['hello'])).toBeCloseTo(0.6, 12);
  });
  it('below 0.5 scores 0; 0.5 itself is kept; the best answer counts', () => {
    expect(anlsScore('he', ['hello'])).toBe(0); // 1 - 3/5 = 0.4
    expect(anlsScore('ab', ['abcd'])).toBe(0.5); // 1 - 2/4
    expect(anlsScore('helo', ['xyz', 'hello'])).toBeCloseTo(0.8, 12);
  });
});

describe('multiple-choice letters', () => {
  it.each([
    ['B', 'B'],
    ['(C)', 'C'],
    ['B. a red square', 'B'],
    ['(D) the fourth', 'D'],
    ['A: yes', 'A'],
    ['The answer is D.', 'D'],
    ['answer: (B)', 'B'],
    ['I pick option C because it fits', 'C'],
    ['<think>A or B?</think><answer>B</answer>', 'B'],
    ['so \\boxed{C}', 'C'],
    ['I think (B) fits best', 'B'],
  ])('%j picks %s', (text, letter) => {
    expect(extractChoiceLetter(text)).toBe(letter);
  });

  it.each([
    ['A cat sits on the mat', 'a capital article is not an option'],
    ['either (A) or (B), hard to say', 'two letters marked'],
    ['', 'nothing said'],
  ])('%j picks nothing (%s)', (text) => {
    expect(extractChoiceLetter(text)).toBeNull();
  });

  it('only the first `options` letters count', () => {
    expect(extractChoiceLetter('E', 4)).toBeNull();
    expect(extractChoiceLetter('D', 4)).toBe('D');
  });

  it('scores the picked letter against the answer letter', () => {
    expect(multipleChoiceScore('The answer is B', ['B'])).toBe(1);
    expect(multipleChoiceScore('(B)', ['B. red'])).toBe(1);
    expect(multipleChoiceScore('C', ['B'])).toBe(0);
    expect(() => multipleChoiceScore('C', ['red'])).toThrow(/names no option letter/);
  });
});

describe('boxed math answers', () => {
  it.each([
    ['so \\boxed{2}', '2', 1],
    ['\\boxed{3}', '2', 0],
    ['2', '2', 0],
    ['first \\boxed{1} then \\boxed{\\frac{1}{2}}', '\\frac{1}{2}', 1],
    ['\\boxed{4}', '\\boxed{4}', 1],
    ['\\boxed{x+1}', '1+x', 1],
  ])('%j against %j: %i', (prediction, answer, expected) => {
    expect(boxedMathScore(prediction, [answer])).toBe(expected);
  });
});

describe('grounding', () => {
  it("asks InternVL's refcoco question", () => {
    expect(REFCOCO_PROMPT).toBe(
      'Please provide the bounding box coordinate of the region this sentence describes: <ref>{}</ref>',
    );
    expect(refcocoPrompt('the man on the left')).toBe(
      'Please provide the bounding box coordinate of the region this sentence describes: <ref>the man on the left</ref>',
    );
  });

  // A 200 x 400 image; the reference box [10, 20, 110, 220] in pixels is [50, 50, 550, 550] in thousandths.
  const pixels = groundingTruthOf({ bbox: [10, 20, 110, 220], width: 200, height: 400 }, 'r');
  it('a hit at IoU >= 0.5, predictions on the 0-1000 grid scaled by the image size', () => {
    expect(refcocoHit('<box>[[50, 50, 550, 550]]</box>', pixels)).toBe(1);
    // [10, 20, 60, 120]: a quarter of the reference's area inside it, IoU 0.25.
    expect(refcocoHit('[[50, 50, 300, 300]]', pixels)).toBe(0);
    // [10, 20, 110, 170]: IoU 150 / 200 = 0.75.
    expect(refcocoHit('[[50, 50, 550, 425]]', pixels)).toBe(1);
    expect(refcocoHit('no box here', pixels)).toBe(0);
  });

  it('a 0-1000 ground truth needs no image size', () => {
    const truth = groundingTruthOf({ ground_truth: [100, 100, 500, 500] }, 'r');
    expect(truth.size).toEqual([1000, 1000]);
    expect(refcocoHit('[[100, 100, 500, 500]]', truth)).toBe(1);
    // [100, 100, 300, 500]: IoU 0.5 exactly, a hit.
    expect(refcocoHit('[[100, 100, 300, 500]]', truth)).toBe(1);
    expect(refcocoHit('[[100, 100, 290, 500]]', truth)).toBe(0);
    expect(groundingTruthOf({ answer: '[100, 100, 500, 500]' }, 'r').box).toEqual([100, 100, 500, 500]);
  });

  it('names the record when the reference box is missing', () => {
    expect(() => groundingTruthOf({ bbox: [1, 2, 3, 4] }, 'data.jsonl:7')).toThrow(
      /^data\.jsonl:7: .*width and height/,
    );
    expect(() => groundingTruthOf({ answer: 'left' }, 'data.jsonl:8')).toThrow(/^data\.jsonl:8: no reference box/);
  });

  it("ViRFT's detection reward: iou + confidence + format", () => {
    const solution = "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 1}]</answer>";
    const exact = "<think>one box</think> <answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}]</answer>";
    expect(virftDetection(exact, solution)).toEqual({ score: 1 + 0.9 + 1, iou: 1, confidence: 0.9, format: 1 });
    // Half the width: IoU 0.5 is not > 0.5, so unmatched: iou 0, confidence 1 - 0.8; no think: format 0.
    const half = "<answer>[{'Position': [0, 0, 50, 100], 'Confidence': 0.8}]</answer>";
    const scored = virftDetection(half, solution);
    expect(scored.iou).toBe(0);
    expect(scored.confidence).toBeCloseTo(0.2, 12);
    expect(scored.format).toBe(0);
    expect(scored.score).toBeCloseTo(0.2, 12);
  });
});

describe('scorePrediction', () => {
  it('reads answers / answer / ground_truth / solution, lists and numbers', () => {
    expect(answersOf({ answers: ['a', 'b'] }, 'r')).toEqual(['a', 'b']);
    expect(answersOf({ answer: 7 }, 'r')).toEqual(['7']);
    expect(answersOf({ reward_model: { ground_truth: 'x' } }, 'r')).toEqual(['x']);
    expect(answersOf({ solution: 'y' }, 'r')).toEqual(['y']);
    expect(() => answersOf({ question: 'q' }, 'file.jsonl:3')).toThrow(/^file\.jsonl:3: no reference answer/);
  });

  it('dispatches by metric name and reports parts', () => {
    expect(scorePrediction('exact_match', 'Two', { answer: '2' }, 'r')).toEqual({ score: 1 });
    expect(scorePrediction('relaxed_accuracy', '10.4', { answer: '10' }, 'r')).toEqual({ score: 1 });
    expect(scorePrediction('multiple_choice', '(B)', { answer: 'B' }, 'r')).toEqual({ score: 1 });
    expect(
      scorePrediction(
        'refcoco_iou',
        '[[50, 50, 550, 550]]',
        { bbox: [10, 20, 110, 220], width: 200, height: 400 },
        'r',
      ),
    ).toEqual({
      score: 1,
    });
    const solution = "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 1}]</answer>";
    const detection = scorePrediction('virft_detection', solution, { solution }, 'r');
    expect(detection).toEqual({ score: 2, parts: { iou: 1, confidence: 1, format: 0 } });
    expect(() => scorePrediction('nope' as never, 'x', {}, 'r')).toThrow(/unknown metric/);
  });
});
