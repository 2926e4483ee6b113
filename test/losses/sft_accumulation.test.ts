// losses.SftLoss against TRL's token-mean NLL written with the tensor API (eager logSoftmax +
// gather), and the `normalisers` option every loss takes: k micro-batches computed with the
// accumulated batch's divisors sum to the loss of the one big batch, gradients included (float64).
import { describe, expect, it } from 'vitest';
import { losses, torch } from '../../lib/index.js';
import {
  IGNORE,
  completionLabels,
  eagerTokenLogps,
  expectAllClose,
  expectClose,
  f64,
  gradsOf,
  long,
  num,
  rng,
  uniform,
  type Tensor,
} from './helpers.js';

const [T, H, V] = [7, 5, 13];

function batchOf(seed: number, rows: number): { hidden: Tensor; targets: Tensor; weight: Tensor } {
  const next = rng(seed);
  const spans = Array.from({ length: rows }, (): [number, number] => {
    const start = Math.floor(next() * 3);
    return [start, 1 + Math.floor(next() * (T - start - 1))];
  });
  return {
    hidden: f64(uniform(next, rows * T * H), [rows, T, H], true),
    targets: long(completionLabels(next, spans, T, V), [rows, T]),
    weight: f64(uniform(next, V * H, -0.5, 0.5), [V, H], true),
  };
}

const rowsOf = (t: Tensor, start: number, length: number): Tensor => t.narrow(0, start, length);

describe('SftLoss', () => {
  it('is the token-mean NLL of the labelled tokens, fused and eager, with gradients', () => {
    const { hidden, targets, weight } = batchOf(1, 4);
    const head = { weight, bias: null };
    const logp = eagerTokenLogps(hidden, head, targets);
    const tokens = num(targets.ne(IGNORE).sum());
    const expected = logp.sum().neg().div(tokens);
    const expectedGrads = gradsOf(expected, [hidden, weight]).flat();
    for (const implementation of ['fused', 'eager'] as const) {
      for (const chunkSize of [1, 3, 256]) {
        const result = new losses.SftLoss({ implementation, chunkSize }).compute({ hidden, targets }, head);
        expectClose(num(result.loss), num(expected), 1e-12, `${implementation} chunk ${chunkSize}`);
        expectAllClose(gradsOf(result.loss, [hidden, weight]).flat(), expectedGrads, 1e-12);
        expectClose(result.metrics.nll_loss!, num(expected), 1e-12, 'nll_loss metric');
      }
    }
  });
});

