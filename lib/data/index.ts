// data: collators from processor batches and generated tokens to the batches the losses take.
export {
  collatePairs,
  collateUnpaired,
  joinBatches,
  type ProcessorBatch,
  type CollatedBatch,
  type PairBatch,
  type UnpairedCollated,
  type CollateOptions,
} from './collators.js';
export { collateRollouts, type RolloutPrompt, type RolloutOptions, type RolloutBatch } from './rollouts.js';
// Format readers: records only (no tokenising), read lazily, bad rows named by file and line/row.
export {
  BadRowPolicy,
  DataError,
  describeSource,
  resolveInsideRoot,
  type BadRowReport,
  type DataRecord,
  type PreferenceRecord,
  type PromptRecord,
  type RecordDataset,
  type RecordSource,
  type SftRecord,
  type UnpairedRecord,
} from './records.js';
export { JsonlIndex } from './jsonl_index.js';
export { ParquetRows } from './parquet.js';
export { parseSplit, splitRange, type SplitSpec } from './split.js';
export { openMmpr, repeatedOrder, type MmprOptions } from './mmpr.js';
export { openTrl, type TrlKind, type TrlOptions } from './trl.js';
export { openInternVlSft, openPlainDpo, openVlQuery, type InternVlSftOptions, type VlRlhfOptions } from './vlrlhf.js';
export {
  JPEG_QUALITY_RANGE,
  decodeRecordImages,
  jpegReencode,
  prefetchDecoded,
  type DecodedRecord,
  type PrefetchOptions,
} from './images.js';
export { SeededRandom } from './rng.js';
export { imageTokenOf } from './collators.js';
export { packPairs, SEGMENT, type PackedPairs, type PackOptions } from './pack_pairs.js';
export {
  GROUP_SEGMENT,
  layoutGroups,
  type GroupLayout,
  type GroupLayoutOptions,
  type LabelledTokens,
  type PromptGroup,
} from './pack_groups.js';
export { openVerl, VERL_REQUIRED_COLUMNS, type VerlOptions } from './verl.js';
export { openHfDisk, R1_SYSTEM_PROMPT, type HfDiskOptions } from './hf_disk.js';
export { openTrlPrompt, trlPromptRecord, type TrlPromptOptions } from './trl_prompt.js';
export { ArrowStreamRows, type ArrowField, type ArrowType } from './arrow.js';
export { splitImageTokens, imagesOf, rewardColumns } from './prompts.js';
export { EpochSampler, type DataPosition, type SamplerOptions, type SampledIndex } from './sampler.js';
export { DataLoader, mixSeeds, type LoaderOptions, type LoadedBatch } from './loader.js';
export {
  DATASET_FORMATS,
  DatasetSpecSchema,
  openDataset,
  parseDatasetSpec,
  type DatasetFormat,
  type DatasetSpec,
  type DatasetSpecInput,
  type DatasetSpecOptions,
  type OpenDatasetOptions,
} from './open.js';
export { preferenceSamples, sftSample, unpairedSample, type SampleOptions } from './samples.js';
