"""PyTorch peer of bench/train-mpo.mjs (issue #11): MPO training steps as TRL's DPOTrainer runs them.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch, the same libtorch 1.13 the
addon links), once per measurement in a fresh process, on the checkpoint and inputs the JS side
wrote. The model is `qwen2_vl_eager.py` (transformers v4.47.1, attn_implementation="eager").

    /usr/bin/python3 bench/peers/train_mpo.py --checkpoint DIR --inputs in.safetensors \
        [--variant full|lora --adapter ADAPTER_DIR] [--threads 2] [--reps 3] [--warmup 1]

One step, as TRL (0.21, the version InternVL's MPO recipe names) does it for a VLM:
  rows     chosen rows then rejected rows (prompt + completion each): input_ids [2P, L],
           pixel_values duplicated (torch.cat([pv, pv])), image_grid_thw likewise
  policy   logits = model(...) [2P, L, V], materialised; labels = input_ids rolled by -1;
           per-token log-probs = selective_log_softmax (gather - per-row logsumexp, TRL's loop),
           zeroed off the completion, rolled back, summed per row (concatenated_forward)
  ref      the same under torch.no_grad(), after the policy forward (compute_ref_log_probs): a
           second copy of the weights (full) or the policy with its LoRA adapters disabled (lora)
  loss     legacy TRL (<= 0.28): 0.8 sigmoid + 0.2 bco_pair + 1.0 sft, beta 0.1, each term
           expanded per pair, mean over pairs. bco_pair's shift is RunningMoments' mean of the
           batch's mean reward mean(cat(beta r_c, beta r_r)), updated before use; sft is the mean
           NLL over the chosen completion tokens (the per-token log-probs reused).
  update   loss.backward(); torch.optim.AdamW (the Trainer's adamw_torch) step; grads set to None.
Full variant: every parameter trains (vision tower included). LoRA variant: PEFT's LoRA (r, alpha
and targets from the adapter directory's adapter_config.json, initial factors from its
adapter_model.safetensors, so both sides start from the same adapter) on the decoder's projections,
everything else frozen.

Memory: peak_rss_mb is the process's VmHWM at the end (models, optimizer state, every step).
step_extra_mb: the peak counter reset after loading, VmHWM minus the VmRSS then.
Prints one JSON line.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen2_vl_eager as qvl  # noqa: E402
from proc_memory import proc_status, reset_peak  # noqa: E402

PEFT_PREFIX = "base_model.model."


def selective_log_softmax(logits, index):
    """TRL's selective_log_softmax for float32 logits (trl/trainer/utils.py)."""
    selected_logits = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
    # loop to reduce peak mem consumption
    logsumexp_values = torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
    return selected_logits - logsumexp_values


class RunningMoments:
    """TRL's RunningMoments (trl/trainer/utils.py): count-weighted running mean and variance."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-24

    def update(self, xs):
        xs_count = xs.numel()
        xs_var, xs_mean = torch.var_mean(xs, unbiased=False)
        xs_mean, xs_var = xs_mean.float(), xs_var.float()
        delta = xs_mean - self.mean
        tot_count = self.count + xs_count
        new_sum = xs_var * xs_count
        old_sum = self.var * self.count + delta ** 2 * self.count * xs_count / tot_count
        self.mean += (delta * xs_count / tot_count).item()
        self.var = ((old_sum + new_sum) / tot_count).item()
        self.count = tot_count


class LoraLinear(nn.Module):
    """PEFT's lora.Linear forward: base(x) + B(A(x)) * alpha / r, or base(x) while disabled."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.scaling = alpha / r
        self.disabled = False

    def forward(self, x):
        out = self.base_layer(x)
        if self.disabled:
            return out
        return out + self.lora_B(self.lora_A(x)) * self.scaling


