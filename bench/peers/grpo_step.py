"""PyTorch peer of bench/grpo-rollout.mjs's GRPO step (issue #12): one optimizer step as TRL's GRPOTrainer
runs it on CPU, eager, with its defaults (loss_type dapo, beta 0, num_iterations 1, one generation per
optimizer step: generation_batch_size = per_device_train_batch_size x gradient_accumulation_steps).

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch), once per measurement in a fresh
process, on the checkpoint and prompts the JS side wrote. The model is `qwen2_vl_eager.py`
(transformers v4.47.1, attn_implementation="eager"); the rollout is grpo_rollout.py's (generate()'s
KV-cache sampling loop on every prompt and image repeated G times).

    /usr/bin/python3 bench/peers/grpo_step.py --checkpoint DIR --inputs prompts.safetensors \\
        [--generations 8] [--new-tokens 64] [--micro-batch 8] [--accumulation 4] [--lr 1e-6] \\
        [--max-grad-norm 1] [--reward-modulus 5] [--temperature 1] [--top-k 0] [--top-p 1] \\
        [--seed 0] [--threads 2] [--reps 3] [--warmup 1] [--vision-attention batch|per-image]
        [--suppress ID,ID,...]

One step (_generate_and_score_completions, _prepare_inputs, compute_loss, the Trainer's update):
  generate   B prompts x G, pixel values repeated per completion (repeat_interleave), sampled with a
             KV cache, the ids of --suppress never sampled (the vision special tokens and pad, as
             on the vlalign side: a sampled <|image_pad|> would break the training forward); EOS ignored, so every completion has exactly --new-tokens tokens and the
             completion mask is all ones (the vlalign side's checkpoint has no eos_token_id)
  rewards    (sum of the completion's token ids mod k) / (k - 1), the vlalign side's function;
             advantages = (r - group mean) / (group std + 1e-4) (scale_rewards "group")
  old logps  none computed: with num_iterations 1 and steps_per_generation = gradient accumulation
             TRL skips them and uses the current log-probs detached (ratio 1)
  shuffle    the generation's rows shuffled (shuffle_sequence_dict), each row's image with it, then
             split into `accumulation` micro-batches of `micro-batch` rows
  per micro-batch, in training mode: the model over [prompt ; completion] rows with its images,
             lm_head on the last C + 1 positions only (logits_to_keep), logits[:, :-1] / temperature,
             selective_log_softmax (TRL's loop of logsumexp), entropies under no_grad
             (entropy_from_logits, 128-row chunks), the clipped ratio (epsilon 0.2), dapo:
             sum(per-token loss) / the generation's completion tokens; backward
  update     clip_grad_norm_(max_grad_norm), torch.optim.AdamW (lr, weight decay 0), zero_grad
--vision-attention as in grpo_rollout.py (both the rollout and the training forward).
Memory and CPU time as in grpo_rollout.py. Prints one JSON line.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen2_vl_eager as qvl  # noqa: E402
from grpo_rollout import generate, parse_ids, repeat_prompts, vision  # noqa: E402
from proc_memory import proc_status, reset_peak  # noqa: E402

EPSILON = 0.2


def selective_log_softmax(logits, index):
    """TRL's selective_log_softmax for float32 logits (trl/trainer/utils.py)."""
    selected_logits = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
    logsumexp_values = torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
    return selected_logits - logsumexp_values


def entropy_from_logits(logits, chunk_size=128):
    """TRL's entropy_from_logits: per-position entropy, computed in chunks of rows."""
    flat = logits.reshape(-1, logits.shape[-1])
    parts = []
    for chunk in flat.split(chunk_size, dim=0):
        logps = F.log_softmax(chunk, dim=-1)
        parts.append(-(torch.exp(logps) * logps).sum(-1))
    return torch.cat(parts).reshape(logits.shape[:-1])


def completion_logits(model, ids, mask, pv, grid, keep, per_image):
    """Qwen2VL.forward with logits_to_keep: lm_head on the last `keep` positions -> [B, keep, V] float32."""
    cfg = model.cfg
    embeds = model.model.embed_tokens(ids)
    image_embeds = vision(model, pv, grid, per_image)
    image_mask = (ids == cfg.image_token_id).unsqueeze(-1).expand_as(embeds)
    embeds = embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))
    position_ids, _ = qvl.get_rope_index(cfg, ids, grid, mask)
    h = model.model(embeds, position_ids, mask)
    return model.lm_head(h[:, -keep:]).float()


