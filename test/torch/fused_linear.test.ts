// torch's fused linear + log-softmax calls (lib/torch/fused_linear.ts): the argument checks at the
// boundary (disposed tensors, a disposed bias included, throw as everywhere in the API; buffer
// shapes and dtypes are named), and one chunk's stats + gradient against the eager tensor API.
import { describe, expect, it } from 'vitest';
import { torch } from '../../lib/index.js';
import type { Tensor } from '../../lib/torch/index.js';

const [N, H, V] = [5, 4, 9];

function operands(): { x: Tensor; weight: Tensor; bias: Tensor; targets: Tensor } {
  torch.manualSeed(3);
  return {
    x: torch.randn([N, H], { dtype: 'float64' }),
    weight: torch.randn([V, H], { dtype: 'float64' }),
    bias: torch.randn([V], { dtype: 'float64' }),
    targets: torch.tensor(BigInt64Array.from([0n, 8n, -100n, 3n, 5n])),
  };
}

const maxDiff = (a: Tensor, b: Tensor): number => a.sub(b).abs().max().item() as number;

describe('torch.linearLogprob*: argument checks', () => {
  it('a disposed bias throws instead of being taken as no bias', () => {
    torch.tidy(() => {
      const { x, weight, bias, targets } = operands();
      bias.dispose();
      expect(() => torch.linearLogprobStats(x, weight, bias, targets)).toThrow(/bias: the tensor was disposed/);
      expect(() => torch.linearLogprobs(x, weight, bias, targets)).toThrow(/bias: the tensor was disposed/);
      const scratch = torch.empty([N, V], { dtype: 'float64' });
      const chunk = (): unknown => torch.linearLogprobStatsChunk(x, weight, bias, targets, 1, scratch);
      expect(chunk).toThrow(/bias: the tensor was disposed/);
    });
  });

  it('non-tensors, disposed tensors and bad options are refused before the addon', () => {
    torch.tidy(() => {
      const { x, weight, bias, targets } = operands();
      expect(() => torch.linearLogprobStats(x, [1, 2] as never, bias, targets)).toThrow(
        /linearLogprobStats: expected a Tensor for weight/,
      );
      const gone = x.clone();
      gone.dispose();
      expect(() => torch.linearLogprobStats(gone, weight, bias, targets)).toThrow(/x: the tensor was disposed/);
      const cold = (): unknown => torch.linearLogprobStats(x, weight, bias, targets, { temperature: 0 });
      expect(cold).toThrow(/temperature must be > 0/);
      expect(() => torch.linearLogprobStats(x, weight, bias, targets, { chunkRows: 2.5 })).toThrow(RangeError);
      expect(() => torch.linearLogprobs(x, weight, bias, targets, { gradFilter: -1 })).toThrow(/gradFilter/);
      // the native checks still name shapes
      expect(() => torch.linearLogprobStats(x, weight.narrow(1, 0, 3), null, targets)).toThrow(/\[9, 3\]/);
    });
  });

  it('scratch, gradient buffers and attachGradients operands are checked by shape and dtype', () => {
    torch.tidy(() => {
      const { x, weight, bias, targets } = operands();
      const chunkWith = (scratch: Tensor) => (): unknown =>
        torch.linearLogprobStatsChunk(x, weight, bias, targets, 1, scratch);
      expect(chunkWith(torch.empty([N - 1, V], { dtype: 'float64' }))).toThrow(/scratch of shape \[>= 5, 9\]/);
      expect(chunkWith(torch.empty([N, V]))).toThrow(/scratch of dtype float64/);
      const scratch = torch.empty([N, V], { dtype: 'float64' });
      const stats = torch.linearLogprobStatsChunk(x, weight, bias, targets, 1, scratch);
      const into = { weight: torch.zerosLike(weight), bias: torch.zerosLike(bias) };
      const ones = torch.onesLike(stats.logp);
      const grad = (logp: Tensor, buffers: torch.HeadGradients) => (): unknown =>
        torch.linearLogprobGradChunk(scratch, x, weight, targets, 1, stats, { logp }, buffers);
      expect(grad(ones.narrow(0, 0, 2), into)).toThrow(/grads.logp of shape \[5\]/);
      expect(grad(ones, { weight: torch.zeros([V, H]) })).toThrow(/into.weight of dtype float64/);
      const value = torch.zeros([], { dtype: 'float64' });
      expect(() => torch.attachGradients(value, { x, weight, bias }, { x, weight })).toThrow(/together/);
      const short = { x: x.narrow(0, 0, 2), weight };
      expect(() => torch.attachGradients(value, { x, weight }, short)).toThrow(/grads.x of shape \[5, 4\]/);
    });
  });
});

describe('torch.linearLogprob*: one chunk against the eager tensor API', () => {
  it('stats, then the gradient of sum(logp) + 0.5 sum(entropy) into x, weight and bias', () => {
    torch.tidy(() => {
      const { x, weight, bias, targets } = operands();
      const temperature = 0.8;
      const scratch = torch.empty([N + 2, V], { dtype: 'float64' });
      const stats = torch.linearLogprobStatsChunk(x, weight, bias, targets, temperature, scratch);
      const into = { weight: torch.zerosLike(weight), bias: torch.zerosLike(bias) };
      const gradX = torch.linearLogprobGradChunk(
        scratch,
        x,
        weight,
        targets,
        temperature,
        stats,
        { logp: torch.onesLike(stats.logp), entropy: torch.fullLike(stats.entropy, 0.5) },
        into,
      );

      const [xe, we, be] = [x, weight, bias].map((t) => t.clone().requiresGrad_(true)) as [Tensor, Tensor, Tensor];
      const logits = torch.nn.functional.linear(xe, we, be);
      const logprobs = logits.div(temperature).logSoftmax(-1);
      const valid = targets.ge(0);
      const logp = logprobs.gather(1, targets.clamp(0).unsqueeze(1)).squeeze(1).mul(valid);
      const entropy = logprobs.exp().mul(logprobs).sum(-1).neg();
      expect(maxDiff(stats.logp, logp)).toBeLessThan(1e-12);
      expect(maxDiff(stats.entropy, entropy)).toBeLessThan(1e-12);
      expect(maxDiff(stats.lse, logits.div(temperature).logsumexp(-1))).toBeLessThan(1e-12);
      expect(maxDiff(stats.meanLogit, logits.mean(-1))).toBeLessThan(1e-12);
      const [gx, gw, gb] = torch.autograd.grad(logp.sum().add(entropy.sum().mul(0.5)), [xe, we, be]);
      expect(maxDiff(gradX, gx!)).toBeLessThan(1e-12);
      expect(maxDiff(into.weight, gw!)).toBeLessThan(1e-12);
      expect(maxDiff(into.bias, gb!)).toBeLessThan(1e-12);
    });
  });
});
