// ModuleList: children named 0, 1, 2, ... as in checkpoints (`layers.3.mlp...`).
import { Module } from './module.js';

export class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];

  constructor(items: Iterable<M> = []) {
    super();
    for (const item of items) this.append(item);
  }

  append(item: M): this {
    this.items.push(this.registerModule(String(this.items.length), item));
    return this;
  }

  get length(): number {
    return this.items.length;
  }

  at(index: number): M {
    const item = this.items.at(index);
    if (item === undefined)
      throw new RangeError(`ModuleList: index ${index} out of range for ${this.items.length} items`);
    return item;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/**
 * Children under explicit names, for checkpoint layouts with gaps (`merger.mlp.0` and `mlp.2`, where
 * index 1 was a parameterless activation in the original nn.Sequential).
 */
export class ModuleDict<M extends Module> extends Module {
  constructor(items: Record<string, M>) {
    super();
    for (const [name, item] of Object.entries(items)) this.registerModule(name, item);
  }

  /** The child under `name` (after replaceModule, the replacement). */
  get(name: string): M {
    return this.getSubmodule(name) as M;
  }
}
