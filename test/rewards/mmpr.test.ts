// MMPR's check_answer modes (rl_data.md section 2): 1 on a case-insensitive match, else 1 when the
// best mode score is > 0.9. Values worked out by hand from each mode's rule.
import { describe, expect, it } from 'vitest';
import * as rewards from '../../lib/rewards/index.js';

const check = rewards.checkAnswer;

describe('check_answer modes', () => {
  it('any mode: a case-insensitive exact match is 1', () => {
    expect(check('Yes', 'yes', [])).toBe(1);
    expect(check('yes', 'no', [])).toBe(0);
  });

  it('vqa: EvalAI normalisation (articles, punctuation, number words, contractions) then equality', () => {
    expect(check('The cat.', 'cat', ['vqa'])).toBe(1);
    expect(check('two', '2', ['vqa'])).toBe(1);
    expect(check('dont', "don't", ['vqa'])).toBe(1);
    expect(check('a dog', 'cat', ['vqa'])).toBe(0);
    expect(rewards.evalAiNormalize('The  Dog, (brown)!')).toBe('dog brown');
  });

  it('vqa: 0 when either side normalises to nothing, even if an earlier mode scored 1', () => {
    expect(check('the', 'a', ['vqa'])).toBe(0); // both normalise to '' (articles)
    // math_equiv runs first in the source's order and accepts '.' as '0.'; vqa then resets to 0.
    expect(check('.', '0.', ['math_equiv'])).toBe(1);
    expect(check('.', '0.', ['math_equiv', 'vqa'])).toBe(0);
    expect(check('!', '?', ['vqa'])).toBe(0);
  });

  it('relaxed: numbers within 5% (a trailing % stripped), a "20xx" truth exactly, text exactly', () => {
    expect(check('12.4', '12', ['relaxed'])).toBe(1); // |0.4| / 12 = 0.033
    expect(check('12.7', '12', ['relaxed'])).toBe(0); // 0.058
    expect(check('12%', '12', ['relaxed'])).toBe(1);
    expect(check('2019.0', '2019', ['relaxed'])).toBe(0); // year-like truth: string match only
    expect(check('0', '0.0', ['relaxed'])).toBe(0); // a zero truth cannot be a relative target
    expect(check('1_000', '1000', ['relaxed'])).toBe(1); // Python's float() reads underscores
  });

  it('anls, with the bug fixed: similarity 1 - dist / max length must be > 0.9', () => {
    // One edit in 11 characters: 1 - 1/11 = 0.909 (the source scored dist / len = 0.09 -> 0).
    expect(rewards.anls('hello world', 'hello wrld')).toBeCloseTo(1 - 1 / 11, 12);
    expect(check('hello wrld', 'hello world', ['anls'])).toBe(1);
    // A totally different answer: dist 3 of 3 -> 0 (the source scored 3/3 = 1 -> counted correct).
    expect(rewards.anls('abc', 'xyz')).toBe(0);
    expect(check('xyz', 'abc', ['anls'])).toBe(0);
    // Normalised before the distance (case, runs of spaces), the length taken from the raw strings.
    expect(rewards.anls('Hello  World', 'hello world')).toBe(1);
    expect(check('new york cty', 'new york city', ['anls'])).toBe(1); // 1 - 1/13
    expect(check('abcdefgh', 'abcdefgx', ['anls'])).toBe(0); // 1 - 1/8 = 0.875
  });

  it('mc: the letter of "B." or "(B)"', () => {
    expect(check('B.', 'B', ['mc'])).toBe(1);
    expect(check('(C)', 'c', ['mc'])).toBe(1);
    expect(check('B. 5 cm', 'B', ['mc'])).toBe(1);
    expect(check('B 5 cm', 'B', ['mc'])).toBe(0);
  });

  it('math: within 1e-3 relative after degrees / ° / % / cm are removed', () => {
    expect(check('45 degrees', '45', ['math'])).toBe(1);
    expect(check('45°', '45.02', ['math'])).toBe(1); // 0.02 / 45.02 = 4.4e-4
    expect(check('45.1', '45', ['math'])).toBe(0); // 2.2e-3
  });

  it('latex (stand-in for sympy parse_latex equals): only when a side has LaTeX or is a/b', () => {
    expect(check('\\frac{1}{2}', '0.5', ['latex'])).toBe(1);
    expect(check('2/4', '0.5', ['latex'])).toBe(1);
    expect(check('\\frac{1+1}{4}', '0.5', ['latex'])).toBe(1); // the fraction keeps its meaning here
    expect(check('0.50', '0.5', ['latex'])).toBe(0); // neither side is LaTeX: not checked
  });

  it('modes by dataset name, as get_mode picks them (math_verify as math_equiv)', () => {
    expect(rewards.modesForDataset('chartqa_train')).toEqual(['relaxed']);
    expect(rewards.modesForDataset('docvqa_en')).toEqual(['anls']);
    expect(rewards.modesForDataset('geometry3k')).toEqual(['relaxed', 'vqa', 'mc', 'math_equiv']);
    expect(rewards.modesForDataset('mavis_function')).toEqual(['vqa', 'mc', 'math', 'latex', 'math_equiv']);
    expect(rewards.modesForDataset('')).toEqual(['vqa', 'mc', 'math', 'math_equiv']);
  });
});

