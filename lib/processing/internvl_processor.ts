// InternVLProcessor for remote-code (model_type "internvl_chat": built-in internvl2_5 template,
// default system message, `<image>` placeholders) and transformers-native (model_type "internvl":
// chat template files, `<IMG_CONTEXT>` placeholders, no default system message) checkpoints.
// Each placeholder becomes `<img>` + `<IMG_CONTEXT>`×(tokensPerTile·tiles of that image) + `</img>`.
import { join } from 'node:path';

import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { padBatch, resolvePadTokenId, type PaddingSide, type TokenBatch } from './batch.js';
import { loadChatTemplate, type ChatTemplate, type TemplateLoadOptions } from './chat_template.js';
import { checkPlaceholderCount, expandPlaceholders, type Placeholder } from './expand.js';
import { readJson, readOptionalJson } from './files.js';
import { internvlPixelValues, type InternvlPixelOptions, type InternvlPixelValues } from './image/index.js';
import { hfSettings, remoteSettings, type InternVLSettings, type InternVLTiling } from './internvl_config.js';
import {
  IMAGE_PLACEHOLDER,
  InternVL25Template,
  INTERNVL2_5_SYSTEM_MESSAGE,
  withImagePlaceholders,
} from './internvl_template.js';
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

const IMG_CONTEXT = '<IMG_CONTEXT>';
const IMAGE_BLOCK = `<img>${IMG_CONTEXT}</img>`;

export interface InternVLProcessorOptions extends LabelOptions {
  /** Default: tokenizer_config's padding_side, else 'right' (InternVL's collator pads right). */
  paddingSide?: PaddingSide;
  /** Default: tokenizer_config's pad_token. */
  padTokenId?: number;
  /** Tiling overrides, e.g. max_dynamic_patch (maxNum); a sample's maxTiles wins for its images. */
  tiling?: Partial<InternVLTiling>;
  /** Remote code: the system message when a conversation has none (default: config.json's, else internvl2_5's). */
  systemMessage?: string;
}

export interface InternVLBatch extends TokenBatch {
  /** [Σ tiles, 3, S, S] float32 (ImageNet-normalised tiles, thumbnails last per image); null without images. */
  pixelValues: Tensor | null;
  /** [Σ tiles, 1] int64 ones (InternVLChatModel.forward squeezes the last dim); null without images. */
  imageFlags: Tensor | null;
  /** Tiles of each image, in order. */
  tilesPerImage: number[];
}

export class InternVLProcessor {
  readonly imageContext: Placeholder;
  private readonly renderer: ConversationRenderer | null;
  private readonly tiling: InternVLTiling;

  constructor(
    readonly tokenizer: TextTokenizer,
    readonly settings: InternVLSettings,
    readonly chatTemplate: ChatTemplate | null,
    readonly options: InternVLProcessorOptions = {},
    readonly source = '(in-memory processor)',
  ) {
    this.imageContext = { id: tokenizer.tokenToId(IMG_CONTEXT), token: IMG_CONTEXT };
    tokenizer.tokenToId('<img>');
    tokenizer.tokenToId('</img>');
    this.tiling = { ...settings.tiling, ...options.tiling };
    const template = chatTemplate;
    this.renderer =
      settings.mode === 'remote'
        ? new InternVL25Template(options.systemMessage ?? settings.systemMessage ?? INTERNVL2_5_SYSTEM_MESSAGE)
        : template && { segments: (messages, o) => templateSegments(template, messages, o) };
  }

  /** Reads config.json (model_type internvl_chat or internvl), the tokenizer and, for internvl, the processor files. */
  static async fromPretrained(
    dir: string,
    options: InternVLProcessorOptions & TemplateLoadOptions = {},
  ): Promise<InternVLProcessor> {
    const config = (await readJson(dir, 'config.json', 'it names the model type')) as { model_type?: unknown };
    const tokenizer = await TextTokenizer.fromPretrained(dir);
    if (config.model_type === 'internvl_chat')
      return new InternVLProcessor(tokenizer, remoteSettings(config, dir), null, options, dir);
    if (config.model_type !== 'internvl') {
      throw new Error(
        `${join(dir, 'config.json')}: model_type ${JSON.stringify(config.model_type)} is not an InternVL type (internvl_chat, internvl)`,
      );
    }
    const preprocessor = await readOptionalJson(dir, 'preprocessor_config.json');
    const processor = await readOptionalJson(dir, 'processor_config.json');
    const template = await loadChatTemplate(dir, tokenizer, options.chatTemplateName, options.templateLimits);
    return new InternVLProcessor(tokenizer, hfSettings(config, preprocessor, processor, dir), template, options, dir);
  }

