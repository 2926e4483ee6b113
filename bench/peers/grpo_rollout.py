"""PyTorch peer of bench/grpo-rollout.mjs (issue #12): GRPO rollouts as TRL's GRPOTrainer makes them.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch, the same libtorch 1.13 the
addon links), once per measurement in a fresh process, on the checkpoint and prompts the JS side
wrote. The model is `qwen2_vl_eager.py` (transformers v4.47.1, attn_implementation="eager"), with
the KV-cache decoding loop of transformers' generate() written out here (that file has no cache).

    /usr/bin/python3 bench/peers/grpo_rollout.py --checkpoint DIR --inputs prompts.safetensors \
        [--generations 8] [--new-tokens 64] [--temperature 1] [--top-k 0] [--top-p 1] [--seed 0] \
        [--threads 2] [--reps 3] [--warmup 1] [--vision-attention batch|per-image]
        [--suppress ID,ID,...]

One rollout, as TRL (RepeatSampler + model.generate(do_sample=True)) runs it for B prompts:
  rows     every prompt repeated G times, its image included (repeat_interleave: prompt b's rows
           are b*G .. b*G+G-1): input_ids [B*G, P], pixel_values [B*G*patches, 1176], grids [B*G, 3]
  prefill  embed; the vision tower on all B*G images in one call (its eager attention masks a
           [N, N] matrix over all of them, as v4.47's VisionAttention does); image rows scattered
           over <|image_pad|>; get_rope_index -> position ids, rope_deltas; the decoder over [B*G, P]
           filling a DynamicCache-style cache (per layer keys/values, torch.cat per step)
  decode   per step: logits of the last position .float(); TemperatureLogitsWarper, TopKLogitsWarper,
           TopPLogitsWarper (each only when active, as generate builds them); softmax; multinomial;
           input_ids and attention_mask grow by torch.cat; position = cache length + rope_deltas on
           all three M-RoPE axes; the additive mask rebuilt from attention_mask
  length   EOS is ignored, so every row generates exactly --new-tokens tokens (min_new_tokens =
           max_new_tokens), the same count as the vlalign side.
--vision-attention per-image runs the vision tower once per image (see `vision`): v4.47.1's batch
mask makes the tower's attention quadratic in B*G*patches, which dominates this rollout.
Only the last position's logits are computed (as logits_to_keep=1 would); that can only favour the
peer. Prompt processing (chat template, image resizing) is not timed on either side.
cpu_s_reps: the process's CPU seconds (user + system, all threads) per timed rollout, which a
loaded machine inflates less than wall time. Memory: peak_rss_mb is the process's VmHWM at the end; rollout_extra_mb resets the peak counter
after loading and reports VmHWM minus the VmRSS then.
--greedy N also runs one untimed greedy rollout of N tokens per prompt (G = 1) and reports its
tokens, for checking against the vlalign side. Prints one JSON line.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen2_vl_eager as qvl  # noqa: E402
from proc_memory import proc_status, reset_peak  # noqa: E402


def repeat_prompts(t, g):
    """RepeatSampler's layout: each prompt row and its image repeated g times, adjacent."""
    ids = t["input_ids"].long().repeat_interleave(g, 0)
    mask = t["attention_mask"].long().repeat_interleave(g, 0)
    grid = t["image_grid_thw"].long()
    per_image = torch.split(t["pixel_values"].float(), (grid[:, 0] * grid[:, 1] * grid[:, 2]).tolist())
    pv = torch.cat([p for p in per_image for _ in range(g)])
    return ids, mask, pv, grid.repeat_interleave(g, 0)


def additive_mask(attention_mask, q, dtype):
    """[B, 1, q, K] causal + padding mask for q new tokens over K = cached + new positions."""
    B, K = attention_mask.shape
    min_dtype = torch.finfo(dtype).min
    past = K - q
    causal = torch.arange(K)[None, :] > (torch.arange(q)[:, None] + past)
    blocked = causal[None, None] | (attention_mask[:, None, None, :] == 0)
    return torch.zeros(B, 1, q, K, dtype=dtype).masked_fill(blocked, min_dtype)


def attention(attn, x, cos, sin, mask, cache, layer):
    """TextAttention.forward with a cache: this step's k, v appended by torch.cat (DynamicCache)."""
    cfg = attn.cfg
    B, L, _ = x.shape
    hd = cfg.head_dim
    q = attn.q_proj(x).view(B, L, -1, hd).transpose(1, 2)
    k = attn.k_proj(x).view(B, L, -1, hd).transpose(1, 2)
    v = attn.v_proj(x).view(B, L, -1, hd).transpose(1, 2)
    q = (q * cos) + (qvl.rotate_half(q) * sin)
    k = (k * cos) + (qvl.rotate_half(k) * sin)
    if layer < len(cache):
        k = torch.cat([cache[layer][0], k], dim=-2)
        v = torch.cat([cache[layer][1], v], dim=-2)
        cache[layer] = (k, v)
    else:
        cache.append((k, v))
    S = k.shape[2]
    rep = cfg.num_attention_heads // cfg.num_key_value_heads
    if rep > 1:
        k = k[:, :, None].expand(B, k.shape[1], rep, S, hd).reshape(B, -1, S, hd)
        v = v[:, :, None].expand(B, v.shape[1], rep, S, hd).reshape(B, -1, S, hd)
    w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
    w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
    return attn.o_proj(torch.matmul(w, v).transpose(1, 2).contiguous().view(B, L, -1))


