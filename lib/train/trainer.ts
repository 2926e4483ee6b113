// The one training loop every method runs, in llm.c's shape: next window of micro-batches, forward
// and backward of each (losses normalised over the whole window), then clip, step, schedule, zero;
// then the log / eval / save hooks. Methods (lib/train/methods/) only collate and compute losses.
// A checkpoint holds everything the loop reads (weights or adapter, optimizer and scheduler, RNG,
// the data cursor, the losses' running moments, the open logging window), so a resumed run continues
// the identical run.
import fs from 'node:fs';
import path from 'node:path';
import * as torch from '../torch/index.js';
import type { CausalLM } from '../models/index.js';
import { savePretrained, saveConfig } from '../models/index.js';
import { Dropout } from '../nn/index.js';
import type { LoraModel } from '../adapters/index.js';
import { clipGradNorm_, type LRScheduler, type Optimizer, type GroupOptions } from '../optim/index.js';
import type { Processor } from '../processing/index.js';
import { DataLoader } from '../data/loader.js';
import type { DataPosition } from '../data/sampler.js';
import type { DataRecord, RecordDataset } from '../data/records.js';
import { mergeMetricTotals, metricMeans, type MetricTotals } from '../losses/index.js';
import { CheckpointManager, loadCheckpoint, resolveResume, trainerState } from './checkpoint.js';
import { restoreTraining, trainingWriters, type TrainingParts } from './training_state.js';
import { LogWindow, withoutLoss } from './log_window.js';
import { startBanner } from './progress.js';
import { Reporters } from './reporters.js';
import {
  sumCounts,
  type Generation,
  type MicroBatch,
  type RolloutPlan,
  type TrainingMethod,
} from './methods/method.js';
import { stepsPerEpoch, trainingSteps, type LoopArgs } from './loop_args.js';
import { copyProcessorFiles } from './processor_files.js';
import type { EvalContext, EvalHook } from './eval_hook.js';
import {
  globalNormalisers,
  globalStepNumbers,
  rankPlace,
  TrainingGroup,
  type GradientSync,
  type RankPlace,
} from './distributed.js';
import { ZERO_CHECKPOINT_PREFIX, ZeroStep, zeroCheckpointDir } from './zero_step.js';

export interface TrainOutput {
  globalStep: number;
  /**
   * HF's train_loss: the mean step loss of the whole run, the steps before a resume included (HF
   * divides only this process's losses by global_step, so a resumed run reports a smaller number).
   */
  trainingLoss: number;
  metrics: Record<string, number>;
}

export interface TrainerParts {
  args: LoopArgs;
  method: TrainingMethod;
  model: CausalLM;
  processor: Processor;
  adapter?: LoraModel;
  optimizer: Optimizer<GroupOptions>;
  scheduler: LRScheduler;
  trainDataset: RecordDataset;
  evalDataset?: RecordDataset | null;
  /** Generation / preference metrics joining each evaluation (eval_hook.ts; createTrainer builds it). */
  evalHook?: EvalHook | null;
  /** The source checkpoint: its tokenizer and processor files are copied next to the final save. */
  modelPath?: string;
  /** Before the first step (the precomputed-reference pass). */
  beforeTraining?: (trainer: Trainer) => Promise<void>;
}

export class Trainer {
  readonly args: LoopArgs;
  readonly method: TrainingMethod;
  readonly trainLoader: DataLoader<DataRecord>;
  globalStep = 0;
  numTokens = 0;
  /** The summed step losses of the run so far (checkpointed, so train_loss survives a resume). */
  #lossSum = 0;
  #position: DataPosition;
  readonly #window = new LogWindow();
  #reporters: Reporters | null = null;
  /** The run's process group while train() runs (alone: a group of one). */
  #group = TrainingGroup.alone();
  #gradientSync: GradientSync | null = null;
  /** zero_stage 1, 2 or 3 on several ranks: the sharded optimizer step (instead of DDP). */
  #zeroStep: ZeroStep | null = null;
  /** This process's rank and the world size, from the launcher's environment (fixed at construction). */
  readonly place: RankPlace;

