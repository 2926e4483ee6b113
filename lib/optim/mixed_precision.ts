// Mixed precision with float32 master weights, as DeepSpeed's bf16 optimizer and Apex O2 do it: the
// model's trainable parameters hold the compute dtype (bfloat16), forward and backward run in it and
// gradients land on them in it; step() upcasts each gradient into a float32 master copy of its
// parameter, runs the wrapped optimizer (AdamW, SGD) on the masters, so its moments and every update
// stay float32 and updates smaller than a bf16 ulp accumulate, then writes each master back rounded
// to the compute dtype. The trainer sees an ordinary Optimizer: its groups hold the model's
// parameters (clipping scales their gradients, the scheduler sets their lr), and its state carries
// each master beside the moments (`master`), so an optimizer file restores the masters exactly.
import * as torch from '../torch/index.js';
import type { DType, Tensor } from '../torch/index.js';
import {
  Optimizer,
  type GroupOptions,
  type OptimizerState,
  type ParamList,
  type ParamState,
  type ParamsArg,
} from './optimizer.js';

export interface MixedPrecisionOptions {
  /** The dtype the model computes in; trainable parameters are cast to it (default bfloat16). */
  computeDtype?: DType;
}

const MASTER = 'master';

export class MixedPrecisionOptimizer<O extends GroupOptions> extends Optimizer<O> {
  readonly computeDtype: DType;
  /** The float32 masters, in the order of the parameters across groups (the wrapped optimizer's parameters). */
  readonly masters: readonly Tensor[];

  /**
   * Takes over `inner`, a fresh optimizer over the model's parameters: the masters are copied from
   * the parameters as they are now (float32 weights stay exact), then the parameters are cast to
   * the compute dtype and `inner` is re-pointed at the masters.
   */
  constructor(
    readonly inner: Optimizer<O>,
    options: MixedPrecisionOptions = {},
  ) {
    super(ownGroups(inner), inner.defaults);
    if (inner.state.size > 0) {
      throw new Error(
        `MixedPrecisionOptimizer: the ${inner.constructor.name} given has state already; give a fresh one`,
      );
    }
    this.computeDtype = options.computeDtype ?? 'bfloat16';
    const masters: Tensor[] = [];
    torch.noGrad(() => {
      inner.paramGroups.forEach((group) => {
        group.params = group.params.map((p) => {
          checkFloating(p, this.computeDtype);
          const master = p.detach().to({ dtype: 'float32', copy: true }).keep();
          if (p.dtype !== this.computeDtype) p.setData(p.to({ dtype: this.computeDtype }));
          masters.push(master);
          return master;
        });
      });
    });
    this.masters = masters;
  }

  /** Written into optimizer files: a plain optimizer's file does not load into this one, nor the reverse. */
  override get stateType(): string {
    return `MixedPrecision<${this.inner.stateType}>`;
  }

  protected validate(): void {
    // The wrapped optimizer checked the same groups.
  }

  /** Gradients into the masters (float32), the wrapped step on them, the masters rounded back into the parameters. */
  step(): void {
    const pairs = this.#pairs();
    this.paramGroups.forEach((group, g) => {
      const { params: _params, paramNames: _names, ...options } = group;
      Object.assign(this.inner.paramGroups[g]!, options); // the scheduler's lr, set on our groups
    });
    const stepped: Array<[Tensor, Tensor]> = [];
    torch.tidy(() => {
      for (const [param, master] of pairs) {
        const grad = param.grad;
        master.grad = grad === null ? null : grad.to({ dtype: 'float32' });
        if (grad !== null) stepped.push([param, master]);
      }
    });
    try {
      this.inner.step();
      torch.noGrad(() => {
        for (const [param, master] of stepped) param.copy_(master);
      });
    } finally {
      for (const [, master] of stepped) master.grad = null;
    }
  }

  override zeroGrad(): void {
    super.zeroGrad();
    this.inner.zeroGrad();
  }

  /** The wrapped optimizer's state with each parameter's float32 master added as `master`. */
  override stateDict(): OptimizerState<O> {
    const own = super.stateDict();
    const inner = this.inner.stateDict();
    const state: Record<number, ParamState> = {};
    this.masters.forEach((master, i) => {
      state[i] = { ...(inner.state[i] ?? {}), [MASTER]: master };
    });
    return { state, paramGroups: own.paramGroups };
  }

