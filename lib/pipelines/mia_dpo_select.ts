// MIA-DPO's attention-aware selection of rejected answers (gen_data/gen_chosen_rejected/
// make_data_{duotu,ping,pip}.py; rl_data.md section 5). The model answers the multi-image prompt
// greedily; at one decoder layer the head-mean attention of the generated tokens over each image's
// tokens, averaged over those tokens, is a map per image (LLaVA's 24x24; here the image's own token
// grid). The share of that attention on the target image (sequence: its map's mean over the sum of
// every map's mean; grid: its cell's block of the map over the whole map; pic-in-pic: the central
// block) below the form's threshold, a perplexity above 1.1 and an answer other than the ground
// truth make the answer a rejected one, the ground truth the chosen.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { CausalLM, ModelInputs } from '../models/index.js';
import { Qwen2Attention } from '../models/qwen2/decoder.js';
import { QwenVLForConditionalGeneration } from '../models/qwen2_vl/model.js';
import { InternVLChatModel } from '../models/internvl/model.js';
import { generate, nonSampledTokenIds } from '../generation/index.js';
import { Qwen2VlProcessor, type ImageInput, type Processor, type Sample } from '../processing/index.js';
import type { ChatMessage } from '../processing/messages.js';
import { splitImageTokens } from '../data/prompts.js';
import { leftPadded } from '../eval/greedy.js';

export type MiaForm = 'sequence' | 'grid' | 'pip';
export const MIA_FORMS: readonly MiaForm[] = ['sequence', 'grid', 'pip'];

/** MIA-DPO's defaults: LLaVA-1.5-7B's layer 16 (of 32), greedy, 512 new tokens, answers under 512 characters. */
export const MIA_DPO_DEFAULTS = { maxNewTokens: 512, maxAnswerChars: 512, minPerplexity: 1.1 } as const;

/** An image's attention map: the generated tokens' mean attention on each of its tokens, rows x cols. */
export interface AttentionMap {
  rows: number;
  cols: number;
  values: Float64Array;
}

const sum = (values: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return s;
};

/** Sequence: mean(target map) / Σ mean(map) (make_data_duotu.py); `target` from 1. */
export function sequenceRatio(maps: readonly AttentionMap[], target: number): number {
  const means = maps.map((m) => sum(m.values) / m.values.length);
  return means[target - 1]! / sum(means);
}

/**
 * Grid: the sum of cell `target`'s block over the map's sum (split_and_calculate_ratio): the map
 * split into rows x cols blocks, the remainder rows / columns going one each to the first blocks.
 */
export function gridRatio(map: AttentionMap, rows: number, cols: number, target: number): number {
  const edges = (size: number, parts: number) => {
    const out = [0];
    for (let i = 0; i < parts; i++) out.push(out[i]! + Math.floor(size / parts) + (i < size % parts ? 1 : 0));
    return out;
  };
  const [ys, xs] = [edges(map.rows, rows), edges(map.cols, cols)];
  const [r, c] = [Math.floor((target - 1) / cols), (target - 1) % cols];
  return blockSum(map, ys[r]!, ys[r + 1]!, xs[c]!, xs[c + 1]!) / sum(map.values);
}

/**
 * Pic-in-pic: the central block's share (calculate_center_ratio: the middle 16x16 of LLaVA's
 * 24x24 map, 2/3 of each side; here round(2/3 of each side), centred with floor division).
 */
export function centerRatio(map: AttentionMap): number {
  const block = (size: number) => {
    const inner = Math.round((size * 16) / 24);
    const start = Math.floor((size - inner) / 2);
    return [start, start + inner] as const;
  };
  const [[y0, y1], [x0, x1]] = [block(map.rows), block(map.cols)];
  return blockSum(map, y0, y1, x0, x1) / sum(map.values);
}

function blockSum(map: AttentionMap, y0: number, y1: number, x0: number, x1: number): number {
  let s = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) s += map.values[y * map.cols + x]!;
  return s;
}

/** compute_softmax_max_and_ppl: exp(−mean log max softmax) over the generated tokens' steps. */
export function maxProbPerplexity(maxProbs: readonly number[]): number {
  return Math.exp(-maxProbs.reduce((s, p) => s + Math.log(p), 0) / maxProbs.length);
}

/** The attention-share bound per form and image count, and whether it is inclusive (sequence: ≤). */
export function ratioBound(form: MiaForm, count: number): { bound: number; inclusive: boolean } {
  if (form === 'sequence') {
    const bound = { 2: 0.8, 3: 0.7, 4: 0.6, 5: 0.6 }[count];
    if (bound === undefined) throw new RangeError(`a sequence has 2-5 images, not ${count}`);
    return { bound, inclusive: true };
  }
  if (form === 'grid') {
    const bound = { 2: 0.7, 3: 0.6, 4: 0.5, 6: 0.4, 9: 0.3 }[count];
    if (bound === undefined) throw new RangeError(`a grid has 2, 3, 4, 6 or 9 images, not ${count}`);
    return { bound, inclusive: false };
  }
  return { bound: 0.8, inclusive: false };
}

