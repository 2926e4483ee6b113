// Data parallel training (torch.nn.parallel.DistributedDataParallel's gradient synchronisation) on
// PyTorch's own c10d::Reducer (cpp/binding/distributed_ddp.cc): the reducer hooks each parameter's
// gradient accumulator and all-reduces a bucket of gradients as soon as autograd has produced all
// of them, while the rest of backward still runs; when backward() returns every .grad holds the
// mean over ranks. A backward without prepareForBackward() first only accumulates locally (DDP's
// no_sync), for the non-final micro-steps of gradient accumulation.
import { invalidArgument } from '../torch/args.js';
import { tensor } from '../torch/creation.js';
import { native as N } from '../torch/native.js';
import { handleOf, Tensor, wrap } from '../torch/tensor.js';
import { allReduce, broadcast } from './collectives.js';
import { requireGroup, type ProcessGroupInfo } from './process_group.js';

export interface DataParallelOptions {
  /** Bucket size in MiB (DDP's bucket_cap_mb; default 25). */
  bucketCapMB?: number;
  /** The cap of the small bucket of the first parameters (DDP's 1 MiB first bucket; default 1). */
  firstBucketCapMB?: number;
  /** Copy rank 0's parameters to every rank in create() (DDP's initial sync; default true). */
  broadcastParameters?: boolean;
  /**
   * Parameters may get no gradient on some steps (DDP's find_unused_parameters): the reducer then
   * walks the graph from the loss given to prepareForBackward(loss). Default false.
   */
  findUnusedParameters?: boolean;
}

/** One bucket as the reducer holds it (diagnostics and tests). */
export interface DataParallelBucket {
  /** Indices into the params given to create(), in the bucket's layout order. */
  params: number[];
  /** The bucket's flat buffer: the gradients copied in during a synchronised backward, then their mean. */
  buffer: Tensor;
}

const MIB = 1024 * 1024;

function checkCap(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw invalidArgument(name, 'a positive number of MiB', value, 'DataParallel.create');
  return Math.max(1, Math.round(value * MIB));
}

function checkParams(params: unknown): Tensor[] {
  if (!Array.isArray(params)) throw invalidArgument('params', 'an array of Tensors', params, 'DataParallel.create');
  params.forEach((p, k) => {
    if (!Tensor.isTensor(p)) throw invalidArgument(`params[${k}]`, 'a Tensor', p, 'DataParallel.create');
    if (p.isDisposed) throw new Error(`DataParallel.create: params[${k}] was disposed`);
  });
  return params as Tensor[];
}

/** Every rank must pass the same parameters: compare count and sizes before anything is reduced. */
async function checkSameParameters(trainable: readonly Tensor[], group: ProcessGroupInfo): Promise<void> {
  const signature = [trainable.length, trainable.reduce((n, p) => n + p.numel(), 0)];
  const low = await allReduce(tensor(signature, { dtype: 'float64' }), { op: 'min' });
  const high = await allReduce(tensor(signature, { dtype: 'float64' }), { op: 'max' });
  const [lo, hi] = [low.toArray() as number[], high.toArray() as number[]];
  low.dispose();
  high.dispose();
  if (lo[0] !== hi[0] || lo[1] !== hi[1]) {
    throw new Error(
      `DataParallel.create: rank ${group.rank} has ${signature[0]} trainable parameters of ${signature[1]} elements, ` +
        `but the ranks range over ${lo[0]}..${hi[0]} parameters and ${lo[1]}..${hi[1]} elements: every rank must wrap the same model`,
    );
  }
}

export class DataParallel {
  readonly worldSize: number;
  readonly #id: number;
  readonly #params: readonly Tensor[];
  readonly #findUnused: boolean;
  #disposed = false;

  private constructor(id: number, params: readonly Tensor[], worldSize: number, findUnused: boolean) {
    this.#id = id;
    this.#params = params;
    this.worldSize = worldSize;
    this.#findUnused = findUnused;
  }

  /** Broadcasts rank 0's parameters (unless broadcastParameters false) and builds the reducer over the trainable (requiresGrad) params, in the order given. */
  static async create(
    group: ProcessGroupInfo,
    params: readonly Tensor[],
    options: DataParallelOptions = {},
  ): Promise<DataParallel> {
    const current = requireGroup('DataParallel.create');
    if (group?.rank !== current.rank || group?.worldSize !== current.worldSize)
      throw invalidArgument('group', "this process's group (getProcessGroup())", group, 'DataParallel.create');
    if (typeof options !== 'object' || options === null)
      throw invalidArgument('options', 'an object', options, 'DataParallel.create');
    const bucketCap = checkCap(options.bucketCapMB, 'options.bucketCapMB', 25 * MIB);
    const firstBucketCap = checkCap(options.firstBucketCapMB, 'options.firstBucketCapMB', MIB);
    const all = checkParams(params);
    const positions = all.flatMap((p, k) => (p.requiresGrad ? [k] : []));
    const trainable = positions.map((k) => all[k]);
    if (trainable.length === 0) throw new Error('DataParallel.create: no parameter requires grad');
    await checkSameParameters(trainable, current);
    if (options.broadcastParameters ?? true) {
      // DDP's _sync_module_states: rank 0's values everywhere, in the same order on every rank.
      await Promise.all(trainable.map((p) => broadcast(p, { src: 0 })));
    }
    const findUnused = options.findUnusedParameters === true;
    const handles = trainable.map((p, k) => handleOf(p, `params[${positions[k]}]`, 'DataParallel.create'));
    const id = N.ddpCreate(handles, positions, firstBucketCap, bucketCap, findUnused) as number;
    return new DataParallel(id, trainable, current.worldSize, findUnused);
  }

  /**
   * Call before a backward whose gradients must be averaged across ranks (the last micro-step of
   * an accumulation window); omit it on the others (no_sync). After that backward returns, every
   * param's .grad holds the mean over ranks. `outputs` (the loss) is needed only with
   * findUnusedParameters, to find the parameters this step does not reach.
   */
  prepareForBackward(outputs?: Tensor | readonly Tensor[]): void {
    const op = 'DataParallel.prepareForBackward';
    this.#checkAlive(op);
    const list = outputs === undefined ? [] : Array.isArray(outputs) ? outputs : [outputs as Tensor];
    if (this.#findUnused && list.length === 0)
      throw invalidArgument(
        'outputs',
        'the loss (findUnusedParameters needs it to find unused parameters)',
        outputs,
        op,
      );
    N.ddpPrepareForBackward(
      this.#id,
      list.map((t, k) => handleOf(t, `outputs[${k}]`, op)),
    );
  }

  /** The trainable parameters the reducer synchronises, in the order given to create(). */
  get parameters(): readonly Tensor[] {
    return this.#params;
  }

  /** The buckets in the order they are all-reduced; the buffers alias the reducer's (dispose them). */
  buckets(): DataParallelBucket[] {
    this.#checkAlive('DataParallel.buckets');
    const raw = N.ddpBuckets(this.#id) as Array<{ params: number[]; buffer: number }>;
    return raw.map((b) => ({ params: b.params, buffer: wrap(b.buffer) }));
  }

  /** Removes the reducer's hooks; the parameters and their .grad stay. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    N.ddpDispose(this.#id);
  }

  #checkAlive(op: string): void {
    if (this.#disposed) throw new Error(`${op}: the DataParallel was disposed`);
  }
}
