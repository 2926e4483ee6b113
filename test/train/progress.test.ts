// Progress output against a fake clock: plain lines off a terminal with it/s and ETA worked out by
// hand, cli-progress's bar on a terminal, durations, and the start banner's facts.
import { describe, expect, it } from 'vitest';
import { TrainingProgress, formatDuration, startBanner, type ProgressStream } from '../../lib/train/progress.js';

function fakeStream(isTTY: boolean): ProgressStream & { text: () => string } {
  const chunks: string[] = [];
  return { isTTY, columns: 200, write: (c: string) => chunks.push(String(c)) > 0, text: () => chunks.join('') };
}

describe('TrainingProgress', () => {
  it('prints one plain line per update off a terminal: 4 steps in 2 s is 2 it/s, 16 steps left is 8 s', () => {
    let ms = 0;
    const stream = fakeStream(false);
    const progress = new TrainingProgress(20, { stream, now: () => ms });
    ms = 2000;
    progress.update(4, { loss: Math.LN2 });
    ms = 62_000;
    progress.update(10);
    progress.stop();
    expect(stream.text()).toBe('step 4/20 loss 0.6931 2.00 it/s ETA 8s\nstep 10/20 loss - 0.16 it/s ETA 1m02s\n');
  });

  it("counts only this process's steps after a resume", () => {
    let ms = 0;
    const progress = new TrainingProgress(100, { stream: fakeStream(false), now: () => ms, startStep: 50 });
    ms = 5000;
    expect(progress.rate(60)).toEqual({ itPerSec: 2, etaSeconds: 20 });
    expect(progress.rate(50).itPerSec).toBeNaN();
  });

  it('draws a cli-progress bar on a terminal', () => {
    let ms = 0;
    const stream = fakeStream(true);
    const progress = new TrainingProgress(10, { stream, now: () => ms });
    ms = 1000;
    progress.update(5, { loss: 0.5 });
    progress.stop();
    expect(stream.text()).toContain('step 5/10 |');
    expect(stream.text()).toContain('| loss 0.5000 | 5.00 it/s | ETA 1s');
    expect(stream.text()).toContain('\u2588'); // the bar's filled blocks
  });

  it('formats durations', () => {
    expect([7, 125, 3723, Number.NaN].map(formatDuration)).toEqual(['7s', '2m05s', '1h02m03s', '?']);
  });
});

describe('startBanner', () => {
  it('states the parameter counts, the output directory, the reporters and the config', () => {
    const text = startBanner({
      method: 'dpo',
      config: { beta: 0.1, learning_rate: 5e-7 },
      trainableParams: 1_234,
      totalParams: 1_000_000,
      outputDir: '/runs/a',
      reportTo: ['tensorboard'],
      resumeFrom: '/runs/a/checkpoint-20',
    });
    expect(text.split('\n')).toEqual([
      'vlalign dpo: trainable params 1,234 / total 1,000,000 (0.1234%); output: /runs/a; report_to: tensorboard',
      'resuming from /runs/a/checkpoint-20',
      'config: {"beta":0.1,"learning_rate":5e-7}',
      '',
    ]);
  });
});
