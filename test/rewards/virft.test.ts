// ViRFT rewards against cases written from trainers_anchor.md 3.1 / 3.2 / 1.10, each IoU worked out
// by hand from the boxes' areas (intersection / (area a + area b - intersection)).
import { describe, expect, it } from 'vitest';
import * as rewards from '../../lib/rewards/index.js';

const solution = (...boxes: number[][]) =>
  `<answer>${JSON.stringify(boxes.map((b) => ({ Position: b, Confidence: 1 }))).replaceAll('"', "'")}</answer>`;
const answer = (preds: [number[], number][], think = '<think>looking</think> ') =>
  `${think}<answer>${JSON.stringify(preds.map(([b, c]) => ({ Position: b, Confidence: c }))).replaceAll('"', "'")}</answer>`;
const score = (content: string, sol: string) => rewards.virftDetectionScores(content, sol);

describe('ViRFT detection (3.1): accuracy_iou + accuracy_confidence', () => {
  const gt = solution([0, 0, 100, 100]); // area 10000

  it('3.1.4: a match needs IoU > 0.5, strictly; an unmatched prediction scores 1 - conf', () => {
    // [0,0,100,50]: intersection 5000, union 10000 + 5000 - 5000 = 10000 -> IoU 0.5, not > 0.5.
    expect(score(answer([[[0, 0, 100, 50], 0.8]]), gt)).toEqual({ iou: 0, confidence: 1 - 0.8 });
    // [0,0,100,60]: 6000 / (10000 + 6000 - 6000) = 0.6.
    const s = score(answer([[[0, 0, 100, 60], 0.9]]), gt);
    expect(s.iou).toBeCloseTo(0.6, 12);
    expect(s.confidence).toBeCloseTo(0.9, 12);
  });

  it('3.1.5: more predictions than ground truths divides by the predictions', () => {
    // Sorted by confidence: the stray box (0.9) first, IoU 0 -> (0, 0.9); the exact box (0.6) -> (1, 0.6).
    const s = score(
      answer([
        [[0, 0, 100, 100], 0.6],
        [[200, 200, 300, 300], 0.9],
      ]),
      gt,
    );
    expect(s.iou).toBeCloseTo(1 / 2, 12);
    expect(s.confidence).toBeCloseTo((1 - 0.9 + 0.6) / 2, 12);
  });

  it('3.1.5: fewer predictions than ground truths divides by the ground truths', () => {
    const s = score(answer([[[0, 0, 100, 100], 1]]), solution([0, 0, 100, 100], [500, 500, 600, 600]));
    expect(s.iou).toBeCloseTo(1 / 2, 12);
    expect(s.confidence).toBe(1);
  });

  it('3.1.3: duplicate positions keep the first prediction only', () => {
    const s = score(
      answer([
        [[0, 0, 100, 100], 0.9],
        [[0, 0, 100, 100], 0.5],
      ]),
      gt,
    );
    expect(s).toEqual({ iou: 1, confidence: 0.9 });
  });

  it('3.1.4: greedy by confidence, each prediction takes the unmatched ground truth of highest IoU', () => {
    const two = solution([0, 0, 100, 100], [50, 0, 150, 100]);
    // P1 [40,0,140,100] (0.9): with G2, 90*100 / (10000 + 10000 - 9000) = 9000 / 11000; with G1 only 6000 / 14000.
    // P2 [0,0,100,100] (0.8) then takes G1 with IoU 1.
    const s = score(
      answer([
        [[0, 0, 100, 100], 0.8],
        [[40, 0, 140, 100], 0.9],
      ]),
      two,
    );
    expect(s.iou).toBeCloseTo((9000 / 11000 + 1) / 2, 12);
    expect(s.confidence).toBeCloseTo((0.9 + 0.8) / 2, 12);
  });

  it('3.1.2: [[ and ]] are flattened, so double-bracketed positions parse', () => {
    const content = "<think>t</think> <answer>[{'Position': [[0, 0, 100, 100]], 'Confidence': 0.7}]</answer>";
    expect(score(content, gt)).toEqual({ iou: 1, confidence: 0.7 });
    expect(score("<answer>[[{'Position': [0, 0, 100, 100], 'Confidence': 0.7}]]</answer>", gt)).toEqual({
      iou: 1,
      confidence: 0.7,
    });
  });

  it('3.1.2: a truncated list keeps its complete entries (only without an opening tag, as upstream)', () => {
    const truncated = "[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Position': [5,";
    expect(score(truncated, gt)).toEqual({ iou: 1, confidence: 0.9 });
    // With its own <answer> but no </answer>, the re-wrapped text holds the tag twice and fails to parse.
    expect(score(`<answer>${truncated}`, gt)).toEqual({ iou: 0, confidence: 0 });
  });

  it('3.1.2 / 1.10: no DOTALL, so an answer spread over lines does not parse', () => {
    const multiline = "<answer>\n[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}]\n</answer>";
    expect(score(multiline, gt)).toEqual({ iou: 0, confidence: 0 });
  });

  it('3.1.2 / 3.1.8: unparsable, empty, "No Objects", non-dict entries and missing keys score 0', () => {
    for (const content of [
      'No Objects',
      '<answer></answer>',
      '',
      '<answer>[]</answer>',
      '<answer>[[1, 2, 3, 4]]</answer>',
      "<answer>[{'Position': [0, 0, 100, 100]}]</answer>",
      "<answer>[{'Position': [0, 0, 100], 'Confidence': 1}]</answer>",
      "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': '0.9'}]</answer>",
      "<answer>{'Position': [0, 0, 100, 100], 'Confidence': 1}</answer>",
    ]) {
      expect(score(content, gt), content).toEqual({ iou: 0, confidence: 0 });
    }
  });

  it('3.1.6: the confidence reward is clipped to [0, 1]', () => {
    expect(score(answer([[[0, 0, 100, 100], 1.5]]), gt).confidence).toBe(1);
    expect(score(answer([[[500, 500, 600, 600], 1.5]]), gt).confidence).toBe(0);
  });

  it('3.1: the total reward is iou + confidence + format, in [0, 3], through the batch functions', async () => {
    const batch = {
      prompts: ['p', 'p'],
      completions: [
        answer([[[0, 0, 100, 60], 0.9]]),
        [{ role: 'assistant', content: answer([[[0, 0, 100, 100], 1]], '') }],
      ],
      columns: [{ solution: gt }, { solution: gt }],
    };
    const iou = await rewards.virftDetectionIou()(batch);
    const confidence = await rewards.virftDetectionConfidence()(batch);
    const format = await rewards.virftFormat(batch);
    expect(iou[0]).toBeCloseTo(0.6, 12);
    expect(confidence[0]).toBeCloseTo(0.9, 12);
    expect(format).toEqual([1, 0]); // the second has no <think> block
    expect(iou[1]! + confidence[1]! + format[1]!).toBe(2);
  });

  it('3.1.1: an optional math_verify stand-in short-circuits both accuracies to 1', () => {
    const always = { mathShortcut: () => true };
    expect(rewards.virftDetectionScores('garbage', gt, always)).toEqual({ iou: 1, confidence: 1 });
  });
});