export interface Candidate {
  form: MiaForm;
  /** Images in the picture(s): the sequence's length, the grid's cells, 2 for pic-in-pic. */
  count: number;
  ratio: number;
  ppl: number;
  response: string;
  gt: string;
}

/** MIA-DPO's keep rule: response ≠ gt, ppl > 1.1, the share under the form's bound, neither text empty. */
export function isRejectedCandidate(c: Candidate): boolean {
  const { bound, inclusive } = ratioBound(c.form, c.count);
  const below = inclusive ? c.ratio <= bound : c.ratio < bound;
  return c.response !== c.gt && c.ppl > MIA_DPO_DEFAULTS.minPerplexity && below && c.response !== '' && c.gt !== '';
}

// ---- measuring on a model -------------------------------------------------------------------------

export interface InspectRequest {
  /** The user turn, one `<image>` per image. */
  question: string;
  images: readonly ImageInput[];
}

export interface Inspection {
  /** The greedy answer (special tokens skipped, stripped). */
  response: string;
  /** Its token ids (a stop token included). */
  tokens?: number[];
  /** One map per image, in placeholder order. */
  maps: AttentionMap[];
  /** exp(−mean log max softmax) of the decoding steps. */
  ppl: number;
}

/** What selection needs from a model; tests plug in a scripted one. */
export interface InspectingEngine {
  inspect(requests: readonly InspectRequest[], batchIndex: number): Promise<Inspection[]>;
}

/** The decoder's self-attention modules in layer order (every family here has a Qwen2 decoder). */
export function attentionLayers(model: CausalLM): Qwen2Attention[] {
  const layers: Qwen2Attention[] = [];
  for (const [, module] of model.namedModules()) if (module instanceof Qwen2Attention) layers.push(module);
  if (layers.length === 0) throw new Error(`${model.modelType}: no Qwen2 decoder attention layers found`);
  return layers;
}

/** The token id the processor expands per image, and whether the model is InternVL. */
function imageTokenId(model: CausalLM): number {
  if (model instanceof QwenVLForConditionalGeneration) return model.tokens.imageTokenId;
  if (model instanceof InternVLChatModel && model.imgContextTokenId !== null) return model.imgContextTokenId;
  throw new Error(`${model.modelType}: MIA-DPO selection needs a Qwen2-VL or InternVL model`);
}

/** [start, end) of each run of `id` in `ids`: one run per image. */
export function imageSpans(ids: readonly number[], id: number): [number, number][] {
  const spans: [number, number][] = [];
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] !== id) continue;
    const start = i;
    while (i + 1 < ids.length && ids[i + 1] === id) i++;
    spans.push([start, i + 1]);
  }
  return spans;
}

function userSample(request: InspectRequest, processor: Processor, completion?: string): Sample {
  const user: ChatMessage[] = [{ role: 'user', content: request.question }];
  const prompt = request.images.length > 0 && processor instanceof Qwen2VlProcessor ? splitImageTokens(user) : user;
  // InternVL: one tile per image, so each image's tokens are one square grid as LLaVA's are.
  const sample: Sample = { prompt, images: [...request.images], maxTiles: 1 };
  if (completion !== undefined) sample.completion = completion;
  return sample;
}

/**
 * Greedy answers of a batch (one batched generate), then per row one forward over the prompt and
 * the generated tokens but the last with the layer's attention probe on: the rows of the fed
 * generated tokens, as MIA-DPO's cached decoding steps saw them, and the logits of each step.
 */
export function attentionEngine(
  model: CausalLM,
  processor: Processor,
  settings: { layer: number; maxNewTokens: number },
): InspectingEngine {
  const layers = attentionLayers(model);
  if (!Number.isInteger(settings.layer) || settings.layer < 0 || settings.layer >= layers.length)
    throw new RangeError(`layer must be in [0, ${layers.length - 1}] for this model, got ${settings.layer}`);
  const tokenId = imageTokenId(model);
  return {
    async inspect(requests) {
      const training = model.training;
      model.eval();
      try {
        const generated = await greedy(model, processor, requests, settings.maxNewTokens);
        const out: Inspection[] = [];
        for (let i = 0; i < requests.length; i++)
          out.push(await measure(model, processor, layers[settings.layer]!, tokenId, requests[i]!, generated[i]!));
        return out;
      } finally {
        model.train(training);
      }
    },
  };
}