  /** The prompt text before expansion (remote code: as chat() writes it, `<image>` placed for `images`). */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: { addGenerationPrompt?: boolean; images?: number } = {},
  ): string {
    const addGenerationPrompt = options.addGenerationPrompt ?? false;
    if (this.settings.mode === 'remote') {
      const template = this.renderer as InternVL25Template;
      return template.render(withImagePlaceholders(messages, options.images ?? 0), { addGenerationPrompt });
    }
    if (this.chatTemplate === null) throw new Error(`${this.source} has no chat template`);
    return this.chatTemplate.render(messages, { addGenerationPrompt });
  }

  /** Token ids and labels of one sample; `tilesPerImage` gives each image's tile count. */
  encode(sample: Sample, tilesPerImage: readonly number[], index = 0): Encoded {
    const where = `samples[${index}]`;
    const parsed = parseSample(sample, index);
    const encoded = this.tokenize(parsed, where);
    return expandPlaceholders(
      encoded,
      this.imageContext,
      tilesPerImage.map((t) => t * this.settings.tokensPerTile),
      where,
      this.#renderedBy(parsed),
    );
  }

  /** Tensors for a batch: ids, mask, labels, the tiles of every image in order, image flags. */
  async process(samples: Sample | readonly Sample[]): Promise<InternVLBatch> {
    const list = (Array.isArray(samples) ? samples : [samples]).map((s, i) => parseSample(s, i));
    // Text first: a placeholder mismatch is reported before any pixel work.
    const encoded = list.map((s, i) => {
      const e = this.tokenize(s, `samples[${i}]`);
      checkPlaceholderCount(e.ids, this.imageContext, s.images!.length, `samples[${i}]`, this.#renderedBy(s));
      return e;
    });
    const images = await Promise.all(list.map((s) => resolveImages(s.images!)));
    return torch.tidy(() => {
      // One call per sample: the images of a row share its tile budget (InternVL's rule), or each
      // takes the sample's own (a dataset's max_dynamic_patch shared out over its images).
      const vision = images.map((row, i) =>
        row.length > 0 ? internvlPixelValues(row, this.#tilingOf(list[i]!)) : null,
      );
      const rows = encoded.map((e, i) => {
        const counts = (vision[i]?.tilesPerImage ?? []).map((t) => t * this.settings.tokensPerTile);
        return expandPlaceholders(e, this.imageContext, counts, `samples[${i}]`);
      });
      const padId = resolvePadTokenId(this.options.padTokenId, this.tokenizer.padTokenId, this.source);
      const batch = padBatch(rows, padId, this.options.paddingSide ?? this.tokenizer.paddingSide);
      return { ...batch, ...visionInputs(vision.filter((v): v is InternvlPixelValues => v !== null)) };
    });
  }

  // The template file a placeholder error names; remote code renders with its built-in template.
  #renderedBy(sample: Sample): string | undefined {
    return this.settings.mode === 'remote' ? undefined : templateOrigin(sample, this.chatTemplate);
  }

  #tilingOf(sample: Sample): InternvlPixelOptions {
    return sample.maxTiles === undefined ? this.tiling : { ...this.tiling, maxTilesPerImage: sample.maxTiles };
  }

  private tokenize(sample: Sample, where: string): Encoded {
    const placed = this.settings.mode === 'remote' ? placeRemoteImages(sample) : sample;
    const segments = sampleSegments(placed, this.renderer, where).map((s) => ({
      ...s,
      text: this.withImageBlocks(s.text),
    }));
    return tokenizeSegments(this.tokenizer, segments, this.options);
  }

  // Each placeholder becomes one `<img><IMG_CONTEXT></img>`; the context token is expanded after tokenizing.
  private withImageBlocks(text: string): string {
    return text.split(this.settings.mode === 'remote' ? IMAGE_PLACEHOLDER : IMG_CONTEXT).join(IMAGE_BLOCK);
  }
}

function visionInputs(
  present: readonly InternvlPixelValues[],
): Pick<InternVLBatch, 'pixelValues' | 'imageFlags' | 'tilesPerImage'> {
  if (present.length === 0) return { pixelValues: null, imageFlags: null, tilesPerImage: [] };
  const tilesPerImage = present.flatMap((v) => v.tilesPerImage);
  const total = tilesPerImage.reduce((a, b) => a + b, 0);
  const pixelValues = present.length === 1 ? present[0]!.pixelValues : torch.cat(present.map((v) => v.pixelValues));
  return { pixelValues, imageFlags: torch.ones([total, 1], { dtype: 'int64' }), tilesPerImage };
}

/** Remote code: `<image>` placement over prompt and completion together (see withImagePlaceholders). */
function placeRemoteImages(sample: Sample): Sample {
  const images = sample.images?.length ?? 0;
  if (sample.messages !== undefined) return { ...sample, messages: withImagePlaceholders(sample.messages, images) };
  if (typeof sample.prompt === 'string' || sample.prompt === undefined) return sample;
  const completion = Array.isArray(sample.completion) ? sample.completion : [];
  const placed = withImagePlaceholders([...sample.prompt, ...completion], images);
  const prompt = placed.slice(0, sample.prompt.length);
  return {
    ...sample,
    prompt,
    completion: Array.isArray(sample.completion) ? placed.slice(prompt.length) : sample.completion,
  };
}
