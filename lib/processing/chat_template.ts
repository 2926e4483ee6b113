// Chat templates: where a checkpoint keeps its Jinja template, and rendering it with
// @huggingface/jinja under the variables transformers' apply_chat_template provides. Rendering
// runs in a bounded sandbox (template_sandbox.ts): a template is untrusted code from a checkpoint.
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';

import { readOptionalJson, readOptionalText } from './files.js';
import type { ChatMessage } from './messages.js';
import { renderSandboxed, TemplateRenderError, type TemplateLimits } from './template_sandbox.js';
import type { TextTokenizer } from './tokenizer.js';

export interface RenderOptions {
  /** End with the assistant header so the model continues as the assistant. Default false. */
  addGenerationPrompt?: boolean;
  /** Qwen-VL templates: label media "Picture k: " / "Video k: ". Default false. */
  addVisionId?: boolean;
  /** Further template variables (transformers passes extra apply_chat_template kwargs through). */
  variables?: Record<string, unknown>;
}

/** How a processor loads its checkpoint's template. */
export interface TemplateLoadOptions {
  /** The entry of a list-form chat_template to use (default "default"). */
  chatTemplateName?: string;
  /** Bounds of every render (DEFAULT_TEMPLATE_LIMITS: 5 s, 1M characters, 1M range() items, 256 MB heap). */
  templateLimits?: TemplateLimits;
}

export class ChatTemplate {
  /**
   * @param source the Jinja source
   * @param origin where it came from (a file, or a description), named in errors
   * @param specialTokens bos_token, eos_token, ... as the template sees them (unset ones omitted)
   * @param limits the render sandbox's time, output and range budgets (DEFAULT_TEMPLATE_LIMITS)
   */
  constructor(
    readonly source: string,
    readonly origin: string,
    private readonly specialTokens: Record<string, string> = {},
    readonly limits: TemplateLimits = {},
  ) {
    // Parsed here (bounded by the source's length) so a syntax error surfaces at load time.
    try {
      new Template(source);
    } catch (error) {
      throw new Error(`cannot parse the chat template of ${origin}: ${(error as Error).message}`);
    }
  }

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    const context = {
      ...this.specialTokens,
      ...options.variables,
      messages: messages.map(plainMessage),
      add_generation_prompt: options.addGenerationPrompt ?? false,
      add_vision_id: options.addVisionId ?? false,
    };
    // @huggingface/jinja provides raise_exception itself; its message arrives here.
    try {
      return renderSandboxed(this.source, context, this.limits);
    } catch (error) {
      const limit = error instanceof TemplateRenderError && error.limit ? ` (limit: ${error.limit})` : '';
      throw new Error(`rendering the chat template of ${this.origin} failed: ${(error as Error).message}${limit}`);
    }
  }
}

// Fresh plain objects: a part carries only the keys its type defines, so template tests such as
// `'image' in content` see exactly what transformers' templates expect.
function plainMessage(m: ChatMessage): Record<string, unknown> {
  return { role: m.role, content: typeof m.content === 'string' ? m.content : m.content.map((p) => ({ ...p })) };
}

/**
 * The template in tokenizer_config.json's `chat_template`: a string, or transformers' list of
 * `{name, template}` entries, from which `name` (default "default") is taken.
 */
export function selectNamedTemplate(value: unknown, origin: string, name = 'default'): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const names: string[] = [];
    for (const entry of value) {
      const e = entry as { name?: unknown; template?: unknown };
      if (typeof e?.name !== 'string' || typeof e.template !== 'string') {
        throw new TypeError(`${origin}: chat_template entries must be {name, template} strings`);
      }
      if (e.name === name) return e.template;
      names.push(e.name);
    }
    throw new Error(`${origin} has no chat template named '${name}' (it has: ${names.join(', ')})`);
  }
  throw new TypeError(`${origin}: chat_template must be a string or a list of {name, template}`);
}

/**
 * A checkpoint's chat template, looked up as transformers does, processor files first:
 * chat_template.jinja, then chat_template.json (`{"chat_template": ...}`), then
 * tokenizer_config.json's `chat_template`. Null when there is none.
 */
export async function loadChatTemplate(
  dir: string,
  tokenizer: TextTokenizer,
  name?: string,
  limits: TemplateLimits = {},
): Promise<ChatTemplate | null> {
  const specials = specialTokenVariables(tokenizer);
  const jinja = await readOptionalText(dir, 'chat_template.jinja');
  if (jinja !== null) return new ChatTemplate(jinja, join(dir, 'chat_template.jinja'), specials, limits);
  const jsonFile = join(dir, 'chat_template.json');
  const json = (await readOptionalJson(dir, 'chat_template.json')) as { chat_template?: unknown } | null;
  if (json !== null) {
    const source = selectNamedTemplate(json.chat_template, jsonFile, name);
    if (source === null) throw new Error(`${jsonFile} has no "chat_template" entry`);
    return new ChatTemplate(source, jsonFile, specials, limits);
  }
  const configFile = join(dir, 'tokenizer_config.json');
  const source = selectNamedTemplate(tokenizer.config.chat_template, configFile, name);
  return source === null ? null : new ChatTemplate(source, configFile, specials, limits);
}

/** bos_token, eos_token, pad_token, unk_token as template variables (the ones that are set). */
export function specialTokenVariables(tokenizer: TextTokenizer): Record<string, string> {
  const out: Record<string, string> = {};
  const entries = { bos_token: tokenizer.bosToken, eos_token: tokenizer.eosToken, pad_token: tokenizer.padToken };
  for (const [key, value] of Object.entries(entries)) if (value !== null) out[key] = value;
  const unk = tokenizer.config.unk_token;
  if (unk !== null) out.unk_token = unk;
  return out;
}
