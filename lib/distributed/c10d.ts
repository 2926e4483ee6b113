// The addon's c10d functions (cpp/binding/distributed_*.cc), typed. The only file of
// lib/distributed that calls the addon: every argument here has been checked by its caller.
import { native as N } from '../torch/native.js';
import { handleOf, type Tensor } from '../torch/tensor.js';

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** What the native rendezvous needs, resolved from options and the launcher's environment. */
export interface NativeGroupConfig {
  backend: Backend;
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  /** This process serves the TCPStore (rank 0, unless torchrun's agent already does). */
  hostStore: boolean;
  /** Key prefix inside torchrun's agent store ('' otherwise). */
  storePrefix: string;
  /** GLOO_SOCKET_IFNAME's interfaces; empty: bind `glooHostname`. */
  glooInterfaces: string[];
  /** The address Gloo binds; '' for this machine's hostname (loopback if it does not resolve). */
  glooHostname: string;
}

export interface NativeGroupInfo {
  backend: Backend;
  rank: number;
  worldSize: number;
  timeoutMs: number;
}

const id = (t: Tensor, name: string, op: string): number => handleOf(t, name, op);

export const c10d = {
  /** Backends compiled into this binary. */
  backends: (): Backend[] => N.distBackends(),
  init: (config: NativeGroupConfig): Promise<void> => N.distInit(config),
  destroy: (): boolean => N.distDestroy(),
  info: (): NativeGroupInfo | null => N.distInfo(),
  allReduce: (t: Tensor, op: ReduceOp): Promise<void> => N.distAllReduce(id(t, 'tensor', 'allReduce'), op),
  allGather: (output: Tensor, input: Tensor): Promise<void> =>
    N.distAllGather(id(output, 'output', 'allGather'), id(input, 'input', 'allGather')),
  reduceScatter: (output: Tensor, input: Tensor, op: ReduceOp): Promise<void> =>
    N.distReduceScatter(id(output, 'output', 'reduceScatter'), id(input, 'input', 'reduceScatter'), op),
  /** allGather's blocking form: returns once the output is filled (this thread waits). */
  allGatherSync: (output: Tensor, input: Tensor): void =>
    N.distAllGather(id(output, 'output', 'allGatherSync'), id(input, 'input', 'allGatherSync'), true),
  /** reduceScatter's blocking form. */
  reduceScatterSync: (output: Tensor, input: Tensor, op: ReduceOp): void =>
    N.distReduceScatter(id(output, 'output', 'reduceScatterSync'), id(input, 'input', 'reduceScatterSync'), op, true),
  broadcast: (t: Tensor, src: number): Promise<void> => N.distBroadcast(id(t, 'tensor', 'broadcast'), src),
  barrier: (): Promise<void> => N.distBarrier(),
};
