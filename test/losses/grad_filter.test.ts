// Gradient filtering (Cut Cross-Entropy's idea, applied per element): with a peaked softmax only the
// logit gradients above gradFilter are applied. The loss is unchanged and the gradients stay within
// what the skipped entries can add up to.
import { describe, expect, it } from 'vitest';

import { losses, torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';
import { EPS32, float32Bound } from '../tolerance.js';

function mpoGrads(
  hidden: Tensor,
  weight: Tensor,
  labels: Tensor,
  ref: { refChosenLogps: Tensor; refRejectedLogps: Tensor },
  config: object,
) {
  // The current-TRL mix: no running-mean shift, so the single pass (where the filter acts) runs.
  const loss = new losses.PreferenceLoss({ ...losses.MPO, trlVersion: 'current', chunkSize: 64, ...config });
  const { loss: value } = loss.compute({ hidden, targets: labels, ...ref }, { weight });
  const [gh, gw] = torch.autograd.grad(value, [hidden, weight]);
  return { value: value.item() as number, gh: gh!, gw: gw! };
}

describe('gradFilter', () => {
  it('a peaked softmax: sparse gradients agree with the exact path to within the dropped mass', () => {
    torch.tidy(() => {
      torch.manualSeed(11);
      const [P, T, H, V] = [4, 16, 32, 3000];
      // Logits of standard deviation ~24: most of each row's probabilities are below 1e-10.
      const hidden = torch
        .randn([2 * P, T, H])
        .mul(4)
        .requiresGrad_();
      const weight = torch.randn([V, H]).requiresGrad_();
      const labels = torch.randint(0, V, [2 * P, T]);
      const ref = { refChosenLogps: torch.randn([P]), refRejectedLogps: torch.randn([P]) };
      const exact = mpoGrads(hidden, weight, labels, ref, { gradFilter: 0 });
      const filtered = mpoGrads(hidden, weight, labels, ref, { gradFilter: 'auto' });
      const eager = mpoGrads(hidden, weight, labels, ref, { implementation: 'eager' });
      expect(filtered.value).toBe(exact.value);
      expect(filtered.gw.equal(exact.gw)).toBe(false); // the sparse path did drop entries
      const scale = (t: Tensor): number => t.abs().max().item() as number;
      // Each dropped entry is below 2^-28; a dW entry sums at most 2PT of them times |x| <= ~20.
      const bound = 2 * P * T * 2 ** -28 * scale(hidden);
      expect(scale(filtered.gw.sub(exact.gw))).toBeLessThan(bound);
      expect(scale(filtered.gh.sub(exact.gh))).toBeLessThan(V * 2 ** -28 * scale(weight));
      // Fused vs eager: p = exp(l - lse) carries each path's rounding of logits of size max|l|
      // (~120 here) as a relative error eps·max|l|; two paths, twice that.
      const maxLogit = torch.noGrad(() => scale(hidden.matmul(weight.t())));
      expect(scale(exact.gw.sub(eager.gw)) / scale(eager.gw)).toBeLessThan(2 * EPS32 * maxLogit);
      expect(scale(filtered.gw.sub(eager.gw)) / scale(eager.gw)).toBeLessThan(1e-4);
    });
  });

  it('a flat softmax keeps every entry (dense path) and float64 is exact by default', () => {
    torch.tidy(() => {
      torch.manualSeed(12);
      const [P, T, H, V] = [2, 8, 16, 500];
      for (const dtype of ['float32', 'float64'] as const) {
        const hidden = torch
          .randn([2 * P, T, H], { dtype })
          .mul(0.1)
          .requiresGrad_();
        const weight = torch.randn([V, H], { dtype }).requiresGrad_();
        const labels = torch.randint(0, V, [2 * P, T]);
        const ref = { refChosenLogps: torch.randn([P], { dtype }), refRejectedLogps: torch.randn([P], { dtype }) };
        const exact = mpoGrads(hidden, weight, labels, ref, { gradFilter: 0 });
        const auto = mpoGrads(hidden, weight, labels, ref, {});
        if (dtype === 'float64') {
          expect(auto.gw.equal(exact.gw)).toBe(true);
          expect(auto.gh.equal(exact.gh)).toBe(true);
        } else {
          // Same entries; only the label term is applied separately (another summation order):
          // dW sums over the 2PT tokens, dh over the V vocabulary rows.
          const rel = (a: Tensor, b: Tensor): number =>
            (a.sub(b).abs().max().item() as number) / (b.abs().max().item() as number);
          expect(rel(auto.gw, exact.gw)).toBeLessThan(float32Bound(2 * P * T));
          expect(rel(auto.gh, exact.gh)).toBeLessThan(float32Bound(V));
        }
      }
    });
  });

  it('rejects a negative filter', () => {
    expect(() => new losses.PreferenceLoss({ gradFilter: -1 })).toThrow(/gradFilter/);
  });
});
