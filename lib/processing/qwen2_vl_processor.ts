// Qwen2VlProcessor (Qwen2-VL and Qwen2.5-VL): chat template + tokenizer + image processor, as
// transformers' Qwen2VLProcessor. The template emits `<|vision_start|><|image_pad|><|vision_end|>`
// per image; the i-th `<|image_pad|>` then becomes grid_t·grid_h·grid_w / merge_size² copies.
import { join } from 'node:path';

import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { padBatch, resolvePadTokenId, type PaddingSide, type TokenBatch } from './batch.js';
import { loadChatTemplate, type ChatTemplate, type TemplateLoadOptions } from './chat_template.js';
import { checkPlaceholderCount, expandPlaceholders, renderedByNote, type Placeholder } from './expand.js';
import { readOptionalJson } from './files.js';
import { qwen2VlImageOptionsFromConfig, qwen2VlPixelValues, type Qwen2VlImageOptions } from './image/index.js';
import type { ChatMessage } from './messages.js';
import {
  parseSample,
  resolveImages,
  sampleSegments,
  templateOrigin,
  type ConversationRenderer,
  type Sample,
} from './sample.js';
import { templateSegments, tokenizeSegments, type Encoded, type LabelOptions } from './segments.js';
import { TextTokenizer } from './tokenizer.js';

export type Grid = readonly [number, number, number];

export interface Qwen2VlProcessorOptions extends LabelOptions {
  /** Default: tokenizer_config's padding_side, else 'right'. Use 'left' for batched generation. */
  paddingSide?: PaddingSide;
  /** Default: tokenizer_config's pad_token (`<|endoftext|>` for Qwen). */
  padTokenId?: number;
  /** Render "Picture k: " before each image (the template's add_vision_id). Default false. */
  addVisionId?: boolean;
  /** Image processor overrides (min/max pixels, ...) on top of preprocessor_config.json. */
  image?: Partial<Qwen2VlImageOptions>;
}

export interface Qwen2VlBatch extends TokenBatch {
  /** [Σ patches, 3·temporal_patch·patch²] float32, every image of the batch in order; null without images. */
  pixelValues: Tensor | null;
  /** [images, 3] int64 (t, h, w) patch grids; null without images. */
  imageGridThw: Tensor | null;
}

export class Qwen2VlProcessor {
  readonly imagePad: Placeholder;
  readonly mergeSize: number;
  private readonly imageOptions: Qwen2VlImageOptions;
  private readonly imageSettingsFrom: string;
  private readonly videoPadId: number | null;
  private readonly renderer: ConversationRenderer | null;

  /**
   * @param preprocessorConfig the parsed preprocessor_config.json ({} for the class defaults)
   * @param source the checkpoint directory, named in errors
   */
  constructor(
    readonly tokenizer: TextTokenizer,
    readonly chatTemplate: ChatTemplate | null,
    preprocessorConfig: unknown,
    readonly options: Qwen2VlProcessorOptions = {},
    readonly source = '(in-memory processor)',
  ) {
    const file = join(source, 'preprocessor_config.json');
    this.imageSettingsFrom = options.image === undefined ? file : `${file} and options.image`;
    this.imageOptions = { ...qwen2VlImageOptionsFromConfig(preprocessorConfig ?? {}, file), ...options.image };
    this.mergeSize = this.imageOptions.mergeSize;
    this.imagePad = { id: tokenizer.tokenToId('<|image_pad|>'), token: '<|image_pad|>' };
    this.videoPadId = tokenizer.findTokenId('<|video_pad|>');
    const template = chatTemplate;
    this.renderer = template && {
      segments: (messages, o) =>
        templateSegments(template, messages, { ...o, render: { addVisionId: options.addVisionId ?? false } }),
    };
  }

  /** Loads tokenizer.json, tokenizer_config.json, the chat template and preprocessor_config.json from `dir`. */
  static async fromPretrained(
    dir: string,
    options: Qwen2VlProcessorOptions & TemplateLoadOptions = {},
  ): Promise<Qwen2VlProcessor> {
    const tokenizer = await TextTokenizer.fromPretrained(dir);
    const template = await loadChatTemplate(dir, tokenizer, options.chatTemplateName, options.templateLimits);
    const preprocessor = (await readOptionalJson(dir, 'preprocessor_config.json')) ?? {};
    return new Qwen2VlProcessor(tokenizer, template, preprocessor, options, dir);
  }