def last_logits(model, embeds, position_ids, attention_mask, cache):
    """The decoder over `embeds` with the cache; lm_head on the last position only -> [B, V] float32."""
    text = model.model
    mask = additive_mask(attention_mask, embeds.shape[1], embeds.dtype)
    cos, sin = text.rotary(position_ids, embeds.dtype)
    h = embeds
    for i, layer in enumerate(text.layers):
        h = h + attention(layer.self_attn, layer.input_layernorm(h), cos, sin, mask, cache, i)
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return model.lm_head(text.norm(h[:, -1:])).squeeze(1).float()


def warp(logits, temperature, top_k, top_p):
    """generate()'s sampling warpers in their order, each only when active."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]))[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p < 1.0:  # TopPLogitsWarper: drop the low tail whose mass is <= 1 - top_p
        sorted_logits, order = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = 0
        logits = logits.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return logits


def vision(model, pv, grid, per_image=False):
    """The vision tower on the rows' images. v4.47.1's eager VisionAttention masks one [N, N] score
    matrix over all N patches of the call; per_image=True runs the tower once per image instead,
    the cost of later transformers releases, whose eager vision attention is split per image."""
    if not per_image:
        return model.visual(pv, grid)
    sizes = (grid[:, 0] * grid[:, 1] * grid[:, 2]).tolist()
    return torch.cat([model.visual(p, grid[i:i + 1]) for i, p in enumerate(torch.split(pv, sizes))])


@torch.no_grad()
def generate(model, ids, mask, pv, grid, new_tokens, sample, temperature, top_k, top_p, per_image=False,
             suppress=()):
    """KV-cache generation of exactly `new_tokens` tokens per row (EOS ignored) -> [rows, new_tokens].
    `suppress`: ids never sampled (generate's suppress_tokens, a logits processor that runs before
    the warpers), the vision special tokens the vlalign side suppresses too."""
    suppress = torch.tensor(list(suppress), dtype=torch.long)
    cfg = model.cfg
    embeds = model.model.embed_tokens(ids)
    image_embeds = vision(model, pv, grid, per_image)
    image_mask = (ids == cfg.image_token_id).unsqueeze(-1).expand_as(embeds)
    embeds = embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))
    position_ids, deltas = qvl.get_rope_index(cfg, ids, grid, mask)
    cache = []
    logits = last_logits(model, embeds, position_ids, mask, cache)
    out = ids
    for step in range(new_tokens):
        if sample:
            if len(suppress):
                logits = logits.index_fill(-1, suppress, -float("inf"))
            probs = F.softmax(warp(logits, temperature, top_k, top_p), dim=-1)
            tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            tokens = torch.argmax(logits, dim=-1)
        out = torch.cat([out, tokens[:, None]], dim=-1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        if step + 1 == new_tokens:
            break
        past = cache[0][0].shape[2]
        pos = (torch.arange(past, past + 1)[None, :] + deltas).unsqueeze(0).expand(3, -1, -1)
        logits = last_logits(model, model.model.embed_tokens(tokens[:, None]), pos, mask, cache)
    return out[:, ids.shape[1]:]


def parse_ids(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--greedy", type=int, default=0)
    p.add_argument("--vision-attention", choices=["batch", "per-image"], default="batch")
    p.add_argument("--suppress", default="", help="comma-separated token ids never sampled")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = qvl.load(args.checkpoint)
    build_s = time.perf_counter() - t0
    t, _ = qvl.read_safetensors(args.inputs)
    prompts = t["input_ids"].shape[0]
    g = args.generations

    greedy = []
    if args.greedy > 0:
        ids, mask, pv, grid = repeat_prompts(t, 1)
        greedy = generate(model, ids, mask, pv, grid, args.greedy, False, 1.0, 0, 1.0).tolist()

    def rollout():
        ids, mask, pv, grid = repeat_prompts(t, g)
        return generate(model, ids, mask, pv, grid, args.new_tokens, True, args.temperature, args.top_k, args.top_p,
                        args.vision_attention == "per-image", parse_ids(args.suppress))

    hwm_reset = reset_peak()
    before = proc_status()["VmRSS"]
    torch.manual_seed(args.seed)
    for _ in range(args.warmup):
        rollout()
    seconds, cpu = [], []
    for _ in range(args.reps):
        start, start_cpu = time.perf_counter_ns(), time.process_time()
        tokens = rollout()
        seconds.append((time.perf_counter_ns() - start) / 1e9)
        cpu.append(time.process_time() - start_cpu)
    status = proc_status()
    rollout_s = statistics.median(seconds)
    generated = int(tokens.numel())
    print(json.dumps({
        "peer": "pytorch-eager",
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "prompts": prompts,
        "rows": int(tokens.shape[0]),
        "prompt_tokens": int(t["input_ids"].shape[1]),
        "generated": generated,
        "build_s": build_s,
        "rollout_s": rollout_s,
        "tokens_s": generated / rollout_s,
        "rollout_s_reps": seconds,
        "cpu_s_reps": cpu,
        "greedy": greedy,
        "peak_rss_mb": status["VmHWM"],
        "rollout_extra_mb": status["VmHWM"] - before,
        "hwm_reset": hwm_reset,
    }), flush=True)


if __name__ == "__main__":
    main()
