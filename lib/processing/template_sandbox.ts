// A bounded sandbox for rendering Jinja chat templates. A checkpoint's template is untrusted code:
// `range(1000000000)` materialises an array until V8 aborts the process, nested loops never end.
// A step budget inside @huggingface/jinja could not bound every builtin (filters, string repeats),
// so templates render in one persistent worker thread instead: the caller blocks on
// Atomics.wait with a deadline and terminates the worker when it passes (a guarantee no template
// can defeat), and the worker's heap limit turns a memory blow-up into the worker's death, not
// the process's. Inside the worker a bounded `range` and an output-size check give fast, precise
// errors for the common cases. The worker only sees the JSON-like context it is sent, so a
// template still reaches no JS globals.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';

export interface TemplateLimits {
  /** Wall-clock limit of one render, in ms (default 5000). */
  timeoutMs?: number;
  /** Longest rendered text, in characters (default 1,000,000: ~100x a long multimodal chat). */
  maxOutputChars?: number;
  /** Most items one `range()` may produce (default 1,000,000; templates loop over messages). */
  maxRangeItems?: number;
  /** Old-generation heap of the render worker, in MB (default 256); applies when it starts. */
  maxHeapMb?: number;
}

export const DEFAULT_TEMPLATE_LIMITS: Required<TemplateLimits> = {
  timeoutMs: 5000,
  maxOutputChars: 1_000_000,
  maxRangeItems: 1_000_000,
  maxHeapMb: 256,
};

// Starting the worker (thread + importing @huggingface/jinja) is not charged to a render's limit.
const STARTUP_TIMEOUT_MS = 30_000;

type Reply = { ok: true; text: string } | { ok: false; message: string; limit?: string };

// The worker body. Parsed templates are cached by source, so a checkpoint's template is parsed
// once per worker. Template.render declares the library's own range() before the context, so
// declaring 'range' again replaces it (only here) with one that refuses oversized ranges.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { port, flag, jinjaUrl } = workerData;
import(jinjaUrl).then(({ Template, Environment }) => {
  const declare = Environment.prototype.set;
  Environment.prototype.set = function (name, value) {
    if (name === 'range') this.variables.delete(name);
    return declare.call(this, name, value);
  };
  const parsed = new Map();
  const boundedRange = (max) => (start, stop, step = 1) => {
    if (stop === undefined) { stop = start; start = 0; }
    if (step === 0) throw new Error('range() step must not be zero');
    const count = Math.max(0, Math.ceil((stop - start) / step));
    if (!(count <= max)) {
      const error = new Error('range(' + [start, stop, step].join(', ') + ') has ' + count + ' items');
      error.limit = 'maxRangeItems ' + max;
      throw error;
    }
    const out = [];
    for (let i = 0; i < count; i++) out.push(start + i * step);
    return out;
  };
  const render = ({ source, context, limits }) => {
    let template = parsed.get(source);
    if (template === undefined) parsed.set(source, (template = new Template(source)));
    const text = template.render({ ...context, range: boundedRange(limits.maxRangeItems) });
    if (text.length > limits.maxOutputChars) {
      return { ok: false, message: 'the output has ' + text.length + ' characters',
        limit: 'maxOutputChars ' + limits.maxOutputChars };
    }
    return { ok: true, text };
  };
  port.on('message', (request) => {
    let reply;
    try {
      reply = render(request);
    } catch (error) {
      reply = { ok: false, message: String(error && error.message || error), limit: error && error.limit };
    }
    port.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}).catch((error) => {
  port.postMessage({ ok: false, message: 'cannot load @huggingface/jinja: ' + error.message });
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;

/** A render that broke a limit (or the template's own error, when `limit` is undefined). */
export class TemplateRenderError extends Error {
  constructor(
    message: string,
    readonly limit?: string,
  ) {
    super(message);
    this.name = 'TemplateRenderError';
  }
}

interface Sandbox {
  worker: Worker;
  port: MessagePort;
  flag: Int32Array;
  heapMb: number;
}

let sandbox: Sandbox | null = null;

/**
 * Renders `source` with `context` in the sandbox, blocking until it is done. Throws a
 * TemplateRenderError naming the broken limit; a render past its deadline (or one whose worker
 * died of its heap limit) terminates the worker, and the next render starts a fresh one.
 */
export function renderSandboxed(source: string, context: Record<string, unknown>, limits: TemplateLimits = {}): string {
  const resolved = resolveLimits(limits);
  const box = ensureSandbox(resolved.maxHeapMb);
  Atomics.store(box.flag, 0, 0);
  box.port.postMessage({ source, context, limits: resolved });
  if (!waitForSignal(box.flag, resolved.timeoutMs)) {
    discard(box);
    throw new TemplateRenderError(
      `did not finish within ${resolved.timeoutMs} ms (or ran past the ${resolved.maxHeapMb} MB heap); stopped`,
      `timeoutMs ${resolved.timeoutMs}`,
    );
  }
  const reply = receiveMessageOnPort(box.port)?.message as Reply | undefined;
  if (reply === undefined) throw new TemplateRenderError('the render worker signalled without a reply');
  if (!reply.ok) throw new TemplateRenderError(reply.message, reply.limit);
  return reply.text;
}

function resolveLimits(limits: TemplateLimits): Required<TemplateLimits> {
  const resolved = { ...DEFAULT_TEMPLATE_LIMITS };
  for (const [key, value] of Object.entries(limits) as Array<[keyof TemplateLimits, number | undefined]>) {
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new RangeError(`Expected a positive finite number for templateLimits.${key} but received ${String(value)}`);
    }
    resolved[key] = value;
  }
  return resolved;
}

function ensureSandbox(heapMb: number): Sandbox {
  if (sandbox !== null && sandbox.heapMb === heapMb) return sandbox;
  if (sandbox !== null) discard(sandbox);
  const { port1, port2 } = new MessageChannel();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const jinjaUrl = pathToFileURL(createRequire(import.meta.url).resolve('@huggingface/jinja')).href;
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { port: port2, flag, jinjaUrl },
    transferList: [port2],
    resourceLimits: { maxOldGenerationSizeMb: heapMb },
  });
  worker.unref();
  // A worker killed by its heap limit or by terminate() reports here; the render already failed.
  worker.on('error', () => {});
  const box = { worker, port: port1, flag, heapMb };
  if (!waitForSignal(flag, STARTUP_TIMEOUT_MS)) {
    discard(box);
    throw new TemplateRenderError(`the template render worker did not start within ${STARTUP_TIMEOUT_MS} ms`);
  }
  const failure = receiveMessageOnPort(port1)?.message as Reply | undefined;
  if (failure !== undefined && !failure.ok) {
    discard(box);
    throw new TemplateRenderError(failure.message);
  }
  sandbox = box;
  return box;
}

/**
 * Blocks until the worker sets `flag[0]` (true) or `timeoutMs` passes (false). A wake-up alone
 * proves nothing: the worker stores the flag, then notifies, and when the main thread saw the store
 * without waiting, that late notify lands in the NEXT render's wait, before its reply exists.
 */
export function waitForSignal(flag: Int32Array, timeoutMs: number): boolean {
  const deadline = performance.now() + timeoutMs;
  while (Atomics.load(flag, 0) === 0) {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(flag, 0, 0, left);
  }
  return true;
}

function discard(box: Sandbox): void {
  if (sandbox === box) sandbox = null;
  box.port.close();
  void box.worker.terminate().catch(() => {});
}
