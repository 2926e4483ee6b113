// The process group inside the test process: argument checks (sharp-style messages naming the
// argument), a group of one, and a rendezvous that a rank never joins.
import { afterEach, describe, expect, it } from 'vitest';
import {
  allGather,
  allReduce,
  barrier,
  broadcast,
  destroyProcessGroup,
  getLocalRank,
  getProcessGroup,
  getRank,
  getWorldSize,
  initProcessGroup,
  isInitialized,
  reduceScatter,
} from '../../lib/distributed/index.js';
import { tensor, zeros } from '../../lib/torch/index.js';
import { freePort } from './ranks.js';

afterEach(() => destroyProcessGroup());

async function groupOfOne(): Promise<void> {
  await initProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: await freePort(), env: {} });
}

describe('initProcessGroup', () => {
  it('names what is missing when neither options nor a launcher place the process', async () => {
    await expect(initProcessGroup({ env: {} })).rejects.toThrow(
      /no worldSize given: run under torchrun, `vlalign launch` or srun/,
    );
  });

  it('checks its options', async () => {
    const base = { rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 29500, env: {} };
    await expect(initProcessGroup({ ...base, rank: 2 })).rejects.toThrow(
      'initProcessGroup: expected an integer in [0, 1] for rank but received 2 of type number',
    );
    await expect(initProcessGroup({ ...base, masterPort: 70000 })).rejects.toThrow(/for masterPort but received 70000/);
    await expect(initProcessGroup({ ...base, timeoutMs: 0 })).rejects.toThrow(/for timeoutMs but received 0/);
    await expect(initProcessGroup({ ...base, backend: 'mpi' as 'gloo' })).rejects.toThrow(
      "initProcessGroup: expected 'gloo' or 'nccl' for backend but received 'mpi' of type string",
    );
    await expect(initProcessGroup({ ...base, backend: 'nccl' })).rejects.toThrow(
      /has no nccl backend \(it has: gloo\)/,
    );
    await expect(
      initProcessGroup({ env: { RANK: '0', WORLD_SIZE: 'two', MASTER_ADDR: 'h', MASTER_PORT: '1' } }),
    ).rejects.toThrow(/Expected an integer >= 1 for WORLD_SIZE \(environment\) but received 'two'/);
    expect(isInitialized()).toBe(false);
  });

  it('fails after the timeout, naming rank, address and timeout, when another rank never joins', async () => {
    const port = await freePort();
    const started = performance.now();
    await expect(
      initProcessGroup({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1500, env: {} }),
    ).rejects.toThrow(
      `initProcessGroup: rank 0 of 2 could not form the gloo group through 127.0.0.1:${port} (timeout 1500 ms): `,
    );
    expect(performance.now() - started).toBeGreaterThan(1400);
    expect(isInitialized()).toBe(false);
    // The failed attempt left nothing behind: a new group can form.
    await groupOfOne();
    expect(getWorldSize()).toBe(1);
  }, 30_000);

  it('reads the launcher environment, and refuses a second group', async () => {
    const port = await freePort();
    const env = { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', MASTER_ADDR: 'localhost', MASTER_PORT: String(port) };
    const info = await initProcessGroup({ env });
    expect(info).toMatchObject({ backend: 'gloo', rank: 0, worldSize: 1, localRank: 0, launcher: 'torchrun' });
    expect([getRank(), getWorldSize(), getLocalRank(), getProcessGroup().masterPort]).toEqual([0, 1, 0, port]);
    await expect(initProcessGroup({ env })).rejects.toThrow(
      /already has a process group; call destroyProcessGroup\(\) first/,
    );
  }, 30_000);
});

describe('collectives on a group of one', () => {
  it('are the identity (sum, avg, max), gather and scatter whole tensors, and settle as Promises', async () => {
    await groupOfOne();
    const t = tensor([1.5, -2, 3], { dtype: 'float64' });
    expect(await allReduce(t, { op: 'avg' })).toBe(t);
    expect(t.toArray()).toEqual([1.5, -2, 3]);
    expect((await allGather(tensor([[1, 2]]))).toArray()).toEqual([[1, 2]]);
    expect((await allGather(tensor(7))).toArray()).toEqual([7]);
    expect((await reduceScatter(tensor([4, 5], { dtype: 'float32' }), { op: 'max' })).toArray()).toEqual([4, 5]);
    const out = zeros(2);
    expect(await reduceScatter(tensor([4, 5], { dtype: 'float32' }), { output: out })).toBe(out);
    expect(out.toArray()).toEqual([4, 5]);
    expect((await broadcast(tensor([9]), { src: 0 })).toArray()).toEqual([9]);
    await barrier();
  }, 30_000);

  it('check their arguments before anything is sent', async () => {
    await expect(allReduce(tensor([1]))).rejects.toThrow('allReduce: no process group; call initProcessGroup() first');
    await groupOfOne();
    await expect(allReduce([1] as never)).rejects.toThrow(
      'allReduce: expected a Tensor for tensor but received an array of length 1',
    );
    await expect(allReduce(tensor([1]), { op: 'prod' as 'sum' })).rejects.toThrow(
      "allReduce: expected one of sum, avg, max, min for options.op but received 'prod' of type string",
    );
    await expect(allReduce(tensor([1], { dtype: 'int64' }), { op: 'avg' })).rejects.toThrow(
      /'avg' needs floating point/,
    );
    await expect(allReduce(tensor([true]))).rejects.toThrow(/for tensor's dtype but received 'bool'/);
    await expect(
      allReduce(
        tensor([
          [1, 2],
          [3, 4],
        ]).t(),
      ),
    ).rejects.toThrow(/expected a contiguous tensor/);
    const disposed = tensor([1]);
    disposed.dispose();
    await expect(allReduce(disposed)).rejects.toThrow('allReduce: tensor: the tensor was disposed and cannot be used');
    await expect(broadcast(tensor([1]), { src: 1 })).rejects.toThrow(
      /expected a rank in \[0, 0\] for options.src but received 1/,
    );
    await expect(allGather(tensor([1, 2], { dtype: 'float32' }), { output: zeros(3) })).rejects.toThrow(
      'allGather: expected options.output of shape [2] but received [3]',
    );
    await expect(allGather(tensor([1, 2]), { output: zeros(2) })).rejects.toThrow(
      "allGather: expected a tensor of the input's dtype (int64) for options.output but received 'float32'",
    );
    await expect(reduceScatter(tensor(1))).rejects.toThrow(/multiple of the world size \(1\) but received shape \[\]/);
  }, 30_000);
});
