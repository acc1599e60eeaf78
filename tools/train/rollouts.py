#!/usr/bin/env python3
"""Stage 4c: the frozen target's own greedy continuations, as training text for the drafters.

A drafter only ever sees a prompt followed by what the target wrote, and a small greedy target writes
differently from the corpus: it repeats itself, falls into loops, prefers its own idioms. A draft distilled
on corpus windows alone predicts those continuations badly (on the bench's looping prompts it accepted
1 draft token in 27). This stage writes sequence-level distillation data (Kim & Rush 2016; DistillSpec):
prompts are windows of the corpus (`--prompt-min`..`--prompt-max` tokens, at random positions of the
split), each followed by the target's greedy continuation of `--new-tokens` tokens and the end-of-text
token (0), concatenated as uint16 ids like work/tokens/*.bin, so `distill_draft.py --train-bin` and
`--valid-bin` read them as they read the corpus. The target runs as shipped: its weights rounded to BF16,
computed in F32.

Output: <state-dir>/rollouts/<split>.bin, with <split>.json naming the target checkpoint they came from.
Resumable: an existing file is extended up to `--tokens` (with new prompts), never against another target.

Usage: python3 tools/train/rollouts.py --split train --tokens 2e6
       python3 tools/train/rollouts.py --split valid --tokens 25000
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from heads import greedy_continue  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["train", "valid"], default="train")
    ap.add_argument("--tokens", type=float, default=2e6, help="total ids to write (prompts + continuations)")
    ap.add_argument("--batch", type=int, default=32, help="rollouts generated together")
    ap.add_argument("--prompt-min", type=int, default=16)
    ap.add_argument("--prompt-max", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=192)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--state-dir", default="/root/specserve-train")
    ap.add_argument("--target-run", default="target")
    ap.add_argument("--target-ckpt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    source = stage.TRAIN_BIN if args.split == "train" else stage.VALID_BIN
    out_dir = os.path.join(args.state_dir, "rollouts")
    out_path = os.path.join(out_dir, f"{args.split}.bin")
    corpus = np.memmap(source, dtype=np.uint16, mode="r")
    target, ident = stage.frozen_target(args)
    os.makedirs(out_dir, exist_ok=True)
    ident_path = os.path.join(out_dir, f"{args.split}.json")
    if os.path.exists(out_path) and os.path.exists(ident_path):
        with open(ident_path) as f:
            if not stage.same_model(json.load(f)["target"], ident):
                sys.exit(f"{out_path} was written by another target checkpoint; remove it or use another --state-dir")
    with open(ident_path, "w") as f:
        json.dump({"target": ident, "prompt_min": args.prompt_min, "prompt_max": args.prompt_max,
                   "new_tokens": args.new_tokens, "seed": args.seed}, f, indent=1)
    # The shipped target is this checkpoint rounded to BF16 (export_family.py) and computed in F32: continue as it does.
    for p in target.parameters():
        p.data = p.data.bfloat16().float()
    have = os.path.getsize(out_path) // 2 if os.path.exists(out_path) else 0
    rng = np.random.default_rng(args.seed + have)  # a resumed run draws new prompts
    print(f"target {ident['path']}; {out_path} has {have:,} ids, writing up to {args.tokens:,.0f}", flush=True)
    t0, written = time.time(), 0
    with open(out_path, "ab") as f:
        while have + written < args.tokens:
            n = int(rng.integers(args.prompt_min, args.prompt_max + 1))
            starts = rng.integers(0, len(corpus) - n, size=args.batch)
            prompts = torch.from_numpy(np.stack([corpus[s:s + n].astype(np.int64) for s in starts])).to(args.device)
            with torch.no_grad():
                cont = greedy_continue(target, prompts, args.new_tokens)[0].cpu()
            eos = torch.zeros(args.batch, 1, dtype=torch.int64)
            rows = torch.cat([prompts.cpu(), cont, eos], 1).numpy().astype(np.uint16)
            f.write(rows.tobytes())
            f.flush()
            written += rows.size
            rate = written / (time.time() - t0)
            print(f"{have + written:,} ids ({rate:,.0f} ids/s, prompt {n})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
