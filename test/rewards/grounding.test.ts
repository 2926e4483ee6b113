// The InternVL3.5 verl-fork grounding reward and InternVL's refcoco hit (trainers_anchor.md 3.4,
// rl_data.md 3), with IoUs computed by hand from box areas.
import { describe, expect, it } from 'vitest';
import * as rewards from '../../lib/rewards/index.js';

const mix = { rewardType: 'mix', alpha: 0.5, threshold: 0.5 } as const;
const square = { width: 1000, height: 1000 };

describe('box extraction (3.4 Extraction)', () => {
  const box = rewards.extractGroundingBox;

  it('1-2: inside <answer> (any case, across lines), the first 4 numbers of the last [...]', () => {
    expect(box('<think>[1,2,3,4]</think><ANSWER>\n[100, 200, 300, 400]\n</ANSWER>')).toEqual([100, 200, 300, 400]);
    expect(box('first [1, 2, 3, 4] then [10.5, 20, 30, 40, 50]')).toEqual([10.5, 20, 30, 40]);
    expect(box('<box>[[10,20,30,40]]</box>')).toEqual([10, 20, 30, 40]); // the inner, bracket-free [...]
  });

  it('3: without brackets the last 4 numbers; an <answer> without a box falls back to the whole text', () => {
    expect(box('x 1 y 2 and 3 then 4 5')).toEqual([2, 3, 4, 5]);
    expect(box('<answer>no box</answer> 7 8 9 10')).toEqual([7, 8, 9, 10]);
    expect(box('[1,2] <answer>no box</answer> 7 8 9 10')).toBeNull(); // brackets exist: the last [...] decides
  });

  it('4: fewer than 4 numbers in the last [...] fails (no fallback to other numbers); empty fails', () => {
    expect(box('10 20 30 40 [1, 2, 3]')).toBeNull();
    expect(box('nothing 1 2')).toBeNull();
    expect(box('')).toBeNull();
  });

  it('5: corners are reordered so that x1 <= x2 and y1 <= y2; signs and decimals are read', () => {
    expect(box('[300, 400, 100, 200]')).toEqual([100, 200, 300, 400]);
    expect(box('[-5, +.5, 7., 8]')).toEqual([-5, 0.5, 7, 8]);
  });
});

describe('scaling (3.4 Scaling)', () => {
  it('round(v * size / 1000) with halves to even, clamped to [0, size - 1], flat boxes widened to 1 px', () => {
    expect(rewards.scaleBox([100, 200, 300, 400], 640, 480)).toEqual([64, 96, 192, 192]);
    // 125 * 4 / 1000 = 0.5 -> 0 and 375 * 4 / 1000 = 1.5 -> 2 (Python rounds halves to even).
    expect(rewards.scaleBox([125, 125, 375, 375], 4, 4)).toEqual([0, 0, 2, 2]);
    expect(rewards.scaleBox([0, 0, 1000, 1200], 640, 480)).toEqual([0, 0, 639, 479]);
    expect(rewards.scaleBox([100, 100, 100, 100], 1000, 1000)).toEqual([100, 100, 101, 101]);
    expect(rewards.scaleBox([0, 0, 1000, 1000], 1, 1)).toEqual([0, 0, 0, 0]); // 1 px wide: nothing to widen into
  });
});

