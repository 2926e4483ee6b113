// Every anchored reward against the value the ORIGINAL Python code gives on the same input:
// fixtures/upstream_outputs.json was written by fixtures/make_upstream.py, which imports ViRFT's
// grpo*.py, mathruler's grader, the verl-internvl fork's grounding.py and InternVL's
// accuracy_reward.py (commits in its header) and runs them on seeded random and hand-picked inputs.
// The two places vlalign departs on purpose (trainers_anchor.md 1.10, 3.2) are checked against the
// fixed rule instead: an empty classification answer scores 0, and LISA reads the first box.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as rewards from '../../lib/rewards/index.js';

interface Upstream {
  virft_det: [string, string, number, number][];
  virft_cls: [string, string, number][];
  lisa: [string, string, number][];
  grade: [string, string, boolean][];
  check: [string, string, string[], number][];
  grounding: [
    string,
    number[],
    Record<string, unknown>,
    rewards.GroundingRewardType,
    number,
    number,
    number | 'raise',
  ][];
  format: [string, number][];
}

const upstream: Upstream = JSON.parse(
  readFileSync(new URL('./fixtures/upstream_outputs.json', import.meta.url), 'utf8'),
);

// Mismatches as readable rows (input, ours, theirs), so a failure shows every case at once.
function mismatches<T extends unknown[]>(rows: T[], ours: (row: T) => unknown, theirs: (row: T) => unknown) {
  return rows.flatMap((row) => {
    const [a, b] = [ours(row), theirs(row)];
    const same = typeof a === 'number' && typeof b === 'number' ? Math.abs(a - b) <= 1e-12 : a === b;
    return same ? [] : [{ input: row.slice(0, 2), ours: a, theirs: b }];
  });
}

describe('rewards match the upstream Python on the same inputs', () => {
  it('ViRFT detection accuracy_iou and accuracy_confidence (grpo.py), 300 seeded cases', () => {
    expect(upstream.virft_det.length).toBe(300);
    const iou = mismatches(
      upstream.virft_det,
      ([a, b]) => rewards.virftDetectionScores(a, b).iou,
      (r) => r[2],
    );
    const conf = mismatches(
      upstream.virft_det,
      ([a, b]) => rewards.virftDetectionScores(a, b).confidence,
      (r) => r[3],
    );
    expect(iou).toEqual([]);
    expect(conf).toEqual([]);
    // The cases exercise the rule, not only its zero: partial matches and malformed answers both occur.
    expect(upstream.virft_det.filter((r) => r[2] > 0 && r[2] < 1).length).toBeGreaterThan(30);
    expect(upstream.virft_det.filter((r) => r[2] === 0 && r[3] === 0).length).toBeGreaterThan(20);
  });

  it('ViRFT format (think then answer, fullmatch DOTALL)', () => {
    expect(
      mismatches(
        upstream.format,
        ([s]) => (rewards.THINK_ANSWER_FORMAT.test(s) ? 1 : 0),
        (r) => r[1],
      ),
    ).toEqual([]);
  });

  it('ViRFT classification, except the empty answer the source scores 1.0 (guarded: 0)', () => {
    const emptyAnswer = ([content, solution]: [string, string, number]) =>
      [content, solution].some((s) => {
        const m = /<answer>([^\n]*?)<\/answer>/.exec(s);
        return (m ? m[1]! : s).replaceAll(' ', '').replaceAll('_', '') === '';
      });
    const plain = upstream.virft_cls.filter((r) => !emptyAnswer(r));
    const empty = upstream.virft_cls.filter(emptyAnswer);
    expect(
      mismatches(
        plain,
        ([a, b]) => rewards.virftClassificationScore(a, b),
        (r) => r[2],
      ),
    ).toEqual([]);
    expect(empty.length).toBeGreaterThan(5);
    expect(empty.every((r) => r[2] === 1)).toBe(true); // the bug, as recorded upstream
    expect(empty.map(([a, b]) => rewards.virftClassificationScore(a, b))).toEqual(empty.map(() => 0));
  });

  it('LISA GIoU + 1 with one box per side (several boxes: the source pairs corners across boxes)', () => {
    const boxes = (s: string) => s.match(/\(\s*\d+\s*,\s*\d+\s*\)\s*,\s*\(\s*\d+\s*,\s*\d+\s*\)/g)?.length ?? 0;
    const single = upstream.lisa.filter(([a]) => boxes(a) <= 1);
    expect(single.length).toBeGreaterThan(40);
    expect(
      mismatches(
        single,
        ([a, b]) => rewards.lisaGroundingScore(a, b),
        (r) => r[2],
      ),
    ).toEqual([]);
  });

  it('mathruler grade_answer (geo3k accuracy), hand-picked and seeded random pairs', () => {
    expect(upstream.grade.length).toBeGreaterThan(500);
    expect(
      mismatches(
        upstream.grade,
        ([a, b]) => rewards.gradeAnswer(a, b),
        (r) => r[2],
      ),
    ).toEqual([]);
    const accepted = upstream.grade.filter((r) => r[2]).length;
    expect(accepted).toBeGreaterThan(100);
    expect(upstream.grade.length - accepted).toBeGreaterThan(100);
  });

  it('MMPR check_answer in the vqa, relaxed, mc and math modes', () => {
    const names: Record<string, rewards.CheckMode> = {
      vqa_score: 'vqa',
      relaxed_accuracy: 'relaxed',
      mc_score: 'mc',
      math_score: 'math',
    };
    const ours = ([a, b, modes]: Upstream['check'][number]) =>
      rewards.checkAnswer(
        a,
        b,
        modes.map((m) => names[m]!),
      );
    expect(mismatches(upstream.check, ours, (r) => r[3])).toEqual([]);
  });

  it('verl-internvl fork grounding reward, all five reward types, eval on split test, a missing box', () => {
    const ours = ([s, gt, info, rewardType, alpha, threshold]: Upstream['grounding'][number]) => {
      try {
        return rewards.groundingScore(s, gt, info, { rewardType, alpha, threshold });
      } catch {
        return 'raise';
      }
    };
    expect(mismatches(upstream.grounding, ours, (r) => r[6])).toEqual([]);
    expect(upstream.grounding.filter((r) => typeof r[6] === 'number' && r[6] > 0 && r[6] < 1).length).toBeGreaterThan(
      40,
    );
  });
});
