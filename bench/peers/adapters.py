"""PyTorch peer of bench/adapters.mjs: what users run today for the same two workloads.

    /usr/bin/python3 bench/peers/adapters.py --threads 2 --reps 5

1. A LoRA linear as PEFT computes it over a frozen fp32 base: y = x W^T + s * B(A x), W [4096, 4096]
   frozen, A [16, 4096], B [4096, 16] trainable, x [512, 4096] requiring grad (it comes from the
   layer below); forward + backward of y.sum() (gradients to x, A and B). The median time is the
   reference the QLoRA layer is compared with (bitsandbytes has no CPU 4-bit path here).
2. One torch.optim.AdamW(foreach=True) step (lr 1e-3, weight decay 0.01) over parameters shaped like
   a small decoder (--adamw-params million parameters in 2-D matrices and 1-D norms), grads set.

Prints one JSON line.
"""
import argparse
import json
import statistics
import time

import torch


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def lora_linear(args):
    g = torch.Generator().manual_seed(0)
    d, n, r = args.dim, args.tokens, args.rank
    w = torch.randn(d, d, generator=g) * d ** -0.5
    a = (torch.rand(r, d, generator=g) * 2 - 1).mul_(d ** -0.5).requires_grad_()
    b = (torch.randn(d, r, generator=g) * 0.01).requires_grad_()
    x = torch.randn(n, d, generator=g).requires_grad_()
    scaling = args.alpha / r

    def step():
        x.grad = a.grad = b.grad = None
        y = torch.nn.functional.linear(x, w) + scaling * torch.nn.functional.linear(torch.nn.functional.linear(x, a), b)
        y.sum().backward()

    return timed(step, args.warmup, args.reps)


def decoder_shapes(total):
    # hidden 1024, intermediate 2816 layers (q, k, v, o, gate, up, down + 2 norms) until `total`.
    h, i = 1024, 2816
    layer = [(h, h), (h // 4, h), (h // 4, h), (h, h), (i, h), (i, h), (h, i), (h,), (h,)]
    shapes = []
    while sum(torch.Size(s).numel() for s in shapes) < total:
        shapes.extend(layer)
    return shapes


def adamw(args):
    g = torch.Generator().manual_seed(1)
    params = [torch.randn(*s, generator=g).requires_grad_() for s in decoder_shapes(args.adamw_params * 1_000_000)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True)
    times = timed(opt.step, args.warmup, args.reps)
    return times, sum(p.numel() for p in params)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--dim', type=int, default=4096)
    parser.add_argument('--tokens', type=int, default=512)
    parser.add_argument('--rank', type=int, default=16)
    parser.add_argument('--alpha', type=float, default=32)
    parser.add_argument('--adamw-params', type=float, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lora = lora_linear(args)
    opt, count = adamw(args)
    print(json.dumps({
        'lora_fp32_s': statistics.median(lora), 'lora_fp32_reps': lora,
        'adamw_s': statistics.median(opt), 'adamw_reps': opt, 'adamw_params': count,
        'torch': torch.__version__, 'threads': torch.get_num_threads(),
    }))


if __name__ == '__main__':
    main()