  constructor(readonly parts: TrainerParts) {
    this.args = parts.args;
    this.method = parts.method;
    this.place = rankPlace();
    // Each rank reads its shard of every epoch's shuffled order (DistributedSampler, drop_last false).
    this.trainLoader = new DataLoader(parts.trainDataset, {
      batchSize: parts.method.rollouts?.promptsPerGeneration ?? this.args.perDeviceTrainBatchSize,
      seed: this.args.dataSeed ?? this.args.seed,
      prefetch: this.args.dataloaderPrefetch ?? undefined,
      rank: this.place.rank,
      worldSize: this.place.worldSize,
    });
    this.#position = { epoch: 0, index: 0, seed: 0 };
  }

  /** Whether this process writes the run's files: rank 0, or the only process (accelerate's is_main_process). */
  get isMainProcess(): boolean {
    return this.#group.isMain;
  }

  /** Optimizer steps per epoch: a short last window still steps (HF). */
  get stepsPerEpoch(): number {
    return stepsPerEpoch(this.args, this.trainLoader.samplesPerEpoch, this.method.rollouts);
  }

  get totalSteps(): number {
    return trainingSteps(this.args, this.trainLoader.samplesPerEpoch, this.method.rollouts);
  }

  /**
   * The run. Under a launcher with WORLD_SIZE > 1 it joins the process group first (and leaves it at
   * the end or on an error); every rank resumes from the same checkpoint.
   */
  async train(): Promise<TrainOutput> {
    this.#group = await TrainingGroup.join();
    try {
      this.#checkPlace();
      return await this.#train();
    } finally {
      this.#gradientSync?.dispose();
      this.#gradientSync = null;
      await this.#zeroStep?.dispose();
      this.#zeroStep = null;
      this.#group.leave();
      this.#group = TrainingGroup.alone();
    }
  }

