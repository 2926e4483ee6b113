"""PyTorch peer of bench/pipelines.mjs: the generation of MMPR's two sampling pipelines, as a
Python pipeline on transformers' generate() would run it, batch after batch over the input rows.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch), once per measurement in a
fresh process, on the checkpoint and token rows the JS side wrote. The model is `qwen2_vl_eager.py`
(transformers v4.47.1, attn_implementation="eager"); the KV-cache decoding loop, the sampling
warpers and the cache are grpo_rollout.py's (generate()'s loop written out).

    /usr/bin/python3 bench/peers/pipelines.py --checkpoint DIR --inputs rows.safetensors \
        --pipeline dropout|sample [--batch-size 8] [--return-sequences 1] [--new-tokens 32] \
        [--temperature 0.7] [--top-k 50] [--top-p 1] [--seed 0] [--threads 2] [--reps 3] \
        [--warmup 1] [--suppress ID,ID,...] [--vision-attention batch|per-image] [--rows R] [--variable]

dropout  rows `dropout_ids` [R, P]: a text-only prompt ending with the assistant prefix (MMPR's
         default: the image is not shown). Per batch of B rows: generate() with
         num_return_sequences n (the rows repeated n times), exactly --new-tokens each.
         --variable: the eos ids are `stop_ids` of the inputs file and --new-tokens is the cap;
         each batch decodes as generate() does with eos: a finished row stays in the batch (its
         next input is a pad token) until every row of the batch has finished or the cap is
         reached. Row r's token at step t is drawn with the uniform stream_uniform(seed, r, 0, t)
         by inverse CDF, the vlalign side's per-row stream, so both sides sample the same tokens
         and every row has the same length on both sides (the workload is identical).
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


def _mix32(x):
    """lowbias32, the integer mixer of lib/generation/row_random.ts."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def _absorb(h, word):
    return _mix32(h ^ _mix32((word + 0x9E3779B9) & 0xFFFFFFFF))


def stream_uniform(seed, stream, substream, step):
    """lib/generation/row_random.ts's streamUniform: draw `step` of row stream (seed, stream, substream)."""
    h = 0x6A09E667
    for word in (seed % 2**32, seed // 2**32, stream % 2**32, stream // 2**32, substream, step):
        h = _absorb(h, word)
    return (h >> 8) / 2**24


def inverse_cdf(logits, u):
    """The first token whose cumulative weight exceeds u * total (lib/generation/sampling.ts's draw)."""
    weights = (logits - logits.amax(-1, keepdim=True)).exp()
    cdf = weights.cumsum(-1)
    index = (cdf <= u[:, None] * cdf[:, -1:]).sum(1)
    last = ((weights > 0) * torch.arange(weights.shape[1])).argmax(-1)
    return torch.where(index == weights.shape[1], last, index)


@torch.no_grad()
def generate_until_eos(model, ids, mask, cap, temperature, top_k, top_p, suppress, stops, first_row, seed):
    """generate() with eos ids on a static batch: rows that emitted a stop token keep running (fed the
    pad token, as generate's unfinished_sequences does) until all rows stopped or `cap` tokens.
    Returns each row's length (its tokens up to and including the stop token)."""
    suppress = torch.tensor(list(suppress), dtype=torch.long)
    rows = ids.shape[0]
    embeds = model.model.embed_tokens(ids)
    position_ids, deltas = qvl.get_rope_index(model.cfg, ids, None, mask)
    cache = []
    logits = gr.last_logits(model, embeds, position_ids, mask, cache)
    lengths = [cap] * rows
    unfinished = torch.ones(rows, dtype=torch.bool)
    for step in range(cap):
        if len(suppress):
            logits = logits.index_fill(-1, suppress, -float("inf"))
        u = torch.tensor([stream_uniform(seed, first_row + r, 0, step) for r in range(rows)], dtype=torch.float32)
        tokens = inverse_cdf(gr.warp(logits, temperature, top_k, top_p), u)
        tokens = torch.where(unfinished, tokens, torch.zeros_like(tokens))  # pad_token_id for finished rows
        stopped = unfinished & torch.isin(tokens, stops)
        for r in stopped.nonzero().flatten().tolist():
            lengths[r] = step + 1
        unfinished &= ~stopped
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=-1)
        if step + 1 == cap or not bool(unfinished.any()):
            break
        past = cache[0][0].shape[2]
        pos = (torch.arange(past, past + 1)[None, :] + deltas).unsqueeze(0).expand(3, -1, -1)
        logits = gr.last_logits(model, model.model.embed_tokens(tokens[:, None]), pos, mask, cache)
    return lengths


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
    p.add_argument("--rows", type=int, default=0, help="use the first R rows (default: all)")
    p.add_argument("--variable", action="store_true", help="stop at the inputs' stop_ids (--new-tokens caps)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    suppress = gr.parse_ids(args.suppress)
    n = args.return_sequences

    t0 = time.perf_counter()
    model = qvl.load(args.checkpoint)
    build_s = time.perf_counter() - t0
    t, _ = qvl.read_safetensors(args.inputs)

    lengths = None
    if args.pipeline == "dropout" and args.variable:
        ids_all = t["dropout_ids"].long()[: args.rows or None]
        rows = ids_all.shape[0]
        stops = t["stop_ids"].long()
        if n != 1:
            raise SystemExit("--variable runs one continuation per row")

        def run():
            nonlocal lengths
            lengths = []
            for b, e in batches(rows, args.batch_size):
                ids = ids_all[b:e]
                lengths += generate_until_eos(model, ids, torch.ones_like(ids), args.new_tokens, args.temperature,
                                              args.top_k, args.top_p, suppress, stops, b, args.seed)
            return sum(lengths)
    elif args.pipeline == "dropout":
        ids_all = t["dropout_ids"].long()[: args.rows or None]
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
        "lengths": lengths,
    }), flush=True)


if __name__ == "__main__":
    main()
