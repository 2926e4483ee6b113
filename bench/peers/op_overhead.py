"""PyTorch peer of bench/op-overhead.mjs: the same measurements, printed as one JSON line.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch, the same libtorch 1.13.1 the
addon links). Standalone: /usr/bin/python3 bench/peers/op_overhead.py --threads 2
"""
import argparse
import json
import resource
import statistics
import time

import torch


def time_reps(rep, warmup, reps):
    """Runs rep() `warmup` times untimed, then `reps` times timed; returns seconds per rep."""
    for _ in range(warmup):
        rep()
    seconds = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        rep()
        seconds.append((time.perf_counter_ns() - start) / 1e9)
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--small-iters", type=int, default=200_000)
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--matmul-iters", type=int, default=4)
    parser.add_argument("--autograd-iters", type=int, default=5_000)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps = args.reps

    # 1. small op: c = a.add(b) on 8-element float32 tensors; the previous result is freed by
    # refcount when the loop rebinds c.
    a = torch.rand(8, dtype=torch.float32)
    b = torch.rand(8, dtype=torch.float32)
    n_small = args.small_iters

    def small_rep():
        c = None
        for _ in range(n_small):
            c = a.add(b)
        del c

    small = time_reps(small_rep, warmup=1, reps=reps)

    # 4. matmul n x n x n float32.
    n = args.matmul_size
    A = torch.randn(n, n, dtype=torch.float32)
    B = torch.randn(n, n, dtype=torch.float32)
    n_mm = args.matmul_iters

    # The result is dropped at once (freed before the next matmul allocates), as the JS side's
    # A.matmul(B).dispose(); rebinding `c` instead keeps two 4 MB outputs alive, which costs glibc
    # malloc ~10-15% here.
    def matmul_rep():
        for _ in range(n_mm):
            A.matmul(B)

    matmul = time_reps(matmul_rep, warmup=1, reps=reps)
    flops = 2.0 * n * n * n * n_mm

    # 5. autograd step of a tiny graph, grads zeroed by setting them to None.
    x = torch.randn(8, 16, dtype=torch.float32, requires_grad=True)
    w = torch.randn(16, 16, dtype=torch.float32, requires_grad=True)
    n_ag = args.autograd_iters

    def autograd_rep():
        for _ in range(n_ag):
            loss = x.matmul(w).tanh().sum()
            loss.backward()
            w.grad = None
            x.grad = None

    autograd = time_reps(autograd_rep, warmup=1, reps=reps)

    result = {
        "peer": "pytorch",
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "smallOpUs": statistics.median(small) / n_small * 1e6,
        "smallOpUsReps": [s / n_small * 1e6 for s in small],
        "matmulGflops": flops / statistics.median(matmul) / 1e9,
        "matmulGflopsReps": [flops / s / 1e9 for s in matmul],
        "autogradStepUs": statistics.median(autograd) / n_ag * 1e6,
        "autogradStepUsReps": [s / n_ag * 1e6 for s in autograd],
        # ru_maxrss is in KiB on Linux.
        "rssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