  /**
   * Restores what stateDict() gave (or an optimizer file of it): the masters exactly, the wrapped
   * optimizer's state, the group options; the parameters become the masters rounded to the compute
   * dtype. Every problem is reported before anything changes.
   */
  override loadStateDict(saved: OptimizerState<O>, source = 'MixedPrecisionOptimizer.loadStateDict'): void {
    const masters = this.#savedMasters(saved, source);
    const rest: Record<number, ParamState> = {};
    for (const [key, entry] of Object.entries(saved.state)) {
      const { [MASTER]: _master, ...others } = entry;
      if (Object.keys(others).length > 0) rest[Number(key)] = others;
    }
    this.inner.loadStateDict({ state: rest, paramGroups: saved.paramGroups }, source);
    saved.paramGroups.forEach((g, i) => {
      const { params: _ids, paramNames: _names, ...options } = g;
      Object.assign(this.paramGroups[i]!, options);
    });
    const pairs = this.#pairs();
    torch.noGrad(() => {
      masters.forEach((saved, i) => {
        const [param, master] = pairs[i]!;
        master.copy_(saved);
        param.copy_(master);
      });
    });
  }

  /** Frees the masters and the wrapped optimizer's state; the optimizer is unusable afterwards. */
  dispose(): void {
    this.inner.disposeState();
    for (const master of this.masters) master.dispose();
  }

  // [model parameter, its master] in the order of the groups.
  #pairs(): Array<[Tensor, Tensor]> {
    return this.paramGroups.flatMap((g) => g.params).map((p, i) => [p, this.masters[i]!]);
  }

  // The saved master of each parameter in our order, matched by name when both sides have names.
  #savedMasters(saved: OptimizerState<O>, source: string): Tensor[] {
    const problems: string[] = [];
    if (saved.paramGroups.length !== this.paramGroups.length) {
      problems.push(
        `${saved.paramGroups.length} saved parameter groups but the optimizer has ${this.paramGroups.length}`,
      );
    }
    const byName = this.named && saved.paramGroups.every((g) => g.paramNames !== undefined);
    const savedId = new Map<string, number>();
    saved.paramGroups.forEach((g, group) =>
      g.params.forEach((id, k) => savedId.set(byName ? g.paramNames![k]! : `${group}.${k}`, id)),
    );
    const found: Tensor[] = [];
    this.paramGroups.forEach((g, group) =>
      g.params.forEach((param, k) => {
        const label = byName ? `'${g.paramNames![k]}'` : `${group}.${k}`;
        const id = savedId.get(byName ? g.paramNames![k]! : `${group}.${k}`);
        const master = id === undefined ? undefined : saved.state[id]?.[MASTER];
        if (master === undefined || typeof master === 'number') {
          problems.push(`no float32 master for parameter ${label} (not saved by a mixed-precision optimizer?)`);
        } else if (master.dtype !== 'float32' || master.shape.join() !== param.shape.join()) {
          problems.push(
            `the master of ${label} is ${master.dtype} [${master.shape}], expected float32 [${param.shape}]`,
          );
        } else found.push(master);
      }),
    );
    if (problems.length > 0) {
      throw new Error(`${source}: the saved state does not fit this optimizer:\n  ${problems.join('\n  ')}`);
    }
    return found;
  }
}

// The inner optimizer's groups (its options, its parameters, named when it is) for our constructor.
function ownGroups<O extends GroupOptions>(inner: Optimizer<O>): ParamsArg<O> {
  return inner.paramGroups.map((group) => {
    const { params, paramNames, ...options } = group;
    const named: ParamList = paramNames === undefined ? params : params.map((p, k) => [paramNames[k]!, p] as const);
    return { ...(options as unknown as Partial<O>), params: named };
  });
}

function checkFloating(p: Tensor, computeDtype: DType): void {
  const ok = ['float32', 'bfloat16', 'float16'];
  if (!ok.includes(p.dtype) || !ok.includes(computeDtype)) {
    throw new TypeError(
      `MixedPrecisionOptimizer: expected float32 / bfloat16 / float16 parameters and compute dtype, got a ${p.dtype} parameter and ${computeDtype}`,
    );
  }
}
