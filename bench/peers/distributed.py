"""One rank of the all-reduce throughput job of bench/distributed.mjs: torch.distributed.all_reduce
(sum, float32, Gloo) over tensors of the given sizes, timed on every rank.

    RANK=r WORLD_SIZE=n MASTER_ADDR=127.0.0.1 MASTER_PORT=p GLOO_SOCKET_IFNAME=lo \\
      /usr/bin/python3 bench/peers/distributed.py --sizes 1024,1048576 --iters 200,20 \\
        [--warmup 1] [--reps 5] [--threads 1]

The process group comes from torchrun's variables (init_method env://). A first all-reduce of
(rank + 1) everywhere checks the sum n(n + 1)/2. Then, per size (bytes; float32 elements = bytes / 4)
a zero tensor (0 + 0 stays 0: no overflow, no subnormals) is all-reduced --warmup x --iters times
untimed, then --reps times: a barrier, then --iters all-reduces timed back to back (each blocking,
as async_op=False). Reported per rep: seconds per all-reduce, and the bytes this process wrote to its
sockets per all-reduce (the `wchar` of /proc/self/io; Gloo's TCP transport writes with writev).
Every rank prints one JSON line.
"""
import argparse
import datetime
import json
import os
import time

import torch
import torch.distributed as dist


def written_bytes():
    """Bytes this process has written through write-like system calls (sockets included)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


def check_sum(rank, world_size):
    t = torch.full((4,), float(rank + 1))
    dist.all_reduce(t)
    expected = world_size * (world_size + 1) / 2
    if not torch.all(t == expected):
        raise RuntimeError(f"all_reduce check: expected {expected} everywhere, got {t.tolist()}")


def time_size(nbytes, iters, warmup, reps):
    t = torch.zeros(nbytes // 4, dtype=torch.float32)
    for _ in range(warmup * iters):
        dist.all_reduce(t)
    seconds, written = [], []
    for _ in range(reps):
        dist.barrier()
        w0 = written_bytes()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(t)
        seconds.append((time.perf_counter() - start) / iters)
        written.append((written_bytes() - w0) / iters)
    return {"bytes": nbytes, "iters": iters, "seconds": seconds, "written": written}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", required=True, help="comma-separated byte counts (multiples of 4)")
    ap.add_argument("--iters", required=True, help="comma-separated all-reduces per rep, one per size")
    ap.add_argument("--warmup", type=int, default=1, help="untimed reps")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300, help="seconds a collective may wait")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    iters = [int(s) for s in args.iters.split(",")]
    if len(sizes) != len(iters) or any(s <= 0 or s % 4 for s in sizes) or any(k <= 0 for k in iters):
        ap.error("--sizes (positive multiples of 4) and --iters (positive) must have one entry each")

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    check_sum(rank, world_size)
    results = [time_size(s, k, args.warmup, args.reps) for s, k in zip(sizes, iters)]
    dist.barrier()
    print(json.dumps({
        "peer": "pytorch",
        "rank": rank,
        "world_size": world_size,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME"),
        "sizes": results,
    }))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
