// SGD with momentum, dampening, Nesterov and L2 weight decay, in torch.optim.SGD's order:
//   g ← g + wd·p;  b ← μ·b + (1 − dampening)·g (b = g on the first step);  g ← g + μ·b (Nesterov) or b;
//   p ← p − lr·g  (maximize flips the sign of g first).
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { checkOption, Optimizer, type ParamsArg } from './optimizer.js';

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  maximize: boolean;
}

export const SGD_DEFAULTS: SGDOptions = {
  lr: 1e-3,
  momentum: 0,
  dampening: 0,
  weightDecay: 0,
  nesterov: false,
  maximize: false,
};

export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ParamsArg<SGDOptions>, options: Partial<SGDOptions> = {}) {
    super(params, { ...SGD_DEFAULTS, ...options });
  }

  protected validate(g: SGDOptions, where: string): void {
    checkOption(g.lr, 'lr', where, (v) => v >= 0, 'a learning rate >= 0');
    checkOption(g.momentum, 'momentum', where, (v) => v >= 0, 'a number >= 0');
    checkOption(g.weightDecay, 'weightDecay', where, (v) => v >= 0, 'a number >= 0');
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) {
      throw new RangeError(`${where}: nesterov needs momentum > 0 and dampening 0`);
    }
  }

  step(): void {
    torch.noGrad(() => {
      for (const group of this.paramGroups) for (const p of group.params) this.#update(p, group);
    });
  }

  #update(p: Tensor, g: SGDOptions): void {
    torch.tidy(() => {
      const grad = p.grad;
      if (grad === null) return;
      let d = g.maximize ? grad.neg() : grad;
      if (g.weightDecay !== 0) d = d.add(p, g.weightDecay);
      if (g.momentum !== 0) {
        const state = this.state.get(p);
        const buffer = state?.momentumBuffer as Tensor | undefined;
        if (buffer === undefined) this.state.set(p, { momentumBuffer: d.clone().keep() });
        else buffer.mul_(g.momentum).add_(d, 1 - g.dampening);
        const b = this.state.get(p)!.momentumBuffer as Tensor;
        d = g.nesterov ? d.add(b, g.momentum) : b;
      }
      p.sub_(d, g.lr);
    });
  }
}
