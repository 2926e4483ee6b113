// verl's geo3k reward and mathruler's answer equivalence (trainers_anchor.md 3.3), case by case from
// the rules the grader states: MATH normalisation, prm800k normalisation, then element-wise equality
// with unreduced fractions refused and integers matched exactly.
import { describe, expect, it } from 'vitest';
import * as rewards from '../../lib/rewards/index.js';

describe('extractBoxedContent (mathruler)', () => {
  it('takes the last \\boxed{} with balanced braces, trimmed; "None" when absent or unclosed', () => {
    expect(rewards.extractBoxedContent('first \\boxed{1} then \\boxed{ \\frac{1}{2} } end')).toBe('\\frac{1}{2}');
    expect(rewards.extractBoxedContent('\\boxed{\\{1, 2\\}}')).toBe('\\{1, 2\\}');
    expect(rewards.extractBoxedContent('no box')).toBe('None');
    expect(rewards.extractBoxedContent('\\boxed{12')).toBe('None');
    expect(rewards.extractBoxedContent('\\boxed{}')).toBe('');
  });
});

describe('gradeAnswer (mathruler grade_answer)', () => {
  const yes = (given: string, truth: string) =>
    expect(rewards.gradeAnswer(given, truth), `${given} vs ${truth}`).toBe(true);
  const no = (given: string, truth: string) =>
    expect(rewards.gradeAnswer(given, truth), `${given} vs ${truth}`).toBe(false);

  it('MATH normalisation: 0.5 is \\frac{1}{2}, a/b is \\frac{a}{b}, \\dfrac is \\frac, units and % dropped', () => {
    yes('0.5', '\\frac{1}{2}');
    yes('3/4', '\\frac{3}{4}');
    yes('\\dfrac{3}{4}', '\\frac34');
    yes('10\\%', '10');
    yes('45^\\circ', '45');
    yes('3\\text{ cm}', '3');
    yes('k = 7', '7'); // a short left-hand side is dropped
  });

  it('prm800k normalisation: \\text{}, $, thousands commas, trailing .0, case, words for units', () => {
    yes('\\text{B}', 'b');
    yes('\\$5', '5');
    yes('1,000', '1000');
    yes('3.0', '3');
    yes('12 cm', '12');
    yes('3 million', '3*10^6');
    no('3 million', '3000000'); // an integer truth needs an integer-looking answer, "3*10^6" is not
  });

  it('fractions must be written the same (unreduced ones are wrong), integers exactly', () => {
    no('2/4', '1/2');
    no('\\frac{2}{4}', '\\frac{1}{2}');
    no('2.5', '3'); // the truth is an integer: no numeric closeness
    yes('2.5', '5/2'); // a non-fraction against a fraction goes to the expression check: 2.5 - 5/2 = 0
  });

  it('expressions equal as functions are equal (sympy simplify(a - b) == 0 in the source)', () => {
    yes('x^2+2x+1', '(x+1)^2');
    yes('\\sqrt{8}', '2\\sqrt{2}');
    yes('\\frac{\\sqrt{2}}{2}', '\\frac{1}{\\sqrt{2}}');
    yes('2\\pi', '\\pi*2');
    no('6.28', '2\\pi');
    no('\\frac{1}{3}', '0.333');
    no('x', 'y');
  });

  it('tuples and intervals compare element-wise and need the same brackets', () => {
    yes('(1, 2)', '(1,2)');
    no('[1,2)', '(1,2)');
    no('(1,2,3)', '(1,2)');
  });

  it('edge cases: no box ("None"), empty answers, text answers', () => {
    no('None', '5');
    no('', '5');
    no('5', '');
    yes('ABC', 'abc');
    no('A', 'B');
  });
});

describe('expressionsEqual (the sympy stand-in)', () => {
  it('treats letters as variables, applies functions, reads implicit products and factorials', () => {
    expect(rewards.expressionsEqual('sin(x)^2+cos(x)^2', '1')).toBe(true);
    expect(rewards.expressionsEqual('sin(x^2)', 'sin(x)^2')).toBe(false);
    expect(rewards.expressionsEqual('sqrt2', 'sqrt(2)')).toBe(true);
    expect(rewards.expressionsEqual('2(x+1)', '2x+2')).toBe(true);
    expect(rewards.expressionsEqual('4!', '24')).toBe(true);
    expect(rewards.expressionsEqual('xy', 'yx')).toBe(true);
    expect(rewards.expressionsEqual('1/0', '1/0')).toBe(false); // never finite: no point to compare at
    expect(rewards.expressionsEqual('x=1', '1')).toBe(false); // not an expression
  });
});

describe('geo3k (verl): 0.9 * accuracy + 0.1 * format', () => {
  const truth = '0.5';

  it('format = fullmatch <think>.*</think>.*\\boxed{.*}.*, accuracy = grade of the last box', () => {
    expect(rewards.geo3kScore('<think>half</think> so \\boxed{\\frac{1}{2}}.', truth)).toBeCloseTo(1, 12);
    expect(rewards.geo3kScore('so \\boxed{\\frac{1}{2}}', truth)).toBeCloseTo(0.9, 12); // no think block
    expect(rewards.geo3kScore('<think>hm</think> \\boxed{0.6}', truth)).toBeCloseTo(0.1, 12);
    expect(rewards.geo3kScore('<think>hm</think> one half', truth)).toBe(0); // no box: neither term
    expect(rewards.geo3kScore('', truth)).toBe(0);
  });

  it('format_score and use_boxed are verl options; the batch and verl forms read the ground truth', async () => {
    expect(rewards.geo3kScore('\\boxed{1/2}', truth, { formatScore: 0.5 })).toBeCloseTo(0.5, 12);
    expect(rewards.geo3kScore('1/2', truth, { useBoxed: false })).toBeCloseTo(0.9, 12);
    const rows = [{ reward_model: { ground_truth: '7' } }, { ground_truth: 3 }, { solution: '\\frac{1}{2}' }];
    const out = await rewards.geo3k()({
      prompts: ['', '', ''],
      completions: ['<think>a</think>\\boxed{7}', '\\boxed{3}', [{ role: 'assistant', content: '\\boxed{0.5}' }]],
      columns: rows,
    });
    expect(out.map((v) => Math.round(v! * 10) / 10)).toEqual([1, 0.9, 0.9]);
    const verl = rewards.geo3kComputeScore();
    expect(await verl('hiyouga/geometry3k', '<think>a</think>\\boxed{2}', '3', undefined)).toBeCloseTo(0.1, 12);
  });
});
