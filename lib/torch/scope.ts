// Tensor lifetime: explicit dispose, nested tidy scopes, and a FinalizationRegistry backstop.
//
// A tensor created inside `tidy(fn)` joins the innermost scope, which frees it when `fn` returns
// unless it is returned (it then joins the enclosing scope) or kept. Scoped tensors cost one array
// push: no registry entry. A tensor that outlives every scope gets the registry backstop, but lazily:
// it waits in `unscoped` and is registered only if still alive at the next flush (every 256 tensors
// or at the end of the current task). A tensor disposed before that, as in `a.add(b)` freed at once
// Python-style, never pays for registration.
import { native } from './native.js';

export interface Tracked {
  readonly handle: number;
  scope: Scope | null;
  registered: boolean;
}

// Tensor keeps its id in a private field, so it lends this module the one way to change it.
type HandleWriter = (t: Tracked, handle: number) => void;
let setHandle: HandleWriter = () => {
  throw new Error('vlalign: tensor handles are written only after lib/torch/tensor.ts has loaded');
};
let installed = false;

/** @internal Tensor's class body installs its writer, once. */
export function installHandleWriter(writer: HandleWriter): void {
  if (installed) throw new Error('vlalign: the tensor handle writer is already installed');
  installed = true;
  setHandle = writer;
}

export class Scope {
  readonly tensors: Tracked[] = [];
  disposedCount = 0;
  constructor(readonly parent: Scope | null) {}
}

let current: Scope | null = null;
let unscoped: Tracked[] = [];
let flushQueued = false;

const backstop = new FinalizationRegistry<number>((handle) => native.free(handle));
const FLUSH_EVERY = 256;

function flushUnscoped(): void {
  flushQueued = false;
  const pending = unscoped;
  unscoped = [];
  for (const t of pending) {
    if (t.handle !== 0 && t.scope === null && !t.registered) {
      backstop.register(t, t.handle, t);
      t.registered = true;
    }
  }
}

function adoptUnscoped(t: Tracked): void {
  t.scope = null;
  unscoped.push(t);
  if (unscoped.length >= FLUSH_EVERY) flushUnscoped();
  else if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushUnscoped);
  }
}

/** Called once for every new tensor. */
export function track(t: Tracked): void {
  const scope = current;
  if (scope === null) {
    adoptUnscoped(t);
    return;
  }
  t.scope = scope;
  scope.tensors.push(t);
}

/** Frees the native tensor now; idempotent. */
export function release(t: Tracked): void {
  const handle = t.handle;
  if (handle === 0) return;
  setHandle(t, 0);
  native.free(handle);
  if (t.registered) {
    backstop.unregister(t);
    t.registered = false;
  }
  const scope = t.scope;
  if (scope !== null && ++scope.disposedCount > 1024 && scope.disposedCount * 2 > scope.tensors.length) {
    compact(scope);
  }
}

// Drops disposed tensors from a long-running scope so a loop that disposes as it goes stays flat.
function compact(scope: Scope): void {
  let kept = 0;
  for (const t of scope.tensors) if (t.handle !== 0 && t.scope === scope) scope.tensors[kept++] = t;
  scope.tensors.length = kept;
  scope.disposedCount = 0;
}

/**
 * Moves `src`'s native handle into `dst` (whose own handle is freed) and leaves `src` disposed;
 * `dst` keeps its scope membership. The registry entry follows the handle it guards.
 */
export function transferHandle(dst: Tracked, src: Tracked): void {
  if (dst === src) return;
  const handle = src.handle;
  if (src.registered) {
    backstop.unregister(src);
    src.registered = false;
  }
  setHandle(src, 0);
  const old = dst.handle;
  setHandle(dst, handle);
  if (old !== 0) native.free(old);
  if (dst.registered) {
    backstop.unregister(dst);
    backstop.register(dst, handle, dst);
  }
}

/** Removes `t` from scope tracking: it survives every enclosing tidy and must be disposed by the user. */
export function keep<T extends Tracked>(t: T): T {
  if (t.scope !== null) adoptUnscoped(t);
  return t;
}

function collectResults(value: unknown, out: Set<Tracked>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 8) return;
  if ('handle' in value && 'scope' in value) {
    out.add(value as Tracked);
    return;
  }
  const items = Array.isArray(value) ? value : value instanceof Map ? [...value.values()] : Object.values(value);
  for (const item of items) collectResults(item, out, depth + 1);
}

/**
 * Runs `fn` in a new scope and frees every tensor it created except those in its result (a tensor,
 * or arrays / plain objects / Maps holding tensors), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Scope(current);
  current = scope;
  let result: T;
  try {
    result = fn();
  } catch (error) {
    for (const t of scope.tensors) if (t.scope === scope) release(t);
    throw error;
  } finally {
    current = scope.parent;
  }
  if (result instanceof Promise) {
    throw new TypeError('tidy(fn): fn must be synchronous; tensors created after an await cannot be tracked');
  }
  const survivors = new Set<Tracked>();
  if (typeof result === 'object' && result !== null) collectResults(result, survivors);
  const freed: number[] = [];
  for (const t of scope.tensors) {
    if (t.scope !== scope || t.handle === 0) continue;
    if (survivors.has(t)) {
      if (scope.parent === null) adoptUnscoped(t);
      else {
        t.scope = scope.parent;
        scope.parent.tensors.push(t);
      }
    } else {
      // Scoped tensors never hold a registry entry, so freeing is the handle alone.
      freed.push(t.handle);
      setHandle(t, 0);
    }
  }
  if (freed.length > 0) native.freeMany(freed);
  scope.tensors.length = 0;
  return result;
}

export interface MemoryInfo {
  numTensors: number;
  numBytes: number;
  devices: Record<string, { numTensors: number; numBytes: number }>;
}

/** Live native tensors and the bytes of their distinct storages, in total and per device. */
export function memory(): MemoryInfo {
  return native.memory() as MemoryInfo;
}
