// ZeRO with adapters inside the test process (a group of one): what saveZeroAdapter, gatherCopies
// and loadZeroCheckpoint refuse, and that the refusals name the tensor, unit or buffer and leave no
// file behind. The multi-process behaviour is in zero_adapters.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { castAdapters } from '../../lib/adapters/lora_linear.js';
import { destroyProcessGroup, getProcessGroup, initProcessGroup } from '../../lib/distributed/index.js';
import { ZeroRedundancy, zeroUnits } from '../../lib/distributed/zero.js';
import { saveZeroAdapter } from '../../lib/distributed/zero_adapter.js';
import { loadZeroCheckpoint, saveZeroCheckpoint } from '../../lib/distributed/zero_checkpoint.js';
import { adaptedNet } from './fixtures/zero_adapter_net.js';
import { freePort } from './ranks.js';

afterEach(() => destroyProcessGroup());

async function groupOfOne(): Promise<void> {
  await initProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: await freePort(), env: {} });
}

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-zero-checks-'));

describe('ZeRO with adapters: refusals', () => {
  it('saveZeroAdapter names an adapter tensor that is in none of the units, and writes nothing', async () => {
    await groupOfOne();
    const peft = adaptedNet(0, { dtype: 'float64' });
    // The units without the last block: its adapter is outside ZeRO.
    const units = zeroUnits(peft.model);
    const zero = await ZeroRedundancy.create(getProcessGroup(), [units[0]!, units[1]!, units[3]!], { stage: 3 });
    const dir = tmp();
    try {
      await expect(saveZeroAdapter(zero, peft, dir)).rejects.toThrow(
        "saveZeroAdapter: the adapter's tensor 'base_model.model.blocks.2.q.lora_A.weight' is in none of ZeRO's units",
      );
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      await zero.dispose();
      peft.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('saveZeroAdapter rejects with the write error and leaves no partial file', async () => {
    await groupOfOne();
    const peft = adaptedNet(0, { dtype: 'float64' });
    const zero = await ZeroRedundancy.create(getProcessGroup(), zeroUnits(peft.model), { stage: 3 });
    const dir = tmp();
    try {
      const blocked = path.join(dir, 'file');
      fs.writeFileSync(blocked, '');
      await expect(saveZeroAdapter(zero, peft, path.join(blocked, 'adapter'))).rejects.toThrow(/ENOTDIR|EEXIST/);
      expect(fs.readdirSync(dir)).toEqual(['file']);
      // The same call into a directory works, and the units are released again after it.
      expect(await saveZeroAdapter(zero, peft, path.join(dir, 'adapter'))).toEqual([
        'adapter_model.safetensors',
        'adapter_config.json',
      ]);
      expect(fs.readdirSync(path.join(dir, 'adapter')).sort()).toEqual([
        'adapter_config.json',
        'adapter_model.safetensors',
      ]);
      expect(zero.heldUnits()).toEqual([]);
    } finally {
      await zero.dispose();
      peft.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gatherCopies checks its unit and tensors', async () => {
    await groupOfOne();
    const peft = adaptedNet(0, { dtype: 'float64' });
    const units = zeroUnits(peft.model);
    const zero = await ZeroRedundancy.create(getProcessGroup(), units, { stage: 3 });
    try {
      await expect(zero.gatherCopies(4, [])).rejects.toThrow(
        'gatherCopies: expected a unit index in [0, 3] for unit but received 4',
      );
      await expect(zero.gatherCopies(0, [units[1]![0]!])).rejects.toThrow(
        "ZeroRedundancy.gatherCopies: tensors[0] is not one of unit 0's tensors",
      );
      // A gathered copy has the tensor's full shape while the tensor itself stays empty.
      const lora = peft.layers.get('blocks.0.q')!.lora_A.weight;
      const copies = await zero.gatherCopies(0, [lora]);
      expect(copies.get(lora)!.shape).toEqual([4, 64]);
      expect(lora.shape).toEqual([0]);
      for (const t of copies.values()) t.dispose();
    } finally {
      await zero.dispose();
      peft.dispose();
    }
  });

  it('a tensor converted after create() is named at the next gather, not overwritten', async () => {
    await groupOfOne();
    const peft = adaptedNet(0, { dtype: 'float64' });
    const units = zeroUnits(peft.model);
    const zero = await ZeroRedundancy.create(getProcessGroup(), units, { stage: 3 });
    try {
      castAdapters(peft.layers.values(), 'float32');
      const at = units[0]!.indexOf(peft.layers.get('blocks.0.q')!.lora_A.weight);
      await expect(zero.withUnitGathered(0, () => undefined)).rejects.toThrow(
        `ZeroRedundancy: units[0][${at}] is float32 now, but float64 when create() flattened it: ` +
          'convert the model (castAdapters, to()) before ZeroRedundancy.create',
      );
    } finally {
      castAdapters(peft.layers.values(), 'float64');
      await zero.dispose();
      peft.dispose();
    }
  });

  it('loadZeroCheckpoint names the first trainable buffer that differs from the save', async () => {
    await groupOfOne();
    const dir = tmp();
    const lora = adaptedNet(0, { dtype: 'float64' });
    const dora = adaptedNet(0, { dtype: 'float64', dora: true });
    const saving = await ZeroRedundancy.create(getProcessGroup(), zeroUnits(lora.model), { stage: 3 });
    const loading = await ZeroRedundancy.create(getProcessGroup(), zeroUnits(dora.model), { stage: 2 });
    try {
      await saveZeroCheckpoint(saving, dir, { excludeFrozen: true });
      // DoRA adds a magnitude vector per projection: unit 0's trainable buffer has 128 more elements.
      await expect(loadZeroCheckpoint(loading, dir)).rejects.toThrow(
        "loadZeroCheckpoint: the checkpoint's flat buffers differ from this model's at buffer 0: " +
          'saved unit 0 float64 trainable (1024 elements), here unit 0 float64 trainable (1152 elements)',
      );
    } finally {
      await saving.dispose();
      await loading.dispose();
      lora.dispose();
      dora.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