  /** The chat template's text for `messages` (image parts become the vision block). */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: { addGenerationPrompt?: boolean; addVisionId?: boolean } = {},
  ): string {
    if (this.chatTemplate === null) throw new Error(`${this.source} has no chat template`);
    return this.chatTemplate.render(messages, { addVisionId: this.options.addVisionId, ...options });
  }

  /** LLM positions one image takes: t·h·w / merge_size². */
  tokensPerImage(grid: Grid): number {
    return (grid[0] * grid[1] * grid[2]) / (this.mergeSize * this.mergeSize);
  }

  /** Token ids and labels of one sample, its image placeholders expanded for `grids` (one per image). */
  encode(sample: Sample, grids: readonly Grid[], index = 0): Encoded {
    const where = `samples[${index}]`;
    const parsed = parseSample(sample, index);
    const encoded = this.tokenize(parsed, where);
    return expandPlaceholders(
      encoded,
      this.imagePad,
      grids.map((g) => this.tokensPerImage(g)),
      where,
      templateOrigin(parsed, this.chatTemplate),
    );
  }

  /** Tensors for a batch: ids, mask, labels, and the pixel values of every image in order. */
  async process(samples: Sample | readonly Sample[]): Promise<Qwen2VlBatch> {
    const list = (Array.isArray(samples) ? samples : [samples]).map((s, i) => parseSample(s, i));
    // Text first: a placeholder mismatch is reported before any pixel work.
    const encoded = list.map((s, i) => {
      const e = this.tokenize(s, `samples[${i}]`);
      checkPlaceholderCount(
        e.ids,
        this.imagePad,
        s.images!.length,
        `samples[${i}]`,
        templateOrigin(s, this.chatTemplate),
      );
      return e;
    });
    const images = await resolveImages(list.flatMap((s) => s.images!));
    return torch.tidy(() => {
      const vision = images.length > 0 ? this.pixelValues(images) : null;
      let next = 0;
      const rows = encoded.map((e, i) => {
        const first = next;
        next += vision ? list[i]!.images!.length : 0;
        const grids = vision ? vision.grids.slice(first, next) : [];
        return expandPlaceholders(
          e,
          this.imagePad,
          grids.map((g) => this.tokensPerImage(g)),
          `samples[${i}]`,
        );
      });
      const padId = resolvePadTokenId(this.options.padTokenId, this.tokenizer.padTokenId, this.source);
      const batch = padBatch(rows, padId, this.options.paddingSide ?? this.tokenizer.paddingSide);
      return { ...batch, pixelValues: vision?.pixelValues ?? null, imageGridThw: vision?.imageGridThw ?? null };
    });
  }

  // smartResize refuses an image smaller than patch_size × merge_size (or a resize outside the
  // pixel bounds): the sizes come from preprocessor_config.json, so the error names it.
  private pixelValues(images: Parameters<typeof qwen2VlPixelValues>[0]): ReturnType<typeof qwen2VlPixelValues> {
    try {
      return qwen2VlPixelValues(images, this.imageOptions);
    } catch (error) {
      const o = this.imageOptions;
      const settings = `patch_size ${o.patchSize}, merge_size ${o.mergeSize}, min_pixels ${o.minPixels}, max_pixels ${o.maxPixels}`;
      throw new RangeError(`${(error as Error).message} (settings from ${this.imageSettingsFrom}: ${settings})`, {
        cause: error,
      });
    }
  }

  private tokenize(sample: Sample, where: string): Encoded {
    const encoded = tokenizeSegments(this.tokenizer, sampleSegments(sample, this.renderer, where), this.options);
    if (this.videoPadId !== null && encoded.ids.includes(this.videoPadId)) {
      const note = renderedByNote(templateOrigin(sample, this.chatTemplate));
      throw new Error(`${where}: the prompt holds <|video_pad|>; videos are not supported${note}`);
    }
    return encoded;
  }
}