describe('MMPR answer extraction (parse_answer) and the reward', () => {
  it('en: the text after the last "Final answer:", with a rationale and at least two newlines', () => {
    expect(rewards.extractMmprAnswer('Step one.\nStep two.\nFinal answer: 42', 'en')).toBe('42');
    expect(rewards.extractMmprAnswer('Step one.\nFinal answer: 42', 'en')).toBeNull(); // one newline
    expect(rewards.extractMmprAnswer('\n\nFinal Answer: 42', 'en')).toBeNull(); // empty rationale
    expect(rewards.extractMmprAnswer('a\nb\nFinal answer: 4\n2', 'en')).toBeNull(); // two-line answer
  });

  it('v2: longer than 20 characters, the last box (balanced) or the whole text', () => {
    expect(rewards.extractMmprAnswer('We compute it. Answer: \\boxed{\\frac{1}{2}}', 'en_v2')).toBe('\\frac{1}{2}');
    expect(rewards.extractMmprAnswer('\\boxed{3}', 'en_v2')).toBeNull();
    expect(rewards.extractMmprAnswer('no box here, but long enough', 'en_v2')).toBe('no box here, but long enough');
    expect(rewards.extractAnswerFromBox('x \\boxed{a{b}')).toBe('x \\boxed{a{b}'); // unbalanced: whole text
  });

  it('r1: one think block over 20 characters, then a boxed answer', () => {
    const think = '<think>reasoning long enough here</think>';
    expect(rewards.extractMmprAnswer(`${think} \\boxed{B}`, 'en_r1')).toBe('B');
    expect(rewards.extractMmprAnswer('<think>short</think> \\boxed{B}', 'en_r1')).toBeNull();
    expect(rewards.extractMmprAnswer(`${think} B`, 'en_r1')).toBeNull();
    expect(rewards.extractMmprAnswer(`${think}${think} \\boxed{B}`, 'en_r1')).toBeNull();
  });

  it('mmprCorrectness scores each row with its data_source modes; a format failure is 0', async () => {
    const reward = rewards.mmprCorrectness();
    const out = await reward({
      prompts: ['', '', ''],
      completions: [
        'The bars show it clearly: \\boxed{12.4}',
        'The bars show it clearly: \\boxed{12.4}',
        '\\boxed{12}',
      ],
      columns: [
        { data_source: 'chartqa', ground_truth: '12' },
        { data_source: 'ai2d', ground_truth: '12' },
        { data_source: 'chartqa', ground_truth: '12' },
      ],
    });
    expect(out).toEqual([1, 0, 0]); // relaxed accepts 12.4; vqa/mc/math do not; the last is too short
  });
});