  // The loader's shards were cut for the launcher's place; a group opened elsewhere must agree.
  #checkPlace(): void {
    const { rank, worldSize } = this.#group;
    if (rank !== this.place.rank || worldSize !== this.place.worldSize) {
      throw new Error(
        `Trainer: built as rank ${this.place.rank} of ${this.place.worldSize} but the process group is rank ` +
          `${rank} of ${worldSize}; create the trainer after initProcessGroup, or under the launcher's environment`,
      );
    }
  }

  async #train(): Promise<TrainOutput> {
    const { args } = this;
    const resume = resolveResume(args.outputDir, args.resumeFromCheckpoint ?? undefined);
    const history = resume === null ? [] : await this.#restore(resume);
    this.#prepareModel();
    this.method.joinGroup?.(this.#group);
    // Counted before stage 3 empties the parameters.
    const banner = this.#banner(resume);
    this.#zeroStep = await this.#shardedStep(resume);
    this.#gradientSync =
      this.#zeroStep === null
        ? await this.#group.gradientSync(
            this.parts.optimizer.paramGroups.flatMap((g) => g.params),
            args.ddpFindUnusedParameters ?? true,
          )
        : null;
    // Rank 0 reports; the others train silently.
    this.#reporters = this.#group.isMain
      ? new Reporters(
          {
            outputDir: args.outputDir,
            loggingDir: args.loggingDir,
            reportTo: args.reportTo.filter((r) => r !== 'none'),
            totalSteps: this.totalSteps,
            startStep: this.globalStep,
          },
          history,
        )
      : null;
    try {
      this.#reporters?.start(banner, args);
      const before = this.parts.beforeTraining;
      if (resume === null && before !== undefined) await this.#withRoot(() => before(this));
      const started = Date.now();
      const startStep = this.globalStep;
      await this.#loop((loss) => {
        this.#lossSum += loss;
      });
      const seconds = (Date.now() - started) / 1000;
      const steps = this.globalStep - startStep;
      const metrics = {
        train_runtime: seconds,
        train_samples_per_second:
          (steps * args.perDeviceTrainBatchSize * args.gradientAccumulationSteps * this.#group.worldSize) / seconds,
        train_steps_per_second: steps / seconds,
        train_loss: this.globalStep > 0 ? this.#lossSum / this.globalStep : Number.NaN,
        ...this.#badRows(),
      };
      this.#reporters?.log({ ...metrics, epoch: this.#epochFloat(), step: this.globalStep });
      if (args.saveStrategy !== 'no' && !this.#savedAt(this.globalStep)) await this.saveCheckpoint();
      await this.saveModel(args.outputDir);
      return { globalStep: this.globalStep, trainingLoss: metrics.train_loss, metrics };
    } finally {
      this.#reporters?.close();
      this.#reporters = null;
    }
  }

  // Epochs from the cursor on; each yields windows of gradientAccumulationSteps batches.
  async #loop(onStep: (loss: number) => void): Promise<void> {
    if (this.method.rollouts !== undefined) return this.#rolloutLoop(this.method.rollouts, onStep);
    const total = this.totalSteps;
    const ga = this.args.gradientAccumulationSteps;
    for (let epoch = this.#position.epoch; this.globalStep < total; epoch++) {
      const from = epoch === this.#position.epoch && this.#position.index > 0 ? this.#position : undefined;
      const perEpoch = this.trainLoader.samplesPerEpoch;
      // A window that reads the epoch's last sample runs the epoch hooks in its own afterStep, before
      // its save, so a checkpoint at an epoch's end has them behind it and a resume never reruns them.
      let hooksRan = from !== undefined && from.index >= perEpoch;
      let window: Array<{ records: MicroRecords; position: DataPosition }> = [];
      for await (const loaded of this.trainLoader.epoch(epoch, from)) {
        window.push(loaded);
        if (window.length < ga) continue;
        onStep(await this.#optimizerStep(window));
        window = [];
        hooksRan = loaded.position.index >= perEpoch;
        if (await this.#afterStep(hooksRan)) return;
      }
      if (window.length > 0) {
        onStep(await this.#optimizerStep(window));
        if (await this.#afterStep(true)) return;
      } else if (!hooksRan && (await this.#epochEnd())) return;
      else if (this.globalStep >= total) return;
      this.#position = { epoch: epoch + 1, index: 0, seed: 0 };
    }
  }

  // An online method's epochs: each loaded batch is one generation's prompts, which feeds
  // stepsPerGeneration optimizer steps. Inside a generation the data cursor stays at its start and
  // the steps done and the generation itself are checkpointed (#generation), so a resume there
  // continues on the same completions instead of sampling new ones.
  async #rolloutLoop(plan: RolloutPlan<MicroBatch>, onStep: (loss: number) => void): Promise<void> {
    const total = this.totalSteps;
    for (let epoch = this.#position.epoch; this.globalStep < total; epoch++) {
      const from = epoch === this.#position.epoch && this.#position.index > 0 ? this.#position : undefined;
      const perEpoch = this.trainLoader.samplesPerEpoch;
      let hooksRan = from !== undefined && from.index >= perEpoch;
      for await (const loaded of this.trainLoader.epoch(epoch, from)) {
        const resumed = this.#generation;
        const generation = await this.#withRoot(() =>
          resumed.state === null
            ? plan.generate(loaded.records, this.globalStep)
            : plan.restore(loaded.records, resumed.state),
        );
        try {
          if (resumed.state === null) await this.#generationStarted(generation);
          for (let k = resumed.stepsDone; k < generation.windows.length; k++) {
            const last = k === generation.windows.length - 1;
            this.#generation = last ? { stepsDone: 0, state: null } : { stepsDone: k + 1, state: generation.state() };
            onStep(await this.#update(generation.windows[k]!, last ? loaded.position : this.#position));
            hooksRan = last && loaded.position.index >= perEpoch;
            if (await this.#afterStep(hooksRan)) return;
          }
        } finally {
          generation.release();
        }
      }
      if (!hooksRan && (await this.#epochEnd())) return;
      if (this.globalStep >= total) return;
      this.#position = { epoch: epoch + 1, index: 0, seed: 0 };
    }
  }

  /** Where the loop is inside a generation: steps done, and the generation to rebuild (null: none open). */
  #generation: { stepsDone: number; state: unknown } = { stepsDone: 0, state: null };

  // A new generation's metrics join the next log (once per generation, as TRL logs them; averaged
  // over the ranks with the step's), and its completions go to the completions log when asked,
  // every rank's (TRL gathers the table), in rank order.
  async #generationStarted(generation: Generation<MicroBatch>): Promise<void> {
    const sums = { ...generation.metrics };
    const counts = Object.fromEntries(Object.keys(sums).map((k) => [k, 1]));
    this.#pendingMetrics = mergeMetricTotals(this.#pendingMetrics, { sums, counts });
    if (this.args.logCompletions !== true) return;
    const tables = await this.#group.gatherText(JSON.stringify(generation.table));
    const rows = tables.flatMap((text) => JSON.parse(text) as Array<Record<string, unknown>>);
    this.#reporters?.completions(this.globalStep + 1, rows);
  }

  #pendingMetrics: MetricTotals = { sums: {}, counts: {} };

  // Forward + backward of every micro-batch of the window, then the parameter update.
  async #optimizerStep(window: ReadonlyArray<{ records: MicroRecords; position: DataPosition }>): Promise<number> {
    const batches: MicroBatch[] = [];
    try {
      for (const w of window) batches.push(await this.method.collate(w.records));
      return await this.#update(batches, window.at(-1)!.position);
    } finally {
      for (const b of batches) b.dispose();
    }
  }

  // The accumulated window's losses and backward passes, clipping, the optimizer and schedule steps;
  // `position` is the data cursor once this step is done. With several ranks the divisors are the
  // whole global window's (summed over ranks), so each rank's loss is its share of the global loss;
  // DDP averages the gradients over the ranks, so the backward runs on worldSize x the share, and
  // the gradient is that of the global loss, as one process on the union of the ranks' batches.
  async #update(batches: readonly MicroBatch[], position: DataPosition): Promise<number> {
    const group = this.#group;
    const normalisers = await globalNormalisers(group, sumCounts(batches));
    let local: { loss: number; tokens: number; totals: MetricTotals } = {
      loss: 0,
      tokens: 0,
      totals: { sums: {}, counts: {} },
    };
    for (const [k, batch] of batches.entries()) {
      await this.#zeroStep?.beforeForward();
      const result = await this.method.loss(batch, normalisers, 'train');
      if (group.distributed) {
        torch.tidy(() => {
          const scaled = result.loss.mul(group.worldSize);
          // DDP's no_sync on every micro-batch but the window's last.
          if (k === batches.length - 1) this.#gradientSync?.beforeLastBackward(scaled);
          scaled.backward();
        });
        await this.#zeroStep?.afterBackward(k === batches.length - 1);
      } else result.loss.backward();
      local = {
        loss: local.loss + (result.loss.item() as number),
        tokens: local.tokens + batch.tokens,
        totals: mergeMetricTotals(local.totals, withoutLoss(result.totals)),
      };
      result.loss.dispose();
    }
    // A new generation's metrics ride with its first step's, averaged over the ranks with them.
    const pending = this.#pendingMetrics;
    this.#pendingMetrics = { sums: {}, counts: {} };
    const { loss, tokens, totals } = await globalStepNumbers(group, {
      ...local,
      totals: mergeMetricTotals(local.totals, pending),
    });
    this.numTokens += tokens;
    const gradNorm = this.#zeroStep === null ? this.#clip() : await this.#zeroStep.clip(this.args.maxGradNorm);
    if (this.#zeroStep === null) this.parts.optimizer.step();
    else await this.#zeroStep.step();
    const lr = this.parts.scheduler.lastLr[0]!;
    this.parts.scheduler.step();
    this.parts.optimizer.zeroGrad();
    this.#zeroStep?.zeroGrad();
    this.globalStep += 1;
    this.#position = position;
    this.#window.add(loss, totals);
    this.#lastStep = { gradNorm, lr };
    this.#reporters?.step(this.globalStep, loss);
    return loss;
  }

  #lastStep = { gradNorm: Number.NaN, lr: Number.NaN };

  // zero_stage 1, 2 or 3 with several ranks: ZeRO's sharded optimizer (zero_step.ts) replaces DDP; a
  // resume restores its shards from beside the checkpoint (saved on any number of ranks).
  async #shardedStep(resume: string | null): Promise<ZeroStep | null> {
    const stage = this.args.zeroStage ?? 0;
    const sharded = stage > 0 && this.#group.distributed;
    if (resume !== null && !sharded && fs.existsSync(zeroCheckpointDir(resume))) {
      throw new Error(
        `${resume}: its optimizer state is sharded in ${zeroCheckpointDir(resume)}; resume it with zero_stage 1, 2 or 3 on several ranks (any number)`,
      );
    }
    if (!sharded) return null;
    const step = await ZeroStep.create(this.parts.model, this.parts.optimizer, stage as 1 | 2 | 3);
    if (resume !== null) await step.load(resume);
    return step;
  }

  // Rows a skip_bad_rows dataset left out: counted in the final metrics and said on the terminal,
  // never hidden (InternVL silently retries a random row instead).
  #badRows(): { train_bad_rows?: number } {
    const { count, examples } = this.parts.trainDataset.badRows;
    if (count === 0) return {};
    const first = examples.map((e) => `\n  ${e}`).join('');
    this.#reporters?.note(`skipped ${count} bad training row${count === 1 ? '' : 's'}; the first:${first}`);
    return { train_bad_rows: count };
  }

  #clip(): number {
    const params = this.parts.optimizer.paramGroups.flatMap((g) => g.params);
    if (this.args.maxGradNorm > 0) return clipGradNorm_(params, this.args.maxGradNorm);
    return torch.tidy(() => {
      const grads = params.map((p) => p.grad).filter((g) => g !== null);
      return grads.length === 0
        ? 0
        : (torch
            .stack(grads.map((g) => g.float().norm()))
            .norm()
            .item() as number);
    });
  }

  // Log, evaluate and save as the strategies say; true when training is done.
  async #afterStep(epochEnd: boolean): Promise<boolean> {
    const { args } = this;
    const step = this.globalStep;
    const done = step >= this.totalSteps;
    if (step % args.loggingSteps === 0 || done || (step === 1 && args.loggingFirstStep)) this.#logTrain();
    const evalEvery = args.evalSteps ?? args.loggingSteps;
    const evaluate =
      (args.evalStrategy === 'steps' && step % evalEvery === 0) || (args.evalStrategy === 'epoch' && epochEnd);
    if (evaluate && this.#evaluates) await this.evaluate();
    const save =
      (args.saveStrategy === 'steps' && step % args.saveSteps === 0) || (args.saveStrategy === 'epoch' && epochEnd);
    if (save) await this.saveCheckpoint();
    return done;
  }

  // An epoch whose last window ended before its last sample (the rows after it were bad and
  // skipped): the epoch hooks only.
  async #epochEnd(): Promise<boolean> {
    const { args } = this;
    if (args.evalStrategy === 'epoch' && this.#evaluates) await this.evaluate();
    if (args.saveStrategy === 'epoch' && !this.#savedAt(this.globalStep)) await this.saveCheckpoint();
    return this.globalStep >= this.totalSteps;
  }

  #logTrain(): void {
    if (this.#window.steps === 0) return;
    const { gradNorm, lr } = this.#lastStep;
    const entry = { ...this.#window.flush(), grad_norm: gradNorm, learning_rate: lr, num_tokens: this.numTokens };
    this.#reporters?.log({ ...entry, epoch: this.#epochFloat(), step: this.globalStep });
  }

  /** Whether an evaluation has anything to compute: an eval set, or the eval hook's metrics. */
  get #evaluates(): boolean {
    return Boolean(this.parts.evalDataset) || Boolean(this.parts.evalHook);
  }

  /**
   * The eval loop: every eval batch once, in order, without a graph; TRL's metrics with eval_. With
   * several ranks each rank evaluates the whole set (the same numbers everywhere); rank 0 logs them.
   * The eval hook's generation and preference metrics (eval_hook.ts) join the entry; rank 0 alone
   * computes them, as it alone logs (the other ranks go on and wait for it at the next step's
   * all-reduce), so on the other ranks the returned entry lacks them. Under zero_stage 3 every
   * forward is a collective: every rank runs the whole evaluation, the hook included, in lockstep
   * (generation too: models/lockstep.ts), and rank 0 alone logs.
   */
  async evaluate(): Promise<Record<string, number>> {
    return this.#withRoot(() => this.#evaluate());
  }

  async #evaluate(): Promise<Record<string, number>> {
    const dataset = this.parts.evalDataset ?? null;
    const hook = this.parts.evalHook ?? null;
    if (dataset === null && hook === null) throw new Error('evaluate: no eval dataset and no eval hook');
    const model = this.parts.model;
    const training = model.training;
    model.eval();
    const started = Date.now();
    let run: EvalRun = { lossSum: 0, batches: 0, samples: 0, totals: { sums: {}, counts: {} } };
    try {
      if (dataset !== null) run = await this.#evalLoop(dataset);
    } finally {
      model.train(training);
    }
    const seconds = (Date.now() - started) / 1000;
    const loss: Record<string, number> =
      this.method.rollouts === undefined && dataset !== null ? { loss: run.lossSum / Math.max(run.samples, 1) } : {};
    const everyRank = this.#zeroStep?.stage === 3;
    const extra = hook !== null && (this.#group.isMain || everyRank) ? await hook(this.#hookContext()) : {};
    const metrics: Record<string, number> = { ...loss, ...metricMeans(run.totals), ...extra };
    const entry: Record<string, number> = Object.fromEntries(Object.entries(metrics).map(([k, v]) => [`eval_${k}`, v]));
    if (dataset !== null) {
      Object.assign(entry, {
        eval_runtime: seconds,
        eval_samples_per_second: run.samples / seconds,
        eval_steps_per_second: run.batches / seconds,
      });
    }
    this.#reporters?.log({ ...entry, epoch: this.#epochFloat(), step: this.globalStep });
    return entry;
  }

  // What the eval hook reads: the step (its predictions file), the method (its reference), who writes files.
  #hookContext(): EvalContext {
    return { step: this.globalStep, method: this.method, isMain: this.#group.isMain };
  }

  // The eval set's batches: the method's eval loss and metrics, or an online method's validation.
  async #evalLoop(dataset: RecordDataset): Promise<EvalRun> {
    const loader = new DataLoader(dataset, { batchSize: this.args.perDeviceEvalBatchSize, seed: 0, shuffle: false });
    let [lossSum, batches, samples] = [0, 0, 0];
    let totals: MetricTotals = { sums: {}, counts: {} };
    for await (const loaded of loader.epoch(0)) {
      const plan = this.method.rollouts;
      if (plan !== undefined) {
        // An online method's validation: sampled completions scored by the rewards, no loss.
        totals = mergeMetricTotals(totals, await plan.evaluate(loaded.records));
        batches += 1;
        samples += loaded.records.length;
        continue;
      }
      const batch = await this.method.collate(loaded.records);
      try {
        // Every method's eval loss is synchronous (only training losses wait on other ranks).
        const result = await torch.noGrad(() => this.method.loss(batch, batch.counts, 'eval'));
        // HF's evaluation_loop: each batch's loss repeated per sample, so a short last batch weighs less.
        lossSum += (result.loss.item() as number) * loaded.records.length;
        result.loss.dispose();
        totals = mergeMetricTotals(totals, withoutLoss(result.totals));
        batches += 1;
        samples += loaded.records.length;
      } finally {
        batch.dispose();
      }
    }
    return { lossSum, batches, samples, totals };
  }

  /**
   * checkpoint-N with everything an exact resume needs. With several ranks rank 0 writes it (every
   * rank holds the same weights, optimizer state and counters) and all ranks wait for it.
   */
  async saveCheckpoint(): Promise<string> {
    const { args } = this;
    const manager = new CheckpointManager(args.outputDir, {
      saveTotalLimit: args.saveTotalLimit,
      companions: [ZERO_CHECKPOINT_PREFIX],
    });
    this.#rankStates = await this.#gatherRankStates();
    // ZeRO's shards first (every rank), so a complete checkpoint-N has complete shards beside it.
    await this.#zeroStep?.save(path.join(args.outputDir, `checkpoint-${this.globalStep}`));
    // Stage 3: the HF model (or adapter) files of checkpoint-N come from the gathered model, so every
    // rank holds all parameters while rank 0 writes them.
    const write = async (): Promise<string> =>
      this.#group.isMain
        ? await this.#writeCheckpoint(manager)
        : path.join(args.outputDir, `checkpoint-${this.globalStep}`);
    const dir = this.#zeroStep?.stage === 3 ? await this.#zeroStep.withAllGathered(write) : await write();
    await this.#group.barrier();
    this.#lastSave = this.globalStep;
    return dir;
  }

  async #writeCheckpoint(manager: CheckpointManager): Promise<string> {
    const { args } = this;
    const state = trainerState({
      global_step: this.globalStep,
      epoch: this.#epochFloat(),
      max_steps: this.totalSteps,
      logging_steps: args.loggingSteps,
      eval_steps: args.evalSteps ?? args.loggingSteps,
      save_steps: args.saveSteps,
      train_batch_size: args.perDeviceTrainBatchSize,
      num_train_epochs: Math.ceil(this.totalSteps / this.stepsPerEpoch),
      num_input_tokens_seen: this.numTokens,
      log_history: this.#reporters?.history ?? [],
    });
    const writers = trainingWriters(this.#trainingParts(!args.saveOnlyModel), this.#position);
    // As TRL's checkpoints: the tokenizer and processor beside the weights, so checkpoint-N loads alone.
    const { modelPath } = this.parts;
    if (modelPath !== undefined) writers.push((dir) => void copyProcessorFiles(modelPath, dir));
    return manager.save(state, writers);
  }

  #lastSave = -1;

  #savedAt(step: number): boolean {
    return this.#lastSave === step;
  }

  /**
   * The final save into `dir`: the adapter in PEFT's layout (or, with saveMerged, the merged model
   * in HF's), or the whole model; the source checkpoint's tokenizer and processor files beside it.
   * zero_stage 3 writes the model or the adapter unit by unit from the shards (a merged save gathers
   * the whole model first); every rank calls it.
   */
  async saveModel(dir: string): Promise<void> {
    const zero = this.#zeroStep;
    const { adapter, modelPath } = this.parts;
    if (zero?.stage === 3 && adapter === undefined) await this.#writeConsolidated(zero, dir);
    else if (zero?.stage === 3 && !this.args.saveMerged) {
      // PEFT's files unit by unit from the shards.
      await zero.saveAdapter(adapter!, dir);
      if (this.#group.isMain && modelPath !== undefined) copyProcessorFiles(modelPath, dir);
    } else if (zero?.stage === 3)
      await zero.withAllGathered(() => (this.#group.isMain ? this.#writeModel(dir) : undefined));
    else if (this.#group.isMain) await this.#writeModel(dir);
    await this.#group.barrier();
  }

  // Stage 3, a full fine-tune: the weights unit by unit from the shards (saveZeroConsolidated), the
  // config and processor files beside them, as savePretrained would write them.
  async #writeConsolidated(zero: ZeroStep, dir: string): Promise<void> {
    const { model, modelPath } = this.parts;
    await zero.saveConsolidated(dir);
    if (!this.#group.isMain) return;
    saveConfig(model, dir, model.parameters()[0]?.dtype ?? 'float32');
    if (modelPath !== undefined) copyProcessorFiles(modelPath, dir);
  }

  // Stage 3 runs evaluation, generation and the reference pass with the root unit gathered (the
  // blocks gather themselves); otherwise fn() as it is.
  #withRoot<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.#zeroStep === null ? Promise.resolve().then(fn) : this.#zeroStep.withRoot(fn);
  }

  /** ZeRO's bytes on this rank (parameters, gradients, optimizer state) while training under ZeRO, else null. */
  zeroBytes(): ReturnType<ZeroStep['bytes']> | null {
    return this.#zeroStep?.bytes() ?? null;
  }

  async #writeModel(dir: string): Promise<void> {
    const { adapter, model, modelPath } = this.parts;
    fs.mkdirSync(dir, { recursive: true });
    if (adapter !== undefined && this.args.saveMerged) {
      await savePretrained(adapter.mergeAndUnload() as unknown as CausalLM, dir);
    } else if (adapter !== undefined) {
      await adapter.saveAdapter(dir);
    } else {
      await savePretrained(model, dir);
    }
    if (modelPath !== undefined) copyProcessorFiles(modelPath, dir);
  }

  #trainingParts(withOptimizer: boolean): TrainingParts {
    const { adapter, model, optimizer, scheduler } = this.parts;
    return {
      ...(adapter !== undefined ? { adapter } : { model }),
      ...(withOptimizer ? { optimizer, scheduler } : {}),
      stateful: { ...this.method.stateful, log_window: this.#window, trainer: this.#counters() },
    };
  }

  // What differs between ranks and an exact resume needs from each (TRL's rng_state_{rank}.pth):
  // the open generation (each rank sampled for its own prompts) and the generator state. Gathered
  // to rank 0, which writes them all into its one checkpoint.
  async #gatherRankStates(): Promise<RankState[] | null> {
    if (!this.#group.distributed) return null;
    using rng = torch.getRngState();
    const own: RankState = {
      generation: this.#generation,
      rng: Buffer.from(rng.data() as Uint8Array).toString('base64'),
    };
    return (await this.#group.gatherText(JSON.stringify(own))).map((text) => JSON.parse(text) as RankState);
  }

  #rankStates: RankState[] | null = null;
  /** The world size and per-rank states of the checkpoint being restored. */
  #restored: { worldSize: number; ranks: RankState[] | null } = { worldSize: 1, ranks: null };

  // Plain counters that trainer_state.json also shows, restored from the same file as the rest.
  #counters(): { stateDict(): unknown; loadStateDict(state: never): void } {
    return {
      stateDict: () => ({
        numTokens: this.numTokens,
        lossSum: this.#lossSum,
        generation: this.#generation,
        worldSize: this.#group.worldSize,
        ...(this.#rankStates === null ? {} : { ranks: this.#rankStates }),
      }),
      loadStateDict: (state: {
        numTokens: number;
        lossSum: number;
        generation?: { stepsDone: number; state: unknown };
        worldSize?: number;
        ranks?: RankState[];
      }) => {
        if (typeof state?.numTokens !== 'number' || typeof state.lossSum !== 'number') {
          throw new TypeError(
            `trainer counters: expected { numTokens, lossSum } but received ${JSON.stringify(state)?.slice(0, 200)}`,
          );
        }
        this.numTokens = state.numTokens;
        this.#lossSum = state.lossSum;
        this.#generation = state.generation ?? { stepsDone: 0, state: null };
        this.#restored = { worldSize: state.worldSize ?? 1, ranks: state.ranks ?? null };
      },
    };
  }

  async #restore(dir: string): Promise<ReturnType<typeof loadCheckpoint>['trainerState']['log_history']> {
    const checkpoint = loadCheckpoint(dir);
    const position = await restoreTraining(dir, this.#trainingParts(true));
    this.globalStep = checkpoint.step;
    this.#lastSave = checkpoint.step;
    if (position !== null) this.#position = this.#positionForWorld(position, dir);
    this.#restoreRankState(dir);
    return checkpoint.trainerState.log_history;
  }

  // The data cursor counts this rank's samples of the epoch: the ranks together have read the
  // first index x worldSize of its order. Another world size continues there when it divides.
  #positionForWorld(position: DataPosition, dir: string): DataPosition {
    const saved = this.#restored.worldSize;
    const world = this.#group.worldSize;
    if (saved === world) return position;
    const read = position.index * saved;
    if (read % world !== 0) {
      throw new Error(
        `${dir}: saved by ${saved} rank(s) after ${read} samples of epoch ${position.epoch}, which ${world} ` +
          `rank(s) cannot split evenly; resume with ${saved} rank(s), or from a checkpoint at a multiple of ${world}`,
      );
    }
    return { ...position, index: read / world };
  }

  // Each rank's own open generation and generator state (rank 0's were restored with the rest).
  #restoreRankState(dir: string): void {
    const { worldSize, ranks } = this.#restored;
    const open = this.#generation.state !== null;
    if (worldSize !== this.#group.worldSize) {
      if (open) {
        throw new Error(
          `${dir}: saved inside a generation by ${worldSize} rank(s), each with its own completions; resume it with ${worldSize} rank(s)`,
        );
      }
      return;
    }
    const own = ranks?.[this.#group.rank];
    if (own === undefined) return;
    this.#generation = own.generation;
    using rng = torch.tensor(Uint8Array.from(Buffer.from(own.rng, 'base64')), { dtype: 'uint8' });
    torch.setRngState(rng);
  }

  // Training mode, gradient checkpointing and TRL's disable_dropout.
  #prepareModel(): void {
    const model = this.parts.model;
    model.train();
    model.gradientCheckpointing_(this.args.gradientCheckpointing);
    if (this.args.disableDropout) {
      for (const [, module] of model.namedModules()) if (module instanceof Dropout) module.p = 0;
    }
  }

  #epochFloat(): number {
    const perEpoch = this.trainLoader.samplesPerEpoch;
    return this.#position.epoch + (perEpoch === 0 ? 0 : this.#position.index / perEpoch);
  }

  #banner(resume: string | null): string {
    const params = this.parts.optimizer.paramGroups.flatMap((g) => g.params);
    const total = this.parts.model.parameters().reduce((n, p) => n + p.numel(), 0);
    return startBanner({
      method: this.method.name,
      config: this.args,
      trainableParams: params.reduce((n, p) => n + p.numel(), 0),
      totalParams: total,
      outputDir: this.args.outputDir,
      reportTo: this.args.reportTo.filter((r) => r !== 'none'),
      resumeFrom: resume,
    });
  }
}

type MicroRecords = Parameters<TrainingMethod['collate']>[0];

/** One pass over the eval set: batch losses summed per sample, batch and sample counts, the method's metric totals. */
interface EvalRun {
  lossSum: number;
  batches: number;
  samples: number;
  totals: MetricTotals;
}

/** One rank's share of a checkpoint: its open generation and its generator state (base64). */
interface RankState {
  generation: { stepsDone: number; state: unknown };
  rng: string;
}
