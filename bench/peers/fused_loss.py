"""PyTorch peer of bench/fused-loss.mjs: one MPO training step with TRL's eager formulation.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch, the same libtorch 1.13 the
addon links), once per measurement in a fresh process. Standalone:

    /usr/bin/python3 bench/peers/fused_loss.py --hidden 896 --vocab 32000 --reps 5

The workload, as TRL's DPOTrainer (loss_type=["sigmoid", "bco_pair", "sft"], loss_weights
[0.8, 0.2, 1.0], beta 0.1, precomputed reference log-probs) runs it on the last hidden states:

    logits       = hidden @ W^T                         [2P, T, V] float32, materialised
    per-token    = selective_log_softmax(logits, labels) gather - logsumexp, TRL's row loop
    per-sequence = masked sum over completion tokens; chosen = first P rows, rejected = last P
    sigmoid      = -logsigmoid(beta * ((c - ref_c) - (r - ref_r)))
    bco_pair     = -logsigmoid(beta * (c - ref_c)) - logsigmoid(-beta * (r - ref_r))  (current TRL)
    sft          = mean NLL over the chosen completion tokens
    loss         = (0.8 sigmoid + 0.2 bco_pair + 1.0 sft).mean();  loss.backward() -> dhidden, dW

`--sft-from cross_entropy` computes the sft term as TRL's concatenated_forward does, with
F.cross_entropy over the chosen rows' logits (a second log-softmax over half the logits); the default
`logps` reuses the per-token log-probs (cheaper, the conservative baseline for the fused path).

Inputs come from torch.manual_seed(seed) in a fixed order, so the JS side (same libtorch generator)
builds bit-identical tensors; their sums are reported to prove it.

Memory: after the inputs exist, the peak-RSS counter is reset (`5` to /proc/self/clear_refs) and
VmRSS read as the baseline; one step runs (it is also the warm-up); then VmHWM is the step's peak.
Then --reps timed steps, and the same probe around one more step ("warm": grads released first, the
allocator and BLAS already initialised). Prints one JSON line.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the repo
from proc_memory import proc_status, reset_peak  # noqa: E402


def selective_log_softmax(logits, index):
    """TRL's selective_log_softmax for float32/float64 logits (trl/trainer/utils.py)."""
    selected_logits = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
    # loop to reduce peak mem consumption
    logsumexp_values = torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
    return selected_logits - logsumexp_values  # log_softmax(x_i) = x_i - logsumexp(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="completion tokens per row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logit-scale", type=float, default=1.0, help="logits' standard deviation")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--sft-from", choices=["logps", "cross_entropy"], default="logps")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    P, T, H, V = args.pairs, args.tokens, args.hidden, args.vocab
    beta = args.beta
    weights = {"sigmoid": 0.8, "bco_pair": 0.2, "sft": 1.0}

    # Inputs, in the same order and with the same in-place scaling as the JS side.
    hidden = torch.randn(2 * P, T, H, dtype=torch.float32)
    weight = torch.randn(V, H, dtype=torch.float32)
    weight.mul_(args.logit_scale / math.sqrt(H))
    labels = torch.randint(0, V, (2 * P, T), dtype=torch.int64)
    ref_chosen = torch.randn(P, dtype=torch.float32).mul_(10.0).sub_(T * math.log(V))
    ref_rejected = torch.randn(P, dtype=torch.float32).mul_(10.0).sub_(T * math.log(V))
    hidden.requires_grad_(True)
    weight.requires_grad_(True)
    inputs = {
        "hiddenSum": hidden.sum().item(),
        "weightSum": weight.sum().item(),
        "labelSum": int(labels.sum().item()),
        "refSum": (ref_chosen.sum() + ref_rejected.sum()).item(),
    }

    def step():
        hidden.grad = None
        weight.grad = None
        logits = hidden @ weight.t()  # [2P, T, V]
        loss_mask = labels != -100
        safe_labels = labels.clone()
        safe_labels[~loss_mask] = 0
        per_token_logps = selective_log_softmax(logits, safe_labels)
        per_token_logps[~loss_mask] = 0
        all_logps = per_token_logps.sum(-1)
        chosen_logps, rejected_logps = all_logps[:P], all_logps[P:]
        chosen_rewards = chosen_logps - ref_chosen
        rejected_rewards = rejected_logps - ref_rejected
        losses = 0
        for loss_type, w in weights.items():
            if loss_type == "sigmoid":
                term = -F.logsigmoid(beta * (chosen_rewards - rejected_rewards))
            elif loss_type == "bco_pair":
                term = -F.logsigmoid(beta * chosen_rewards) - F.logsigmoid(-beta * rejected_rewards)
            else:  # sft: mean NLL over the chosen completion tokens, the same for every pair
                if args.sft_from == "cross_entropy":
                    chosen_labels = labels[:P].masked_fill(~loss_mask[:P], -100)
                    nll = F.cross_entropy(logits[:P].flatten(0, 1), chosen_labels.flatten(), ignore_index=-100)
                else:
                    nll = -per_token_logps[:P].sum() / loss_mask[:P].sum()
                term = nll.expand(P)
            losses = losses + term * w
        loss = losses.mean()
        loss.backward()
        return loss.item()

    hwm_reset = reset_peak()
    before = proc_status()
    start = time.perf_counter_ns()
    loss_value = step()
    cold = (time.perf_counter_ns() - start) / 1e9
    after = proc_status()

    grad_w_abs = weight.grad.abs().sum().item()
    grad_x_abs = hidden.grad.abs().sum().item()
    grad_w_sum = weight.grad.sum().item()

    seconds = []
    for _ in range(args.reps):
        start = time.perf_counter_ns()
        step()
        seconds.append((time.perf_counter_ns() - start) / 1e9)

    # Steady state: the same probe around one more step, grads released first (as the step does).
    hidden.grad = None
    weight.grad = None
    reset_peak()
    warm_before = proc_status()
    step()
    warm_after = proc_status()

    print(json.dumps({
        "variant": "python-eager",
        "peer": "pytorch",
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "hidden": H,
        "vocab": V,
        "tokens": 2 * P * T,
        "sftFrom": args.sft_from,
        "hwmReset": hwm_reset,
        "baselineRssMb": before["VmRSS"],
        "hwmBeforeMb": before["VmHWM"],
        "peakMb": after["VmHWM"],
        "extraMb": after["VmHWM"] - before["VmRSS"],
        "warmBaselineRssMb": warm_before["VmRSS"],
        "warmExtraMb": warm_after["VmHWM"] - warm_before["VmRSS"],
        "coldStepS": cold,
        "stepS": statistics.median(seconds),
        "stepSReps": seconds,
        "loss": loss_value,
        "gradWAbsSum": grad_w_abs,
        "gradWSum": grad_w_sum,
        "gradXAbsSum": grad_x_abs,
        "inputs": inputs,
    }), flush=True)


if __name__ == "__main__":
    main()
