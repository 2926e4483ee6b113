// A PEFT adapter save (adapter_model.safetensors + adapter_config.json, the files writeAdapter writes
// for one process) from a model trained under ZeroRedundancy, written by rank 0 one unit at a time:
// at stage 3 each unit's adapter tensors are all-gathered alone (not the frozen base beside them) and
// their bytes written in place, so no process ever holds more of the adapter than one unit.
//
// The file's header needs every tensor's shape before any bytes exist, and its tensor order (by
// dtype, then name) interleaves the units. So rank 0 first writes the file through the one
// safetensors writer with a placeholder per tensor (a zero expanded to the shape: one element of
// storage each), which gives the header byte for byte as a one-process save makes it; then each
// gathered unit's bytes go to their offsets; then fsync and rename, as every file vlalign writes.
import fs from 'node:fs';
import path from 'node:path';
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import { readSafetensorsHeader, saveSafetensors } from '../torch/safetensors.js';
import { syncDirectory, writeAtomic } from '../util/atomic_write.js';
import { peftJsonText, toPeftJson } from '../adapters/config.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, type AdapterSource } from '../adapters/io.js';
import { broadcast } from './collectives.js';
import type { ZeroRedundancy } from './zero.js';

const OP = 'saveZeroAdapter';

interface Entry {
  name: string;
  tensor: Tensor;
  shape: number[];
  dtype: torch.DType;
}

/**
 * Writes `adapter`'s PEFT files into `dir` from rank 0 (the same bytes as `writeAdapter` in one
 * process with the same values). Every rank calls it, after the same steps; at stage 3 the adapter's
 * tensors are gathered unit by unit. Every tensor of `adapter.adapterStateDict()` must be one of
 * ZeRO's units' tensors. Resolves to the files written (rank 0) or []; if rank 0 fails to write,
 * every rank rejects.
 */
export async function saveZeroAdapter(zero: ZeroRedundancy, adapter: AdapterSource, dir: string): Promise<string[]> {
  const byUnit = entriesByUnit(zero, adapter.adapterStateDict());
  const writer = zero.rank === 0;
  const target = path.join(dir, ADAPTER_WEIGHTS_FILE);
  let failure: unknown = null;
  let file: PartialFile | null = null;
  if (writer) {
    try {
      file = await PartialFile.create(target, byUnit.flat());
    } catch (error) {
      failure = error;
    }
  }
  for (const [unit, entries] of byUnit.entries()) {
    if (entries.length === 0) continue;
    const full = await zero.gatherCopies(
      unit,
      entries.map((e) => e.tensor),
    );
    try {
      if (file !== null && failure === null) for (const e of entries) file.write(e.name, full.get(e.tensor)!);
    } catch (error) {
      failure = error;
    } finally {
      for (const t of full.values()) t.dispose();
    }
  }
  if (file !== null) {
    try {
      if (failure === null) {
        file.commit();
        writeAtomic(path.join(dir, ADAPTER_CONFIG_FILE), peftJsonText(toPeftJson(adapter.config)));
      }
    } catch (error) {
      failure = error;
    } finally {
      file.discard();
    }
  }
  // Rank 0's outcome, so that no rank returns as if the save had been made.
  const status = torch.tensor([writer && failure !== null ? 1 : 0], { dtype: 'uint8' });
  try {
    await broadcast(status, { src: 0 });
    if (writer && failure !== null) throw failure;
    if ((status.item() as number) !== 0) throw new Error(`${OP}: rank 0 failed to write ${target}; see its error`);
  } finally {
    status.dispose();
  }
  return writer ? [ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE] : [];
}

/** The adapter's tensors grouped by ZeRO unit (units in order; each unit's tensors in its own order). */
function entriesByUnit(zero: ZeroRedundancy, named: ReadonlyMap<string, Tensor>): Entry[][] {
  const nameOf = new Map<Tensor, string>();
  for (const [name, t] of named) nameOf.set(t, name);
  // Full shapes (stage 3 keeps empty tensors between steps) from the flat buffers' layouts.
  const shapeOf = new Map<Tensor, number[]>();
  for (const view of zero.shardViews()) view.params.forEach((p, k) => shapeOf.set(p, view.shapes[k]!));
  const placed = new Set<Tensor>();
  const byUnit = zero.units.map((unit) =>
    unit.flatMap((t): Entry[] => {
      const name = nameOf.get(t);
      if (name === undefined) return [];
      placed.add(t);
      return [{ name, tensor: t, shape: shapeOf.get(t) ?? t.shape, dtype: t.dtype }];
    }),
  );
  for (const [name, t] of named)
    if (!placed.has(t)) throw new Error(`${OP}: the adapter's tensor '${name}' is in none of ZeRO's units`);
  return byUnit;
}

/** adapter_model.safetensors being written beside its target: placeholders first, bytes in place. */
class PartialFile {
  private constructor(
    private readonly target: string,
    private readonly temp: string,
    private readonly fd: number,
    private readonly slots: Map<string, { start: number; bytes: number }>,
  ) {}

  static async create(target: string, entries: Entry[]): Promise<PartialFile> {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const temp = `${target}.partial-${process.pid}`;
    const placeholders = Object.fromEntries(
      entries.map((e) => [e.name, torch.tidy(() => torch.zeros([], { dtype: e.dtype }).expand(e.shape).keep())]),
    );
    try {
      await saveSafetensors(temp, placeholders, { format: 'pt' });
    } finally {
      for (const t of Object.values(placeholders)) t.dispose();
    }
    const header = await readSafetensorsHeader(temp);
    const slots = new Map(
      Object.entries(header.tensors).map(([name, info]) => [
        name,
        { start: header.dataStart + info.dataOffsets[0], bytes: info.dataOffsets[1] - info.dataOffsets[0] },
      ]),
    );
    return new PartialFile(target, temp, fs.openSync(temp, 'r+'), slots);
  }

  /** `value`'s bytes (row-major, little-endian as the placeholder's) at the tensor's offsets. */
  write(name: string, value: Tensor): void {
    const slot = this.slots.get(name)!;
    const data = value.data();
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length !== slot.bytes)
      throw new Error(`${OP}: tensor '${name}' has ${bytes.length} bytes, the header says ${slot.bytes}`);
    for (let done = 0; done < bytes.length; )
      done += fs.writeSync(this.fd, bytes, done, bytes.length - done, slot.start + done);
  }

  commit(): void {
    fs.fsyncSync(this.fd);
    fs.renameSync(this.temp, this.target);
    syncDirectory(path.dirname(path.resolve(this.target)));
  }

  /** Closes the file; removes it unless committed. */
  discard(): void {
    fs.closeSync(this.fd);
    fs.rmSync(this.temp, { force: true });
  }
}
