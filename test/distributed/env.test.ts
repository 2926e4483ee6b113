// The launcher environment: torchrun's variables, SLURM's, which wins, and errors naming the variable.
import { describe, expect, it } from 'vitest';
import { readLaunchEnv } from '../../lib/distributed/env.js';
import { expandTasksPerNode, firstSlurmHost } from '../../lib/distributed/slurm.js';

// What torchrun 1.13 sets for worker 3 of 2 nodes x 2 (its static rendezvous: the agent's store).
const TORCHRUN = {
  RANK: '3',
  LOCAL_RANK: '1',
  WORLD_SIZE: '4',
  LOCAL_WORLD_SIZE: '2',
  GROUP_RANK: '1',
  MASTER_ADDR: 'node-a',
  MASTER_PORT: '29500',
  TORCHELASTIC_USE_AGENT_STORE: 'True',
  TORCHELASTIC_RESTART_COUNT: '2',
};

// What srun sets for task 5 of `srun -N 2 --ntasks-per-node 4` on nodes gpu[017-018].
const SLURM = {
  SLURM_PROCID: '5',
  SLURM_LOCALID: '1',
  SLURM_NTASKS: '8',
  SLURM_NODEID: '1',
  SLURM_TASKS_PER_NODE: '4(x2)',
  SLURM_STEP_NODELIST: 'gpu[017-018]',
  SLURM_JOB_NODELIST: 'gpu[017-018]',
  SLURM_NODELIST: 'gpu[017-018]',
};

describe('readLaunchEnv', () => {
  it('is null outside a launcher', () => {
    expect(readLaunchEnv({ PATH: '/usr/bin' })).toBeNull();
  });

  it("reads torchrun's variables, its agent store and restart count", () => {
    expect(readLaunchEnv(TORCHRUN)).toEqual({
      rank: 3,
      worldSize: 4,
      localRank: 1,
      localWorldSize: 2,
      masterAddr: 'node-a',
      masterPort: 29500,
      launcher: 'torchrun',
      agentStore: true,
      restartCount: 2,
    });
    // `vlalign launch` and torchrun's c10d rendezvous: rank 0 serves the store.
    expect(readLaunchEnv({ ...TORCHRUN, TORCHELASTIC_USE_AGENT_STORE: 'False' })?.agentStore).toBe(false);
  });

  it('defaults LOCAL_RANK / LOCAL_WORLD_SIZE to RANK / WORLD_SIZE (one node)', () => {
    const env = { RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1234' };
    expect(readLaunchEnv(env)).toMatchObject({
      rank: 1,
      localRank: 1,
      localWorldSize: 2,
      agentStore: false,
      restartCount: 0,
    });
  });

  it('names the variable that is missing or wrong', () => {
    expect(() => readLaunchEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '1' })).toThrow(
      'MASTER_ADDR is not set (torchrun and `vlalign launch` set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together)',
    );
    expect(() => readLaunchEnv({ ...TORCHRUN, RANK: '4' })).toThrow(
      "Expected an integer in [0, 3] for RANK (environment) but received '4' of type string",
    );
    expect(() => readLaunchEnv({ ...TORCHRUN, MASTER_PORT: '65536' })).toThrow(/for MASTER_PORT \(environment\)/);
    expect(() => readLaunchEnv({ ...TORCHRUN, LOCAL_RANK: '-1' })).toThrow(
      /for LOCAL_RANK \(environment\) but received '-1'/,
    );
    expect(() => readLaunchEnv({ ...TORCHRUN, LOCAL_RANK: undefined })).toThrow(
      'LOCAL_RANK is not set and RANK 3 is not a rank on this node (LOCAL_WORLD_SIZE 2)',
    );
  });

  it("reads SLURM's task variables and takes MASTER_ADDR from the step's first node", () => {
    expect(readLaunchEnv(SLURM)).toEqual({
      rank: 5,
      worldSize: 8,
      localRank: 1,
      localWorldSize: 4,
      masterAddr: 'gpu017',
      masterPort: 29500,
      launcher: 'slurm',
      agentStore: false,
      restartCount: 0,
    });
    expect(readLaunchEnv({ ...SLURM, MASTER_ADDR: 'login1', MASTER_PORT: '12345' })).toMatchObject({
      masterAddr: 'login1',
      masterPort: 12345,
    });
    // Without the step's list (older SLURM): the job's.
    expect(
      readLaunchEnv({
        ...SLURM,
        SLURM_STEP_NODELIST: undefined,
        SLURM_JOB_NODELIST: undefined,
        SLURM_NODELIST: 'a[3-4]',
      }),
    ).toMatchObject({ masterAddr: 'a3' });
    // Uneven nodes: this node's entry of SLURM_TASKS_PER_NODE; SLURM_NTASKS_PER_NODE when it is one number.
    expect(
      readLaunchEnv({
        ...SLURM,
        SLURM_NTASKS: '5',
        SLURM_PROCID: '4',
        SLURM_LOCALID: '0',
        SLURM_TASKS_PER_NODE: '4,1',
      }),
    ).toMatchObject({ localWorldSize: 1 });
    expect(
      readLaunchEnv({ ...SLURM, SLURM_NTASKS_PER_NODE: '4', SLURM_TASKS_PER_NODE: 'garbage' })?.localWorldSize,
    ).toBe(4);
  });

  it("prefers torchrun's variables under `srun torchrun`", () => {
    expect(readLaunchEnv({ ...SLURM, ...TORCHRUN })).toMatchObject({
      launcher: 'torchrun',
      rank: 3,
      masterAddr: 'node-a',
    });
  });

  it('names SLURM variables that cannot be read', () => {
    expect(() => readLaunchEnv({ ...SLURM, SLURM_NTASKS: undefined })).toThrow(
      /for SLURM_NTASKS \(environment\) but received undefined/,
    );
    expect(() =>
      readLaunchEnv({
        ...SLURM,
        SLURM_STEP_NODELIST: undefined,
        SLURM_JOB_NODELIST: undefined,
        SLURM_NODELIST: undefined,
      }),
    ).toThrow('MASTER_ADDR is not set and SLURM gives no node list (SLURM_NODELIST) to take it from');
    expect(() => readLaunchEnv({ ...SLURM, SLURM_STEP_NODELIST: 'gpu[01' })).toThrow(
      /SLURM_STEP_NODELIST: cannot read a host name/,
    );
  });
});

describe('SLURM lists', () => {
  it('take the first host as `scontrol show hostnames` lists it', () => {
    expect(firstSlurmHost('gpu[009-011,020],cpu01')).toBe('gpu009');
    expect(firstSlurmHost('node7')).toBe('node7');
    expect(firstSlurmHost('a-[3,5]-b[07-08],c')).toBe('a-3-b07');
    expect(firstSlurmHost('login1.cluster,login2.cluster')).toBe('login1.cluster');
  });

  it('expand tasks per node', () => {
    expect(expandTasksPerNode('2(x3),1')).toEqual([2, 2, 2, 1]);
    expect(expandTasksPerNode('8')).toEqual([8]);
    expect(() => expandTasksPerNode('2(3)')).toThrow("cannot read SLURM_TASKS_PER_NODE '2(3)'");
  });
});