def inject_lora(model, adapter_dir):
    """Wraps the modules the adapter file holds factors for and loads them; returns the wrappers."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors, _ = qvl.read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    names = sorted({re.sub(r"\.lora_[AB]\.weight$", "", k[len(PEFT_PREFIX):]) for k in tensors})
    model.requires_grad_(False)
    layers = []
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = LoraLinear(getattr(parent, child), cfg["r"], cfg["lora_alpha"])
        with torch.no_grad():
            layer.lora_A.weight.copy_(tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"])
            layer.lora_B.weight.copy_(tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"])
        setattr(parent, child, layer)
        layers.append(layer)
    if not layers:
        raise SystemExit(f"{adapter_dir}: adapter_model.safetensors holds no lora_A/lora_B factors")
    return layers


def sequence_logps(logits, input_ids, loss_mask):
    """concatenated_forward's reduction: [2P, L] logits rows -> summed completion log-probs [2P]."""
    labels = torch.roll(input_ids, shifts=-1, dims=1)
    mask = torch.roll(loss_mask, shifts=-1, dims=1).bool()
    labels[~mask] = 0
    per_token = selective_log_softmax(logits, labels)
    per_token[~mask] = 0
    per_token = torch.roll(per_token, shifts=1, dims=1)
    return per_token[:, 1:].sum(-1), per_token, mask


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--variant", choices=["full", "lora"], default="full")
    p.add_argument("--adapter", help="PEFT adapter dir (lora variant): config and initial factors")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    weights = {"sigmoid": 0.8, "bco_pair": 0.2, "sft": 1.0}

    t0 = time.perf_counter()
    policy = qvl.load(args.checkpoint)
    policy.train()
    if args.variant == "full":
        ref = qvl.load(args.checkpoint)
        ref.requires_grad_(False)
        lora_layers = []
    else:
        if not args.adapter:
            raise SystemExit("--variant lora needs --adapter DIR")
        ref = None
        lora_layers = inject_lora(policy, args.adapter)
    trainable = [q for q in policy.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    build_s = time.perf_counter() - t0

    t, _ = qvl.read_safetensors(args.inputs)
    pairs = t["chosen_input_ids"].shape[0]
    # TRL's concatenated_inputs: chosen rows, then rejected rows; the prompt's images twice.
    ids = torch.cat([t["chosen_input_ids"], t["rejected_input_ids"]]).long()
    completion = torch.cat([t["chosen_labels"], t["rejected_labels"]]).long() != -100
    attention = torch.ones_like(ids)
    pv = torch.cat([t["pixel_values"], t["pixel_values"]]).float()
    grid = torch.cat([t["image_grid_thw"], t["image_grid_thw"]]).long()
    running = RunningMoments()

    def ref_logps():
        with torch.no_grad():
            if ref is not None:
                return sequence_logps(ref(ids, attention, pv, grid), ids, completion)[0]
            for layer in lora_layers:
                layer.disabled = True
            try:
                return sequence_logps(policy(ids, attention, pv, grid), ids, completion)[0]
            finally:
                for layer in lora_layers:
                    layer.disabled = False

    def step():
        logits = policy(ids, attention, pv, grid)
        logps, per_token, mask = sequence_logps(logits, ids, completion)
        ref_lp = ref_logps()
        chosen, rejected = logps[:pairs], logps[pairs:]
        chosen_ratio = chosen - ref_lp[:pairs]
        rejected_ratio = rejected - ref_lp[pairs:]
        losses = 0
        for loss_type, w in weights.items():
            if loss_type == "sigmoid":
                term = -F.logsigmoid(args.beta * (chosen_ratio - rejected_ratio))
            elif loss_type == "bco_pair":  # legacy: shifted by the running mean reward
                rewards = torch.cat((args.beta * chosen_ratio, args.beta * rejected_ratio), 0).mean().detach()
                running.update(rewards)
                delta = running.mean
                term = -F.logsigmoid(args.beta * chosen_ratio - delta) - F.logsigmoid(-(args.beta * rejected_ratio - delta))
            else:  # sft: mean NLL over the chosen completion tokens, the same for every pair
                nll = -per_token[:pairs].sum() / mask[:pairs].sum()
                term = nll.expand(pairs)
            losses = losses + term * w
        loss = losses.mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    hwm_reset = reset_peak()
    before = proc_status()["VmRSS"]
    step_losses = []
    for _ in range(args.warmup):
        step_losses.append(step())
    seconds = []
    for _ in range(args.reps):
        start = time.perf_counter_ns()
        step_losses.append(step())
        seconds.append((time.perf_counter_ns() - start) / 1e9)
    status = proc_status()
    step_s = statistics.median(seconds)
    print(json.dumps({
        "peer": "pytorch-eager",
        "variant": args.variant,
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "pairs": pairs,
        "rows": int(ids.shape[0]),
        "seq": int(ids.shape[1]),
        "trainable_params": sum(q.numel() for q in trainable),
        "build_s": build_s,
        "step_s": step_s,
        "pairs_s": pairs / step_s,
        "step_s_reps": seconds,
        "losses": step_losses,
        "peak_rss_mb": status["VmHWM"],
        "step_extra_mb": status["VmHWM"] - before,
        "hwm_reset": hwm_reset,
    }), flush=True)


if __name__ == "__main__":
    main()