def token_sum_rewards(completion_ids, k):
    return (completion_ids.sum(-1) % k).float() / (k - 1)


def group_advantages(rewards, g):
    grouped = rewards.view(-1, g)
    mean = grouped.mean(1).repeat_interleave(g)
    std = grouped.std(1).repeat_interleave(g)
    return (rewards - mean) / (std + 1e-4), std


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--accumulation", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--reward-modulus", type=int, default=5)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--vision-attention", choices=["batch", "per-image"], default="batch")
    p.add_argument("--suppress", default="", help="comma-separated token ids never sampled")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = qvl.load(args.checkpoint)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    build_s = time.perf_counter() - t0
    t, _ = qvl.read_safetensors(args.inputs)
    prompts = t["input_ids"].shape[0]
    g = args.generations
    rows = prompts * g
    if rows != args.micro_batch * args.accumulation:
        raise SystemExit(f"one generation per step needs {prompts} x {g} = {args.micro_batch} x {args.accumulation}")
    patches = int(t["image_grid_thw"][0].prod())
    per_image = args.vision_attention == "per-image"

    def step():
        ids, mask, pv, grid = repeat_prompts(t, g)
        completion = generate(model, ids, mask, pv, grid, args.new_tokens, True,
                              args.temperature, args.top_k, args.top_p, per_image,
                              parse_ids(args.suppress))
        c = completion.shape[1]
        completion_mask = torch.ones_like(completion)
        full_ids = torch.cat([ids, completion], dim=1)
        full_mask = torch.cat([mask, completion_mask], dim=1)
        rewards = token_sum_rewards(completion, args.reward_modulus)
        advantages, std = group_advantages(rewards, g)
        tokens_in_batch = completion_mask.sum()
        order = torch.randperm(rows)
        pv_rows = pv.view(rows, patches, -1)
        losses = []
        for start in range(0, rows, args.micro_batch):
            pick = order[start:start + args.micro_batch]
            logits = completion_logits(model, full_ids[pick], full_mask[pick], pv_rows[pick].reshape(-1, pv.shape[-1]),
                                       grid[pick], c + 1, per_image)
            logits = logits[:, :-1, :] / args.temperature
            logps = selective_log_softmax(logits, completion[pick])
            with torch.no_grad():
                entropy = entropy_from_logits(logits)
            old = logps.detach()
            coef1 = torch.exp(logps - old)
            coef2 = torch.clamp(coef1, 1 - EPSILON, 1 + EPSILON)
            adv = advantages[pick].unsqueeze(1)
            per_token = -torch.min(coef1 * adv, coef2 * adv)
            m = completion_mask[pick]
            loss = (per_token * m).sum() / tokens_in_batch
            loss.backward()
            losses.append(loss.item())
            _ = (entropy * m).sum().item() / m.sum().item()  # the logged entropy
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": sum(losses), "length": float(completion_mask.sum(1).float().mean()),
                "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()), "micro_batches": len(losses)}

    hwm_reset = reset_peak()
    before = proc_status()["VmRSS"]
    torch.manual_seed(args.seed)
    steps = [step() for _ in range(args.warmup)]
    seconds, cpu = [], []
    for _ in range(args.reps):
        start, start_cpu = time.perf_counter_ns(), time.process_time()
        steps.append(step())
        seconds.append((time.perf_counter_ns() - start) / 1e9)
        cpu.append(time.process_time() - start_cpu)
    status = proc_status()
    step_s = statistics.median(seconds)
    print(json.dumps({
        "peer": "pytorch-eager",
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "prompts": prompts,
        "completions": rows,
        "mean_length": steps[-1]["length"],
        "optimizer_steps": 1,
        "micro_batches": steps[-1]["micro_batches"],
        "build_s": build_s,
        "step_s": step_s,
        "steps_s": 1 / step_s,
        "step_s_reps": seconds,
        "cpu_s_reps": cpu,
        "losses": [s["loss"] for s in steps],
        "reward_mean": [s["reward_mean"] for s in steps],
        "reward_std": [s["reward_std"] for s in steps],
        "peak_rss_mb": status["VmHWM"],
        "step_extra_mb": status["VmHWM"] - before,
        "hwm_reset": hwm_reset,
    }), flush=True)


if __name__ == "__main__":
    main()
