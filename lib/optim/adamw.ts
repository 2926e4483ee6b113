// AdamW (Loshchilov & Hutter; torch.optim.AdamW's defaults and update order): each step is one fused
// native pass per parameter (cpp/kernels/cpu/adamw.cc) over the parameter, its gradient and two
// float32 moments, instead of PyTorch's ~10 foreach passes over memory.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { checkOption, Optimizer, type ParamsArg } from './optimizer.js';

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled: p ← p·(1 − lr·weightDecay) before the Adam update. */
  weightDecay: number;
  maximize: boolean;
}

export const ADAMW_DEFAULTS: AdamWOptions = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 1e-2,
  maximize: false,
};

export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: ParamsArg<AdamWOptions>, options: Partial<AdamWOptions> = {}) {
    super(params, { ...ADAMW_DEFAULTS, ...options });
  }

  protected validate(g: AdamWOptions, where: string): void {
    checkOption(g.lr, 'lr', where, (v) => v >= 0, 'a learning rate >= 0');
    checkOption(g.beta1, 'beta1', where, (v) => v >= 0 && v < 1, 'a number in [0, 1)');
    checkOption(g.beta2, 'beta2', where, (v) => v >= 0 && v < 1, 'a number in [0, 1)');
    checkOption(g.eps, 'eps', where, (v) => v >= 0, 'a number >= 0');
    checkOption(g.weightDecay, 'weightDecay', where, (v) => v >= 0, 'a number >= 0');
  }

  step(): void {
    for (const group of this.paramGroups) {
      // Parameters first updated at different times have different step counts (bias corrections).
      const byStep = new Map<number, Array<[Tensor, Tensor]>>();
      for (const p of group.params) {
        const grad = p.grad;
        if (grad === null) continue;
        const state = this.#state(p);
        state.step = (state.step as number) + 1;
        const batch = byStep.get(state.step);
        if (batch === undefined) byStep.set(state.step, [[p, grad]]);
        else batch.push([p, grad]);
      }
      for (const [step, batch] of byStep) this.#update(batch, group, step);
    }
  }

  #update(batch: Array<[Tensor, Tensor]>, group: AdamWOptions, step: number): void {
    const params = batch.map(([p]) => p);
    try {
      torch.adamwStep_(
        params,
        batch.map(([, g]) => g),
        params.map((p) => this.state.get(p)!.expAvg as Tensor),
        params.map((p) => this.state.get(p)!.expAvgSq as Tensor),
        {
          lr: group.lr,
          beta1: group.beta1,
          beta2: group.beta2,
          eps: group.eps,
          weightDecay: group.weightDecay,
          maximize: group.maximize,
          step,
        },
      );
    } finally {
      for (const [, g] of batch) g.dispose();
    }
  }

  #state(p: Tensor): Record<string, Tensor | number> {
    let state = this.state.get(p);
    if (state === undefined) {
      const zeros = (): Tensor => torch.zeros(p.shape, { dtype: 'float32', device: p.device }).keep();
      state = { step: 0, expAvg: zeros(), expAvgSq: zeros() };
      this.state.set(p, state);
    }
    return state;
  }
}