async function greedy(
  model: CausalLM,
  processor: Processor,
  requests: readonly InspectRequest[],
  maxNewTokens: number,
): Promise<number[][]> {
  const batch = await processor.process(requests.map((r) => userSample(r, processor)));
  const extras = batch as { imageGridThw?: Tensor | null; imageFlags?: Tensor | null };
  const padded = leftPadded(batch.inputIds, batch.attentionMask, 0);
  try {
    const inputs: ModelInputs = {
      ...padded,
      pixelValues: batch.pixelValues,
      imageGridThw: extras.imageGridThw ?? null,
      imageFlags: extras.imageFlags ?? null,
    };
    const stops = model.textConfig.eosTokenIds;
    const result = generate(model, inputs, {
      doSample: false,
      maxNewTokens,
      stopTokenIds: stops,
      suppressTokenIds: nonSampledTokenIds(model, processor.tokenizer).filter((id) => !stops.includes(id)),
    });
    return result.tokens;
  } finally {
    for (const t of [
      batch.inputIds,
      batch.attentionMask,
      batch.labels,
      batch.pixelValues,
      padded.inputIds,
      padded.attentionMask,
    ])
      t?.dispose();
    extras.imageGridThw?.dispose();
    extras.imageFlags?.dispose();
  }
}

async function measure(
  model: CausalLM,
  processor: Processor,
  layer: Qwen2Attention,
  tokenId: number,
  request: InspectRequest,
  tokens: number[],
): Promise<Inspection> {
  const batch = await processor.process([userSample(request, processor)]);
  const extras = batch as { imageGridThw?: Tensor | null; imageFlags?: Tensor | null };
  const promptIds = (batch.inputIds.toArray() as number[][])[0]!;
  const prompt = promptIds.length;
  const fed = tokens.slice(0, -1); // the last generated token is never fed back
  const seen: { columns: Float64Array | null } = { columns: null };
  layer.attentionProbe = (weights) => {
    if (fed.length === 0) return;
    torch.tidy(() => {
      // rows of the fed generated tokens, head mean, then the mean over those rows: [K]
      const rows = weights.narrow(2, prompt, fed.length).float().mean([1, 2]);
      seen.columns = Float64Array.from(rows.data() as Float32Array);
    });
  };
  try {
    const maxProbs = torch.noGrad(() =>
      torch.tidy(() => {
        const ids = torch.tensor([[...promptIds, ...fed]], { dtype: 'int64' });
        const output = model.forward(
          {
            inputIds: ids,
            attentionMask: torch.ones(ids.shape, { dtype: 'int64' }),
            pixelValues: batch.pixelValues,
            imageGridThw: extras.imageGridThw ?? null,
            imageFlags: extras.imageFlags ?? null,
          },
          { logits: false },
        );
        // the logits of each decoding step: positions prompt-1 .. end
        const hidden = output.hidden.narrow(1, prompt - 1, tokens.length);
        const head = model.lmHead();
        const logits = torch.nn.functional.linear(hidden, head.weight, head.bias ?? null).float();
        return Array.from(logits.softmax(-1).amax(-1).data() as Float32Array);
      }),
    );
    const spans = imageSpans(promptIds, tokenId);
    const grids = imageGrids(extras.imageGridThw ?? null, spans);
    const maps = spans.map(([start, end], i) => ({
      ...grids[i]!,
      // no fed token (a one-token answer): MIA-DPO's mean over no rows is NaN, and NaN keeps nothing
      values: seen.columns === null ? new Float64Array(end - start).fill(Number.NaN) : seen.columns.slice(start, end),
    }));
    const text = processor.tokenizer.decode(tokens, { skipSpecialTokens: true }).trim();
    return { response: text, tokens, maps, ppl: maxProbPerplexity(maxProbs) };
  } finally {
    layer.attentionProbe = null;
    for (const t of [batch.inputIds, batch.attentionMask, batch.labels, batch.pixelValues]) t?.dispose();
    extras.imageGridThw?.dispose();
    extras.imageFlags?.dispose();
  }
}

/** Each image's token grid: Qwen2-VL's merged (h/m, w/m) patch grid; InternVL's single tile, a square. */
function imageGrids(gridThw: Tensor | null, spans: readonly [number, number][]): { rows: number; cols: number }[] {
  const thw = gridThw === null ? null : (gridThw.toArray() as number[][]);
  return spans.map(([start, end], i) => {
    const count = end - start;
    if (thw !== null) {
      const [t, h, w] = thw[i]!;
      const merge = Math.round(Math.sqrt((t! * h! * w!) / count));
      return { rows: h! / merge, cols: w! / merge };
    }
    const side = Math.round(Math.sqrt(count));
    if (side * side !== count) throw new Error(`an image of ${count} tokens is not one square tile`);
    return { rows: side, cols: side };
  });
}