describe('ViRFT format (3.1.7): fullmatch <think>.*?</think>\\s*<answer>.*?</answer>, DOTALL', () => {
  it('accepts whitespace between the blocks and newlines inside, nothing around them', async () => {
    const f = (s: string) => rewards.virftFormat({ prompts: [''], completions: [s], columns: [{}] });
    expect(await f('<think>a\nb</think>\n <answer>\nc</answer>')).toEqual([1]);
    expect(await f('<think></think><answer></answer>')).toEqual([1]);
    expect(await f(' <think>a</think><answer>b</answer>')).toEqual([0]);
    expect(await f('<think>a</think><answer>b</answer>\n')).toEqual([0]);
    expect(await f('<think>a</think> text <answer>b</answer>')).toEqual([0]);
  });
});

describe('ViRFT classification (3.2)', () => {
  const cls = rewards.virftClassificationScore;

  it('compares <answer> contents without spaces or _, lowercased, either containing the other', () => {
    expect(cls('<think>t</think><answer>Boeing 737-800</answer>', '<answer>Boeing 737</answer>')).toBe(1);
    expect(cls('<answer>airbus_a320</answer>', '<answer>Airbus A320</answer>')).toBe(1);
    expect(cls('<answer>737</answer>', '<answer>Boeing 737</answer>')).toBe(1); // sub-string of the truth
    expect(cls('<answer>Airbus A320</answer>', '<answer>Boeing 737</answer>')).toBe(0);
    expect(cls('plain text Boeing 737', 'Boeing 737')).toBe(1); // no tags: the whole text
  });

  it('1.10: the empty answer the source scores 1.0 scores 0', () => {
    expect(cls('<think>t</think><answer></answer>', '<answer>Boeing 737</answer>')).toBe(0);
    expect(cls('<answer> _ </answer>', '<answer>Boeing 737</answer>')).toBe(0);
    expect(cls('', '<answer>Boeing 737</answer>')).toBe(0);
  });
});

describe('LISA grounding (3.2): GIoU + 1 on (x1,y1),(x2,y2) / 1000', () => {
  const lisa = rewards.lisaGroundingScore;
  const sol = '<answer> (100,100),(300,300) </answer>';

  it('overlapping boxes: IoU - (C - U) / C + 1 from the areas', () => {
    // In thousandths: intersection 0.1 * 0.1 = 0.01, areas 0.04 each, union 0.07, enclosing C 0.3^2 = 0.09.
    const expected = 0.01 / 0.07 - (0.09 - 0.07) / 0.09 + 1;
    expect(lisa('<answer>(200, 200), (400, 400)</answer>', sol)).toBeCloseTo(expected, 12);
  });

  it('disjoint boxes go below 1; the exact string scores 2; no box scores 0', () => {
    // IoU 0; union 0.04 + 0.01 = 0.05; C spans 0.1..0.9 on each axis, 0.64: GIoU = -(0.64 - 0.05) / 0.64.
    expect(lisa('<answer>(800,800),(900,900)</answer>', sol)).toBeCloseTo(1 - 0.59 / 0.64, 12);
    expect(lisa('<answer>(100,100),(300,300)</answer>', sol)).toBe(2);
    expect(lisa('<answer>the left dog</answer>', sol)).toBe(0);
    expect(lisa('', sol)).toBe(0);
  });

  it('the completion regex has DOTALL (the solution one does not)', () => {
    // Without DOTALL the whole text would be searched and the box inside <think> found first.
    expect(lisa('<think>(800,800),(900,900)</think><answer>\n(100,100),(300,300)\n</answer>', sol)).toBe(2);
  });

  it('1.10: with several boxes the first one is scored (the source mixes corners of box 1 and 2)', () => {
    expect(lisa('<answer>(100,100),(300,300) and (500,500),(600,600)</answer>', sol)).toBeCloseTo(2, 12);
  });
});
