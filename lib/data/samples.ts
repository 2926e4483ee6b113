// Records with decoded images → the processor's Samples. Chat prompts are messages the processor
// renders with the generation prompt; TRL's standard (text) format is used as written, and a text
// completion gets the tokenizer's EOS text appended unless it already ends with it, as TRL's
// DPOTrainer does for non-conversational data (`add_eos`: `chosen + eos_token` unless
// `chosen.endswith(eos_token)`; KTO appends the EOS id to text completions too): a raw completion
// has no chat template to close it, and without EOS the model never learns to stop. Chat
// completions are closed by the template's own end-of-turn tokens, so they get nothing. A record's
// tile budget (InternVL's max(1, max_dynamic_patch // n)) travels on the sample to the processor.
import type { ChatMessage } from '../processing/messages.js';
import type { Sample } from '../processing/sample.js';
import type { DecodedRecord } from './images.js';
import {
  describeSource,
  type DataRecord,
  type PreferenceRecord,
  type SftRecord,
  type UnpairedRecord,
} from './records.js';

export interface SampleOptions {
  /** The tokenizer's EOS text (`tokenizer.eosToken`); needed only for text completions. */
  eosToken?: string | null;
}

/** A pair's two samples: the same prompt and images, the chosen and the rejected completion. */
export function preferenceSamples(
  decoded: DecodedRecord<PreferenceRecord>,
  options: SampleOptions = {},
): { chosen: Sample; rejected: Sample } {
  const { record } = decoded;
  const vision = visionOf(decoded);
  return {
    chosen: { prompt: record.prompt, completion: completionOf(record.chosen, record, options), ...vision },
    rejected: { prompt: record.prompt, completion: completionOf(record.rejected, record, options), ...vision },
  };
}

/** A KTO / BCO row's sample; its desirable flag is `decoded.record.label`. */
export function unpairedSample(decoded: DecodedRecord<UnpairedRecord>, options: SampleOptions = {}): Sample {
  const { record } = decoded;
  return { prompt: record.prompt, completion: completionOf(record.completion, record, options), ...visionOf(decoded) };
}

/** A conversation: loss on every assistant turn. */
export function sftSample(decoded: DecodedRecord<SftRecord>): Sample {
  return { messages: decoded.record.messages, ...visionOf(decoded) };
}

// The decoded images and, when the record has one, its per-image tile budget (InternVL's).
function visionOf(decoded: DecodedRecord<DataRecord>): Pick<Sample, 'images' | 'maxTiles'> {
  const { maxTiles } = decoded.record;
  return maxTiles === undefined ? { images: decoded.pixels } : { images: decoded.pixels, maxTiles };
}

function completionOf(
  completion: ChatMessage[] | string,
  record: DataRecord,
  options: SampleOptions,
): ChatMessage[] | string {
  if (typeof completion !== 'string') return completion;
  const eos = options.eosToken;
  if (eos === undefined || eos === null || eos === '') {
    throw new TypeError(
      `${describeSource(record.source)}: a text completion needs the tokenizer's EOS text (TRL appends it); ` +
        `pass eosToken (received ${JSON.stringify(eos)})`,
    );
  }
  return completion.endsWith(eos) ? completion : completion + eos;
}
