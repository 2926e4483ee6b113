"""PyTorch peer of bench/pipelines.mjs: the generation of MMPR's two sampling pipelines, as a
Python pipeline on transformers' generate() would run it, batch after batch over the input rows.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch), once per measurement in a
fresh process, on the checkpoint and token rows the JS side wrote. The model is `qwen2_vl_eager.py`
(transformers v4.47.1, attn_implementation="eager"); the KV-cache decoding loop, the sampling
warpers and the cache are grpo_rollout.py's (generate()'s loop written out).

    /usr/bin/python3 bench/peers/pipelines.py --checkpoint DIR --inputs rows.safetensors \
        --pipeline dropout|sample [--batch-size 8] [--return-sequences 1] [--new-tokens 32] \
        [--temperature 0.7] [--top-k 50] [--top-p 1] [--seed 0] [--threads 2] [--reps 3] \
        [--warmup 1] [--suppress ID,ID,...] [--vision-attention batch|per-image]

dropout  rows `dropout_ids` [R, P]: a text-only prompt ending with the assistant prefix (MMPR's
         default: the image is not shown). Per batch of B rows: generate() with
         num_return_sequences n (the rows repeated n times), exactly --new-tokens each.
sample   rows `sample_ids` [R, P] with one image each (`pixel_values`, `image_grid_thw`): per batch
         of B rows, generate() with num_return_sequences n: input ids and images repeated n times
         (generate's _expand_inputs_for_generation), the vision tower on all B*n images.
One measurement = every batch of the input in order (one pipeline run). rows/s = R / its time.
Prints one JSON line.
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
import grpo_rollout as gr  # noqa: E402
import qwen2_vl_eager as qvl  # noqa: E402
from proc_memory import proc_status, reset_peak  # noqa: E402


@torch.no_grad()
def generate_text(model, ids, mask, new_tokens, temperature, top_k, top_p, suppress):
    """grpo_rollout.generate without images: the text-only prompts of DropoutNTP."""
    suppress = torch.tensor(list(suppress), dtype=torch.long)
    embeds = model.model.embed_tokens(ids)
    position_ids, deltas = qvl.get_rope_index(model.cfg, ids, None, mask)
    cache = []
    logits = gr.last_logits(model, embeds, position_ids, mask, cache)
    out = []
    for step in range(new_tokens):
        if len(suppress):
            logits = logits.index_fill(-1, suppress, -float("inf"))
        probs = F.softmax(gr.warp(logits, temperature, top_k, top_p), dim=-1)
        tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
        out.append(tokens)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        if step + 1 == new_tokens:
            break
        past = cache[0][0].shape[2]
        pos = (torch.arange(past, past + 1)[None, :] + deltas).unsqueeze(0).expand(3, -1, -1)
        logits = gr.last_logits(model, model.model.embed_tokens(tokens[:, None]), pos, mask, cache)
    return torch.stack(out, 1)


def batches(rows, size):
    return [(b, min(b + size, rows)) for b in range(0, rows, size)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--pipeline", choices=["dropout", "sample"], required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--return-sequences", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--suppress", default="")
    p.add_argument("--vision-attention", choices=["batch", "per-image"], default="batch")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    suppress = gr.parse_ids(args.suppress)
    n = args.return_sequences

    t0 = time.perf_counter()
    model = qvl.load(args.checkpoint)
    build_s = time.perf_counter() - t0
    t, _ = qvl.read_safetensors(args.inputs)

    if args.pipeline == "dropout":
        ids_all = t["dropout_ids"].long()
        rows = ids_all.shape[0]

        def run():
            generated = 0
            for b, e in batches(rows, args.batch_size):
                ids = ids_all[b:e].repeat_interleave(n, 0)
                mask = torch.ones_like(ids)
                generated += generate_text(model, ids, mask, args.new_tokens, args.temperature, args.top_k,
                                           args.top_p, suppress).numel()
            return generated
    else:
        ids_all = t["sample_ids"].long()
        rows = ids_all.shape[0]
        grid_all = t["image_grid_thw"].long()
        sizes = (grid_all[:, 0] * grid_all[:, 1] * grid_all[:, 2]).tolist()
        per_image = torch.split(t["pixel_values"].float(), sizes)

        def run():
            generated = 0
            for b, e in batches(rows, args.batch_size):
                batch = {
                    "input_ids": ids_all[b:e],
                    "attention_mask": torch.ones_like(ids_all[b:e]),
                    "image_grid_thw": grid_all[b:e],
                    "pixel_values": torch.cat(per_image[b:e]),
                }
                ids, mask, pv, grid = gr.repeat_prompts(batch, n)
                generated += gr.generate(model, ids, mask, pv, grid, args.new_tokens, True, args.temperature,
                                         args.top_k, args.top_p, args.vision_attention == "per-image",
                                         suppress).numel()
            return generated

    hwm_reset = reset_peak()
    before = proc_status()["VmRSS"]
    torch.manual_seed(args.seed)
    for _ in range(args.warmup):
        run()
    seconds, cpu = [], []
    for _ in range(args.reps):
        start, start_cpu = time.perf_counter_ns(), time.process_time()
        generated = run()
        seconds.append((time.perf_counter_ns() - start) / 1e9)
        cpu.append(time.process_time() - start_cpu)
    status = proc_status()
    run_s = statistics.median(seconds)
    print(json.dumps({
        "peer": "pytorch-eager",
        "pipeline": args.pipeline,
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "generated": generated,
        "build_s": build_s,
        "run_s": run_s,
        "rows_s": rows / run_s,
        "run_s_reps": seconds,
        "cpu_s_reps": cpu,
        "peak_rss_mb": status["VmHWM"],
        "run_extra_mb": status["VmHWM"] - before,
        "hwm_reset": hwm_reset,
    }), flush=True)


if __name__ == "__main__":
    main()