describe('normalisers: micro-batches sum to the accumulated batch', () => {
  it('SFT: token mean over the whole accumulated batch', () => {
    const { hidden, targets, weight } = batchOf(2, 6);
    const head = { weight, bias: null };
    const sft = new losses.SftLoss();
    const whole = sft.compute({ hidden, targets }, head).loss;
    const tokens = num(targets.ne(IGNORE).sum());
    const parts = [0, 2, 4].map(
      (start) =>
        sft.compute({ hidden: rowsOf(hidden, start, 2), targets: rowsOf(targets, start, 2) }, head, {
          normalisers: { tokens },
        }).loss,
    );
    const summed = parts.reduce((a, b) => a.add(b));
    expectClose(num(summed), num(whole), 1e-12);
    expectAllClose(gradsOf(summed, [hidden, weight]).flat(), gradsOf(whole, [hidden, weight]).flat(), 1e-12);
  });

  it('MPO (sigmoid + bco_pair + sft, rpo_alpha): pairs and chosen tokens of the whole batch', () => {
    const P = 4;
    const { hidden, targets, weight } = batchOf(3, 2 * P);
    const refNext = rng(33);
    const ref = { chosen: uniform(refNext, P, -9, -2), rejected: uniform(refNext, P, -9, -2) };
    const head = { weight, bias: null };
    const config = { lossType: ['sigmoid', 'bco_pair', 'sft'], lossWeights: [0.8, 0.2, 1], rpoAlpha: 0.5 };
    const whole = new losses.PreferenceLoss(config).compute(
      { hidden, targets, refChosenLogps: f64(ref.chosen, [P]), refRejectedLogps: f64(ref.rejected, [P]) },
      head,
    ).loss;
    const chosenTokens = num(rowsOf(targets, 0, P).ne(IGNORE).sum());
    // Micro-batch m holds pairs {2m, 2m + 1}: its chosen rows, then its rejected rows.
    const parts = [0, 2].map((first) => {
      const pick = (t: Tensor): Tensor => torch.cat([rowsOf(t, first, 2), rowsOf(t, P + first, 2)]);
      return new losses.PreferenceLoss(config).compute(
        {
          hidden: pick(hidden),
          targets: pick(targets),
          refChosenLogps: f64(ref.chosen.slice(first, first + 2), [2]),
          refRejectedLogps: f64(ref.rejected.slice(first, first + 2), [2]),
        },
        head,
        { normalisers: { pairs: P, chosenTokens } },
      ).loss;
    });
    const summed = parts[0]!.add(parts[1]!);
    expectClose(num(summed), num(whole), 1e-12);
    expectAllClose(gradsOf(summed, [hidden, weight]).flat(), gradsOf(whole, [hidden, weight]).flat(), 1e-12);
  });

  it('KTO: rows of the whole batch', () => {
    const R = 4;
    const { hidden, targets, weight } = batchOf(4, R);
    const head = { weight, bias: null };
    const desirable = [true, false, true, false];
    const refLogps = uniform(rng(44), R, -9, -2);
    const loss = new losses.UnpairedPreferenceLoss({ lossType: 'apo_zero_unpaired' });
    const whole = loss.compute({ hidden, targets, desirable, refLogps: f64(refLogps, [R]) }, head).loss;
    const parts = [0, 2].map(
      (start) =>
        loss.compute(
          {
            hidden: rowsOf(hidden, start, 2),
            targets: rowsOf(targets, start, 2),
            desirable: desirable.slice(start, start + 2),
            refLogps: f64(refLogps.slice(start, start + 2), [2]),
          },
          head,
          { normalisers: { rows: R } },
        ).loss,
    );
    expectClose(num(parts[0]!.add(parts[1]!)), num(whole), 1e-12);
  });

  it('GRPO: grpo / dr_grpo over the window sequences, dapo over its tokens, bnpo as TRL: micro-batch token means / GA', () => {
    const R = 4;
    const { hidden, targets, weight } = batchOf(6, R);
    const head = { weight, bias: null };
    const next = rng(66);
    const advantages = uniform(next, R, -1, 1);
    // Old log-probs off the current ones, so that ratios leave 1 and clipping engages.
    const old = eagerTokenLogps(hidden, head, targets)
      .detach()
      .add(f64(uniform(next, R * T, -0.3, 0.3), [R, T]));
    const tokens = num(targets.ne(IGNORE).sum());
    const part = (loss: losses.GrpoLoss, start: number, normalisers?: losses.LossNormalisers) =>
      loss.compute(
        {
          hidden: rowsOf(hidden, start, 2),
          targets: rowsOf(targets, start, 2),
          advantages: f64(advantages.slice(start, start + 2), [2]),
          oldLogps: rowsOf(old, start, 2),
        },
        head,
        normalisers ? { normalisers } : {},
      ).loss;
    for (const lossType of ['grpo', 'dr_grpo', 'dapo'] as const) {
      const loss = new losses.GrpoLoss({ lossType, epsilon: 0.1, maxCompletionLength: 9 });
      const whole = loss.compute({ hidden, targets, advantages: f64(advantages, [R]), oldLogps: old }, head).loss;
      const summed = part(loss, 0, { rows: R, tokens }).add(part(loss, 2, { rows: R, tokens }));
      expectClose(num(summed), num(whole), 1e-12, lossType);
      expectAllClose(gradsOf(summed, [hidden, weight]).flat(), gradsOf(whole, [hidden, weight]).flat(), 1e-12);
    }
    const bnpo = new losses.GrpoLoss({ lossType: 'bnpo', epsilon: 0.1 });
    const means = num(part(bnpo, 0).add(part(bnpo, 2)).div(2));
    const accumulated = part(bnpo, 0, { microBatches: 2 }).add(part(bnpo, 2, { microBatches: 2 }));
    expectClose(num(accumulated), means, 1e-12, 'bnpo');
  });

  it('refuses a divisor that is not a positive integer, naming it', () => {
    const { hidden, targets, weight } = batchOf(5, 2);
    expect(() =>
      new losses.SftLoss().compute({ hidden, targets }, { weight, bias: null }, { normalisers: { tokens: 0 } }),
    ).toThrow(/normalisers\.tokens but received 0/);
  });
});
