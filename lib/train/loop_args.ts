// The training arguments the loop itself reads (TrainingArguments' names, camelCase). The method
// configs (lib/train/config.ts: SftConfig, DpoConfig, KtoConfig) carry these and their own fields.
export interface LoopArgs {
  outputDir: string;
  perDeviceTrainBatchSize: number;
  perDeviceEvalBatchSize: number;
  gradientAccumulationSteps: number;
  learningRate: number;
  weightDecay: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEpsilon: number;
  maxGradNorm: number;
  numTrainEpochs: number;
  maxSteps: number;
  lrSchedulerType: string;
  warmupRatio: number;
  warmupSteps: number;
  optim: string;
  loggingSteps: number;
  loggingFirstStep: boolean;
  loggingDir: string | null;
  reportTo: string[];
  saveStrategy: 'steps' | 'epoch' | 'no';
  saveSteps: number;
  saveTotalLimit: number | null;
  saveOnlyModel: boolean;
  saveMerged: boolean;
  evalStrategy: 'steps' | 'epoch' | 'no';
  evalSteps: number | null;
  seed: number;
  dataSeed: number | null;
  gradientCheckpointing: boolean;
  resumeFromCheckpoint: string | boolean | null;
  disableDropout: boolean;
  dataloaderPrefetch: number | null;
  maxLength: number | null;
  /** DDP's find_unused_parameters; null or absent: true. */
  ddpFindUnusedParameters?: boolean | null;
  /** DeepSpeed's zero_stage on several ranks: 0 DDP (default), 1 or 2 ZeRO (lib/train/zero_step.ts). */
  zeroStage?: number;
  /** Online methods: sampled completions go to completions.jsonl and TensorBoard's text tab. */
  logCompletions?: boolean;
}

/** An online method's generation sizes (RolloutPlan): prompts read and optimizer steps fed per generation. */
export interface GenerationSizes {
  promptsPerGeneration: number;
  stepsPerGeneration: number;
}

/** Optimizer steps of one epoch: ceil(batches / accumulation) (HF), or steps per generation x generations. */
export function stepsPerEpoch(args: LoopArgs, samplesPerEpoch: number, generations?: GenerationSizes): number {
  if (generations !== undefined) {
    return Math.max(1, Math.ceil(samplesPerEpoch / generations.promptsPerGeneration)) * generations.stepsPerGeneration;
  }
  const batches = Math.ceil(samplesPerEpoch / args.perDeviceTrainBatchSize);
  return Math.max(1, Math.ceil(batches / args.gradientAccumulationSteps));
}

/** Optimizer steps of a run: max_steps, else epochs x steps per epoch. */
export function trainingSteps(args: LoopArgs, samplesPerEpoch: number, generations?: GenerationSizes): number {
  if (args.maxSteps > 0) return args.maxSteps;
  return Math.ceil(args.numTrainEpochs * stepsPerEpoch(args, samplesPerEpoch, generations));
}
