"""PyTorch peer of bench/model-forward (issue #3): a whole Qwen2-VL forward, and forward + backward.

Run by the JS benchmark with Debian's /usr/bin/python3 (python3-torch, the same libtorch 1.13 the
addon links), once per measurement in a fresh process. The model is `qwen2_vl_eager.py` next to this
file: Qwen2-VL written in plain torch as transformers v4.47.1 computes it with
attn_implementation="eager" (transformers itself is not installed). Standalone:

    /usr/bin/python3 bench/peers/model_forward.py --seq 512 --batch 1 --image 16x16 --threads 2
    /usr/bin/python3 bench/peers/model_forward.py --print-config          # the default small config
    /usr/bin/python3 bench/peers/model_forward.py --config cfg.json ...     # any HF-style config
    /usr/bin/python3 bench/peers/model_forward.py --checkpoint DIR ...      # real weights
    /usr/bin/python3 bench/peers/model_forward.py --verify [--checkpoint DIR]   # check vs the golden
    /usr/bin/python3 bench/peers/model_forward.py --checkpoint DIR --inputs in.safetensors \
        --save-logits out.safetensors                                       # as bench/model-forward.mjs

--inputs FILE takes the workload's tensors from a safetensors file instead of drawing them:
input_ids [B, L] and labels [B, L] (int64), attention_mask [B, L], and for images pixel_values [N, 1176]
(float32) and image_grid_thw [images, 3]; B and L then come from input_ids (--seq, --batch, --image
are ignored). --save-logits FILE writes the logits [B, L, V] of one more forward (after the timed
forward reps, before fwd_bwd) as the float32 tensor `logits`, for comparing with another implementation.

--verify runs the golden cases (text_only, one_image, two_images) and prints per-tensor max abs diffs;
it exits 1 if any exceeds the fixture's tolerances (logits 1e-4, ...; ids and positions exact).
With the default OpenBLAS kernel of an AVX-512 machine the logits differ by ~1e-5 (GEMM rounding);
with OPENBLAS_CORETYPE=Prescott (OpenBLAS's generic SSE3 kernels, which the fixture was evidently
made with) every tensor matches bit for bit.

Default model: the "small Qwen2-VL" below (SMALL_CONFIG; `--print-config` prints it as config.json):

    LLM     hidden 512, 4 layers, 8 heads / 2 KV heads (head_dim 64), intermediate 1408 (SwiGLU),
            vocab 8192, untied lm_head, rms_norm_eps 1e-6, rope_theta 1e6,
            M-RoPE mrope_section [8,12,12] (the real [16,24,24] scaled to head_dim 64)
    vision  embed_dim 256, depth 4, 4 heads (head_dim 64), mlp_ratio 4 (1024, quick_gelu),
            patch 14, temporal 2, merge 2; merger 1024 -> 1024 -> 512
    ids     the 31 special tokens sit at the top of the vocabulary, in the real order:
            special id = real Qwen2 id - 151643 + (vocab - 31)  (image_pad 8173, vision_start 8170, ...)
    params  ~19.7M LLM incl. embeddings and head, ~5.0M vision (exact count printed in the JSON)

Workload. `--image HxW` is the image grid in 14-px patches (16x16 = 256 patches = 64 LLM tokens; `0x0`
or `none` for text only), one image per sequence. Each of the B sequences (length L = --seq) is
    <|im_start|> t t t <|im_end|> t <|im_start|> t t <|vision_start|> <|image_pad|>*(H*W/4) <|vision_end|> t ...
(t = random ordinary ids in [0, vocab-31), filling up to L), attention_mask all ones.
pixel_values [B*H*W, 1176] ~ N(0, 1), image_grid_thw = [[1, H, W]] * B. Labels [B, L] are random ids
in [0, vocab) and the loss is F.cross_entropy over all B*L logits rows (mean, no shift, no ignore).
Random draws, after torch.manual_seed(seed): model init (module order), input ids, pixel values, labels.
  (a) forward: model.eval(), torch.no_grad(), logits = model(ids, mask, pixel_values, grid) — includes
      the vision tower, get_rope_index (a Python loop, as in transformers) and the lm_head.
  (b) fwd_bwd: model.train() (dropout is 0), grads of all parameters set to None, forward, CE loss,
      loss.backward() (grads for every parameter, vision tower included).
Each: --warmup untimed runs then --reps timed runs; the reported time is the median.
Memory: peak_rss_mb is the process's VmHWM at the end (model, inputs, both phases). The phase
fields reset the peak counter (`5` > /proc/self/clear_refs) before each phase's warm-up and report its
VmHWM minus the VmRSS right before it. Prints one JSON line.
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
from proc_memory import proc_status, reset_peak  # noqa: E402

GOLDEN_DIR = "/work/shared/fixtures/golden/qwen2_vl"

# Real Qwen2 special-token ids, 151643 .. 151673 (a block of 31).
_REAL = {"bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
         "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
         "video_token_id": 151656}
IM_START_REAL = 151644
IM_END_REAL = 151645


def small_config(vocab=8192):
    """The default benchmark model, as an HF-style flat config.json dict."""
    top = vocab - 31
    cfg = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": 512,
        "intermediate_size": 1408,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
        "max_position_embeddings": 32768,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "vision_config": {
            "depth": 4,
            "embed_dim": 256,
            "hidden_size": 512,
            "hidden_act": "quick_gelu",
            "mlp_ratio": 4,
            "num_heads": 4,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    }
    for k, real in _REAL.items():
        cfg[k] = real - 151643 + top
    return cfg


def parse_grid(s):
    if s in (None, "", "none", "0", "0x0"):
        return None
    h, w = (int(v) for v in s.lower().split("x"))
    if h == 0 or w == 0:
        return None
    return h, w


def build_inputs(cfg, B, L, grid, gen_device="cpu"):
    """Prompt ids [B, L], mask, pixel_values, image_grid_thw, labels (see the module docstring)."""
    V = cfg.vocab_size
    # The special block starts at <|endoftext|> = vision_start - 9 in every Qwen2 vocabulary (real ids
    # 151643.., or shifted as in the small config and the golden fixture); text ids lie below it.
    first_special = cfg.vision_start_token_id - 9
    n_text_vocab = min(V, first_special)
    im_start = IM_START_REAL - 151643 + first_special
    im_end = IM_END_REAL - 151643 + first_special
    head = [im_start, None, None, None, im_end, None, im_start, None, None]
    n_img = 0 if grid is None else grid[0] * grid[1] // (cfg.vision.spatial_merge_size ** 2)
    media = [] if grid is None else [cfg.vision_start_token_id] + [cfg.image_token_id] * n_img + [cfg.vision_end_token_id]
    layout = head + media
    if len(layout) > L:
        raise SystemExit(f"--seq {L} is too short for the prompt head + {n_img} image tokens ({len(layout)})")
    layout = layout + [None] * (L - len(layout))
    text = torch.randint(0, n_text_vocab, (B, L), dtype=torch.int64)
    ids = text.clone()
    for i, tok in enumerate(layout):
        if tok is not None:
            ids[:, i] = tok
    mask = torch.ones(B, L, dtype=torch.int64)
    if grid is not None:
        vc = cfg.vision
        row = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2
        pixel_values = torch.randn(B * grid[0] * grid[1], row)
        grid_thw = torch.tensor([[1, grid[0], grid[1]]] * B, dtype=torch.int64)
    else:
        pixel_values = grid_thw = None
    labels = torch.randint(0, V, (B, L), dtype=torch.int64)
    return ids, mask, pixel_values, grid_thw, labels


def read_inputs(path):
    """The workload's tensors from a safetensors file (see --inputs)."""
    t, _ = qvl.read_safetensors(path)
    missing = [n for n in ("input_ids", "attention_mask", "labels") if n not in t]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    pv, grid_thw = t.get("pixel_values"), t.get("image_grid_thw")
    if (pv is None) != (grid_thw is None):
        raise SystemExit(f"{path}: pixel_values and image_grid_thw go together")
    return (t["input_ids"].long(), t["attention_mask"].long(), None if pv is None else pv.float(),
            None if grid_thw is None else grid_thw.long(), t["labels"].long())


