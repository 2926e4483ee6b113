// Processors: text (tokenizer, chat template, placeholder expansion, labels) + images → model inputs.
import { join } from 'node:path';

import { byModelType } from '../util/model_type.js';
import { readJson } from './files.js';
import type { TemplateLoadOptions } from './chat_template.js';
import { InternVLProcessor, type InternVLProcessorOptions } from './internvl_processor.js';
import { Qwen2VlProcessor, type Qwen2VlProcessorOptions } from './qwen2_vl_processor.js';

export { TextTokenizer, type EncodeOptions, type DecodeOptions, type TokenizerConfig } from './tokenizer.js';
export {
  ChatTemplate,
  loadChatTemplate,
  selectNamedTemplate,
  type RenderOptions,
  type TemplateLoadOptions,
} from './chat_template.js';
export { DEFAULT_TEMPLATE_LIMITS, TemplateRenderError, type TemplateLimits } from './template_sandbox.js';
export { parseMessages, type ChatMessage, type ContentPart } from './messages.js';
export {
  IGNORE_INDEX,
  tokenizeSegments,
  templateSegments,
  type Encoded,
  type LabelOptions,
  type Segment,
} from './segments.js';
export type { Sample, ImageInput, ConversationRenderer } from './sample.js';
export { padBatch, type TokenBatch, type PaddingSide } from './batch.js';
export { Qwen2VlProcessor, type Qwen2VlProcessorOptions, type Qwen2VlBatch, type Grid } from './qwen2_vl_processor.js';
export { InternVLProcessor, type InternVLProcessorOptions, type InternVLBatch } from './internvl_processor.js';
export { InternVL25Template, INTERNVL2_5_SYSTEM_MESSAGE, withImagePlaceholders } from './internvl_template.js';
export type { InternVLSettings, InternVLTiling } from './internvl_config.js';
export * as image from './image/index.js';

export type Processor = Qwen2VlProcessor | InternVLProcessor;
export type ProcessorOptions = Qwen2VlProcessorOptions & InternVLProcessorOptions & TemplateLoadOptions;

// The processor for each model_type a checkpoint's config.json may name.
type Loader = (dir: string, options: ProcessorOptions) => Promise<Processor>;
const PROCESSORS: Array<{ modelTypes: string[]; load: Loader }> = [
  { modelTypes: ['qwen2_vl', 'qwen2_5_vl'], load: (dir, o) => Qwen2VlProcessor.fromPretrained(dir, o) },
  { modelTypes: ['internvl_chat', 'internvl'], load: (dir, o) => InternVLProcessor.fromPretrained(dir, o) },
];

/** The processor for a checkpoint directory, chosen by config.json's model_type. */
export async function fromPretrained(dir: string, options: ProcessorOptions = {}): Promise<Processor> {
  const config = (await readJson(dir, 'config.json', 'it names the model type')) as { model_type?: unknown };
  return byModelType(PROCESSORS, config?.model_type, join(dir, 'config.json'), 'has no processor').load(dir, options);
}
