#!/usr/bin/env python3
"""The Python side of scripts/device-check.sh: reads what scripts/device-checks.mjs wrote with the
libraries our users hand our files to, and prints one line `RESULT {"ok": ..., "detail": ...}`.

  python3 scripts/device-checks.py peft|transformers|tensorboard <work dir> [--device cuda|cpu]

ok is null (a skip) when a library is missing and --missing-ok is given (device-check.sh --cpu);
without it a missing library is a failure.
"""
import argparse
import json
import math
import os
import sys


def report(ok, detail):
    print("RESULT " + json.dumps({"ok": ok, "detail": detail}), flush=True)


def load_expected(directory):
    with open(os.path.join(directory, "expected.json")) as f:
        return json.load(f)


def model_class(transformers, model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        architecture = json.load(f)["architectures"][0]
    cls = getattr(transformers, architecture, None)
    if cls is None:
        raise RuntimeError(f"transformers {transformers.__version__} has no class {architecture} ({model_dir}/config.json)")
    return cls


def logits_of(model, expected, device):
    import torch

    ids = torch.tensor(expected["input_ids"], dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().cpu()
    want = torch.tensor(expected["logits"], dtype=torch.float32).reshape(expected["shape"])
    if list(out.shape) != list(want.shape):
        raise RuntimeError(f"logits shape {list(out.shape)}, ours {list(want.shape)}")
    return (out - want).abs().max().item(), want.abs().max().item()


def check_peft(work, device):
    import transformers
    from peft import PeftModel

    directory = os.path.join(work, "adapter")
    expected = load_expected(directory)
    base = model_class(transformers, expected["base"]).from_pretrained(expected["base"], torch_dtype="float32")
    model = PeftModel.from_pretrained(base, directory).to(device).eval()
    diff, scale = logits_of(model, expected, device)
    import peft

    report(diff < 1e-4, f"PeftModel.from_pretrained (peft {peft.__version__}, transformers {transformers.__version__}, {device}): "
           f"max |logits - ours| {diff:.2e} (|logits| up to {scale:.2f})")


def check_transformers(work, device):
    import transformers

    directory = os.path.join(work, "checkpoint")
    expected = load_expected(directory)
    model = model_class(transformers, directory).from_pretrained(directory, torch_dtype="float32").to(device).eval()
    diff, scale = logits_of(model, expected, device)
    report(diff < 1e-4, f"{type(model).__name__}.from_pretrained (transformers {transformers.__version__}, {device}): "
           f"max |logits - ours| {diff:.2e} (|logits| up to {scale:.2f})")


def check_tensorboard(work, device):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import tensorboard

    directory = os.path.join(work, "tensorboard")
    expected = load_expected(directory)
    acc = EventAccumulator(directory, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    problems = []
    for tag, points in expected["scalars"].items():
        if tag not in tags.get("scalars", []):
            problems.append(f"no scalar '{tag}' (has {tags.get('scalars')})")
            continue
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        want = [(s, v) for s, v in points]
        same = len(got) == len(want) and all(
            gs == ws and math.isclose(gv, wv, rel_tol=1e-6) for (gs, gv), (ws, wv) in zip(got, want))
        if not same:
            problems.append(f"'{tag}' reads {got}, wrote {want}")
    text_tags = [t for t in tags.get("tensors", []) if t.startswith("config")]
    if not text_tags:
        problems.append(f"no text 'config' (tensors: {tags.get('tensors')})")
    detail = f"EventAccumulator (tensorboard {tensorboard.__version__}): scalars {sorted(expected['scalars'])} x 3 steps, text {text_tags}"
    report(not problems, detail if not problems else "; ".join(problems))


CHECKS = {"peft": check_peft, "transformers": check_transformers, "tensorboard": check_tensorboard}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("work")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--missing-ok", action="store_true")
    args = parser.parse_args()
    try:
        CHECKS[args.check](args.work, args.device)
    except ModuleNotFoundError as error:
        what = f"{sys.executable} has no module '{error.name}'"
        report(None if args.missing_ok else False, what)
    except Exception as error:  # one line for the CHECK summary, whatever went wrong
        report(False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


if __name__ == "__main__":
    main()