def write_safetensors(path, tensors):
    """Minimal float32 safetensors writer (the `safetensors` package is not installed)."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def time_phase(fn, warmup, reps):
    reset_peak()
    before = proc_status()["VmRSS"]
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        fn()
        seconds.append((time.perf_counter_ns() - start) / 1e9)
    return seconds, proc_status()["VmHWM"] - before


# --------------------------------------------------------------------------------------------------
# --verify: the peer against the golden fixture
# --------------------------------------------------------------------------------------------------

def verify(directory, atol=1e-4):
    model = qvl.load(directory)
    inputs, _ = qvl.read_safetensors(os.path.join(directory, "inputs.safetensors"))
    expected, _ = qvl.read_safetensors(os.path.join(directory, "expected.safetensors"))
    with open(os.path.join(directory, "cases.json")) as f:
        cases = json.load(f)["cases"]
    ok = True
    report = {}

    def maxdiff(a, b):
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0

    for case, info in cases.items():
        g = lambda n: inputs.get(f"{case}.{n}")  # noqa: E731
        ids, mask = g("input_ids"), g("attention_mask")
        pv, grid = g("pixel_values"), g("image_grid_thw")
        aux = {}
        with torch.no_grad():
            logits = model(ids, mask, pv, grid, aux=aux)
        r = {}
        checks = []  # (name, diff, tolerance)
        checks.append(("logits", maxdiff(logits, expected[f"{case}.logits"]), atol))
        hs_exp = expected[f"{case}.hidden_states"]
        hs = aux["hidden_states"][:, 0]
        hs_tol = atol + 1e-5 * float(hs_exp.abs().max())
        checks.append(("hidden_states", maxdiff(hs, hs_exp), hs_tol))
        if pv is not None:
            checks.append(("image_embeds", maxdiff(aux["image_embeds"], expected[f"{case}.image_embeds"]), atol))
            checks.append(("vision_patch_embeds",
                           maxdiff(aux["vision_patch_embeds"], expected[f"{case}.vision_patch_embeds"]), 1e-5))
            checks.append(("vision_pre_merger",
                           maxdiff(aux["vision_pre_merger"], expected[f"{case}.vision_pre_merger"]), atol))
            checks.append(("vision_cu_seqlens",
                           maxdiff(aux["vision_cu_seqlens"], expected[f"{case}.vision_cu_seqlens"]), 0.0))
        checks.append(("position_ids", maxdiff(aux["position_ids"], g("position_ids")), 0.0))
        checks.append(("rope_deltas", maxdiff(aux["rope_deltas"], g("rope_deltas")), 0.0))
        # greedy: full uncached forwards over prompt + tokens so far
        new = info["greedy"]["new_tokens"]
        gl_exp = expected[f"{case}.greedy_step_logits"]
        seq = ids
        gdiff, tokens = 0.0, []
        with torch.no_grad():
            for k in range(len(new)):
                last = model(seq, torch.ones_like(seq), pv, grid)[0, -1]
                gdiff = max(gdiff, maxdiff(last, gl_exp[k]))
                tok = int(last.argmax())
                tokens.append(tok)
                seq = torch.cat([seq, torch.tensor([[tok]], dtype=seq.dtype)], dim=1)
        checks.append(("greedy_step_logits", gdiff, atol))
        checks.append(("greedy_tokens_mismatch", float(tokens != new), 0.0))
        for name, diff, tol in checks:
            r[name] = diff
            if not diff <= tol:
                ok = False
                r.setdefault("FAILED", []).append(name)
        report[case] = r
    return ok, report


# --------------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser()
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="JSON file of an HF Qwen2-VL config (random init)")
    src.add_argument("--checkpoint", help="checkpoint dir: config.json + model.safetensors")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image", default="16x16", help="image grid HxW in patches; 0x0 or none: text only")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-backward", action="store_true", help="time the forward only")
    p.add_argument("--print-config", action="store_true", help="print the default small config and exit")
    p.add_argument("--verify", action="store_true", help="check the model against the golden fixture")
    p.add_argument("--inputs", help="safetensors file of input_ids, attention_mask, labels [, pixel_values, "
                                    "image_grid_thw] to use instead of drawing them")
    p.add_argument("--save-logits", help="write the forward's logits to this safetensors file")
    args = p.parse_args()

    if args.print_config:
        print(json.dumps(small_config(), indent=2))
        return
    torch.set_num_threads(args.threads)

    if args.verify:
        ok, report = verify(args.checkpoint or GOLDEN_DIR)
        for case, r in report.items():
            print(case, json.dumps(r))
        print("verify:", "OK" if ok else "FAILED",
              f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '<unset>')})", flush=True)
        sys.exit(0 if ok else 1)

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.checkpoint:
        model = qvl.load(args.checkpoint)
        source = args.checkpoint
    else:
        if args.config:
            with open(args.config) as f:
                cfg_dict = json.load(f)
            source = args.config
        else:
            cfg_dict = small_config()
            source = "small (model_forward.small_config)"
        model = qvl.Qwen2VL(qvl.Qwen2VLConfig.from_dict(cfg_dict))
    build_s = time.perf_counter() - t0
    cfg = model.cfg
    if args.inputs:
        ids, mask, pv, grid_thw, labels = read_inputs(args.inputs)
        B, L = ids.shape
        grid = None if grid_thw is None else tuple(int(v) for v in grid_thw[0, 1:])
    else:
        grid = parse_grid(args.image)
        B, L = args.batch, args.seq
        ids, mask, pv, grid_thw, labels = build_inputs(cfg, B, L, grid)
    params = list(model.parameters())
    n_vision = sum(t.numel() for t in model.visual.parameters())
    n_total = sum(t.numel() for t in params)

    def forward():
        model.eval()
        with torch.no_grad():
            return model(ids, mask, pv, grid_thw)

    last_loss = [None]

    def fwd_bwd():
        model.train()
        for t in params:
            t.grad = None
        logits = model(ids, mask, pv, grid_thw)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        loss.backward()
        last_loss[0] = loss.item()

    hwm_reset = reset_peak()
    fwd_s, fwd_extra = time_phase(forward, args.warmup, args.reps)
    logits = forward()
    logits_sum = float(logits.double().sum())
    if args.save_logits:
        write_safetensors(args.save_logits, {"logits": logits.float().contiguous()})
    del logits
    if args.skip_backward:
        fb_s, fb_extra = [float("nan")], float("nan")
    else:
        fb_s, fb_extra = time_phase(fwd_bwd, args.warmup, args.reps)
    peak = proc_status()["VmHWM"]

    tokens = B * L
    f_med, fb_med = statistics.median(fwd_s), statistics.median(fb_s)
    n_img_tokens = 0 if grid is None else grid[0] * grid[1] // 4
    print(json.dumps({
        "forward_s": f_med,
        "fwd_bwd_s": fb_med,
        "tokens": tokens,
        "forward_tok_s": tokens / f_med,
        "fwd_bwd_tok_s": tokens / fb_med,
        "peak_rss_mb": peak,
        "peer": "pytorch-eager",
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": source,
        "batch": B,
        "seq": L,
        "image_grid": None if grid is None else [1, grid[0], grid[1]],
        "image_patches": 0 if grid is None else B * grid[0] * grid[1],
        "image_tokens": B * n_img_tokens,
        "params": n_total,
        "vision_params": n_vision,
        "build_s": build_s,
        "forward_s_reps": fwd_s,
        "fwd_bwd_s_reps": fb_s,
        "hwm_reset": hwm_reset,
        "forward_extra_mb": fwd_extra,
        "fwd_bwd_extra_mb": fb_extra,
        "loss": last_loss[0],
        "logits_sum": logits_sum,
    }), flush=True)


if __name__ == "__main__":
    main()