describe('reward types (3.4 reward_type)', () => {
  // [0,0,500,500] vs [250,250,750,750]: intersection 250^2, union 2 * 500^2 - 250^2 -> IoU 1/7.
  const pred = '<answer>[0, 0, 500, 500]</answer>';
  const gt = [250, 250, 750, 750];
  const iou = 250 ** 2 / (2 * 500 ** 2 - 250 ** 2);
  const score = (options: rewards.GroundingOptions, info: Record<string, unknown> = square, text = pred) =>
    rewards.groundingScore(text, gt, info, options);

  it('mix = a * [IoU >= t] + (1 - a) * IoU', () => {
    expect(iou).toBeCloseTo(1 / 7, 15);
    expect(score(mix)).toBeCloseTo(0.5 * 0 + 0.5 * iou, 12);
    expect(score({ ...mix, threshold: 0.1 })).toBeCloseTo(0.5 * 1 + 0.5 * iou, 12);
    expect(rewards.groundingScore('[250, 250, 750, 750]', gt, square, mix)).toBe(1);
  });

  it('sigmoid = 1 / (1 + exp(-8 (IoU - t))); normalized_exp = (1 - e^(-K IoU)) / (1 - e^-K), K = ln 16', () => {
    expect(score({ ...mix, rewardType: 'sigmoid' })).toBeCloseTo(1 / (1 + Math.exp(-8 * (iou - 0.5))), 12);
    // e^(-ln16 * IoU) = 16^(-IoU).
    expect(score({ ...mix, rewardType: 'normalized_exp' })).toBeCloseTo((1 - 16 ** -iou) / (1 - 1 / 16), 12);
  });

  it('eval = [IoU >= t], and split "test" forces eval whatever the type', () => {
    expect(score({ ...mix, rewardType: 'eval', threshold: 1 / 7 - 1e-9 })).toBe(1);
    expect(score({ ...mix, rewardType: 'eval' })).toBe(0);
    expect(score({ ...mix, rewardType: 'sigmoid' }, { ...square, split: 'test' })).toBe(0);
  });

  it('penalty = mix - 0.01 per started 50 tokens over 512 - 0.3 for a token repeated 7 times in a row', () => {
    const long = `${'word '.repeat(300)}${'other '.repeat(300)}${pred}`; // 601 tokens: 89 over -> 2 steps
    const base = 0.5 * iou;
    expect(score({ ...mix, rewardType: 'penalty' }, square, long)).toBeCloseTo(base - 0.02 - 0.3, 12);
    const repeats = `a a a a a a b ${pred}`; // six in a row: no repetition penalty
    expect(score({ ...mix, rewardType: 'penalty' }, square, repeats)).toBeCloseTo(base, 12);
    expect(score({ ...mix, rewardType: 'penalty' }, square, `a ${repeats}`)).toBeCloseTo(base - 0.3, 12);
  });

  it('scales with the image size before the IoU (rounding can change it)', () => {
    // 640 x 480: pred -> [0,0,320,240], gt -> [160,120,480,360]; intersection 160*120, areas 320*240.
    const expected = (160 * 120) / (2 * 320 * 240 - 160 * 120);
    const out = rewards.groundingScore(pred, gt, { width: 640, height: 480 }, { ...mix, alpha: 0 });
    expect(out).toBeCloseTo(expected, 12);
  });

  it('no box, a ground truth that is not 4 numbers, or no image size', () => {
    expect(rewards.groundingScore('no box', gt, square, mix)).toBe(0);
    expect(rewards.groundingScore(pred, [1, 2, 3], square, mix)).toBe(0);
    expect(rewards.groundingScore(pred, new Float64Array(gt), square, mix)).toBeCloseTo(0.5 * iou, 12);
    expect(() => rewards.groundingScore(pred, gt, { width: 640 }, mix)).toThrow(
      /extra_info.width and extra_info.height/,
    );
    expect(() => rewards.checkGroundingOptions({ ...mix, rewardType: 'raw' as 'mix' })).toThrow(/rewardType/);
    expect(() => rewards.checkGroundingOptions({ ...mix, alpha: 2 })).toThrow(/alpha/);
  });

  it('the batch form reads reward_model.ground_truth and extra_info, a missing size is a counted failure', async () => {
    const scored = await rewards.scoreRewards([{ name: 'grounding', fn: rewards.internvlGrounding(mix) }], undefined, {
      prompts: ['p', 'p'],
      completions: [pred, pred],
      columns: [
        { data_source: 'grounding', reward_model: { ground_truth: gt }, extra_info: square },
        { data_source: 'grounding', reward_model: { ground_truth: gt }, extra_info: {} },
      ],
    });
    expect(scored.rewards[0]).toBeCloseTo(0.5 * iou, 12);
    expect(scored.rewards[1]).toBe(0);
    expect(scored.failures).toHaveLength(1);
    expect(scored.failures[0]).toMatchObject({ name: 'grounding', index: 1 });
  });
});

describe('refcoco hit (InternVL evaluate_grounding.py): IoU >= 0.5 on [[x1,y1,x2,y2]] in 0-1000', () => {
  const hit = rewards.refcocoScore;

  it('a hit needs IoU >= 0.5 (inclusive, unlike ViRFT)', () => {
    expect(hit('<ref>dog</ref><box>[[100, 200, 300, 400]]</box>', [100, 200, 300, 400], [1000, 1000])).toBe(1);
    // [0,0,100,50] in [0,0,100,100]: 5000 / 10000 = 0.5 exactly.
    expect(hit('[[0, 0, 100, 50]]', [0, 0, 100, 100], [1000, 1000])).toBe(1);
    expect(hit('[[0, 0, 100, 49]]', [0, 0, 100, 100], [1000, 1000])).toBe(0);
  });

  it('the prediction is scaled by width / height to compare with a pixel ground truth', () => {
    expect(hit('[[500, 500, 1000, 1000]]', [100, 50, 200, 100], [200, 100])).toBe(1);
    expect(hit('[[0, 0, 500, 500]]', [100, 50, 200, 100], [200, 100])).toBe(0);
  });

  it('values summing to < 4 are taken as fractions already; unparsable values give (0,0,0,0)', () => {
    expect(hit('[0.1, 0.2, 0.3, 0.4]', [100, 200, 300, 400], [1000, 1000])).toBe(1);
    expect(hit('[[1, 2, 3, 4, 5]]', [0, 0, 10, 10], [1000, 1000])).toBe(0); // group 4 is "4, 5"
    expect(hit('no box', [0, 0, 10, 10], [1000, 1000])).toBe(0);
  });

  it('the batch form: thousandths by default, pixels with the row size, a bad ground truth reported', async () => {
    const batch = {
      prompts: ['', '', ''],
      completions: ['[[500, 500, 1000, 1000]]', '[[500, 500, 1000, 1000]]', '[[1, 2, 3, 4]]'],
      columns: [
        { ground_truth: [500, 500, 1000, 1000] },
        { ground_truth: [100, 50, 200, 100], extra_info: { width: 200, height: 100 } },
        { ground_truth: 'dog' },
      ],
    };
    const named = [
      { name: 'thousandths', fn: rewards.refcocoGrounding() },
      { name: 'pixels', fn: rewards.refcocoGrounding({ groundTruthUnits: 'pixels' }) },
    ];
    const scored = await rewards.scoreRewards(named, undefined, batch);
    expect(scored.rewardsPerFunc.map((row) => row[0])).toEqual([1, 0, 0]);
    expect(scored.rewardsPerFunc.map((row) => row[1])).toEqual([0, 1, 0]); // row 0 has no size: a failure
    expect(scored.failureCounts).toEqual({ thousandths: 1, pixels: 2 });
  });
});
