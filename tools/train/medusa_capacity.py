#!/usr/bin/env python3
"""How far can a Medusa head of a given shape predict token t+2 of the shipped target? (capacity study)

The Medusa bar asks head 1 (our head 0: token t+2, read from the target's post-norm hidden state at t) for top-1
agreement >= 0.55 with the target's own greedy text. The shipped heads (1 ResBlock each, trained on 4.5 M
positions) reach 0.37 in the acceptance report. This script asks whether that is a data limit or the head's
capacity: it trains head 0 of several shapes on the same fresh data and reports their agreement.

1. Rollouts: prompts of 16..128 tokens at random places of a split, each continued greedily by the shipped
   target (models/specserve-code, its BF16 weights computed in F32) for 192 tokens; batches of 64 prompts of one
   length, written like rollouts.py (prompt, continuation, end-of-text) to <state-dir>/<split>.bin.
2. States: one teacher-forced forward per row; the post-norm hidden states of the rows that produced the
   continuation (h_j produced token c_j) -> <state-dir>/states_<split>.pt. A check: lm_head(h_j) argmax is c_j.
3. Heads: head 0 at row j predicts c_(j+1), the token after the lm_head's own c_j; soft labels are the target's
   distribution at row j+1 (its top 32, renormalised), whose argmax is c_(j+1).
   Shapes: `resblock` (the shipped one: x + SiLU(W x + b)), `resblock-shipped` (the same, starting from the
   shipped head 0), `resblock3` (three in a row), `mlp4x` (x + W2 SiLU(W1 x + b1) + b2, 1,536 wide).
   AdamW, batch 512 positions, cosine schedule, bf16 autocast for the matmuls.
4. Report: top-1 on the validation rollouts over all continuation rows and over the first 64 (closest to the
   acceptance report, which measures in the first ~64 tokens of each continuation) -> <state-dir>/report.json.

Usage: python3 tools/train/medusa_capacity.py [--train-tokens 7e5] [--valid-tokens 3.4e4] [--epochs 2]
           [--shapes resblock-shipped,resblock3,mlp4x]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from heads import ResBlock, greedy_continue  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TARGET = os.path.join(ROOT, "models", "specserve-code")
BATCH_ROWS, NEW_TOKENS, TOP_K, EARLY = 64, 192, 32, 64


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", default="/root/specserve-train/medusa-capacity")
    ap.add_argument("--train-tokens", type=float, default=7e5)
    ap.add_argument("--valid-tokens", type=float, default=3.4e4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--shapes", default="resblock-shipped,resblock3,mlp4x")
    ap.add_argument("--lr", type=float, default=1e-3, help="shipped start: half of it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def load_target():
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(TARGET, dtype=torch.float32).eval()  # the MTP tensors are ignored
    model.requires_grad_(False)
    return model


def prompt_lengths(split, seed):
    """The prompt length of each batch of rows and the rng draws of rollouts(), in order (to parse the file)."""
    corpus = np.memmap(stage.TRAIN_BIN if split == "train" else stage.VALID_BIN, dtype=np.uint16, mode="r")
    rng = np.random.default_rng(seed)
    while True:
        n = int(rng.integers(16, 129))
        starts = rng.integers(0, len(corpus) - n, size=BATCH_ROWS)
        yield n, starts, corpus


def rollouts(model, split, tokens, path, seed):
    have = os.path.getsize(path) // 2 if os.path.exists(path) else 0
    written, t0 = 0, time.time()
    with open(path, "ab") as f:
        for n, starts, corpus in prompt_lengths(split, seed):
            size = BATCH_ROWS * (n + NEW_TOKENS + 1)
            if written + size <= have:  # this batch is already in the file
                written += size
                continue
            if written >= tokens:
                break
            prompts = torch.from_numpy(np.stack([corpus[s:s + n].astype(np.int64) for s in starts]))
            with torch.no_grad():
                cont = greedy_continue(model, prompts, NEW_TOKENS)[0]
            rows = torch.cat([prompts, cont, torch.zeros(BATCH_ROWS, 1, dtype=torch.int64)], 1)
            f.write(rows.numpy().astype(np.uint16).tobytes())
            f.flush()
            written += size
            print(f"{split} rollouts: {written:,} ids ({(written - have) / (time.time() - t0):,.0f} ids/s)", flush=True)


def states(model, split, roll_path, out_path, seed):
    roll = np.fromfile(roll_path, dtype=np.uint16)
    off, hs, ts = 0, [], []
    for n, _, _ in prompt_lengths(split, seed):
        length = n + NEW_TOKENS + 1
        if off + BATCH_ROWS * length > len(roll):
            break
        rows = torch.from_numpy(roll[off:off + BATCH_ROWS * length].reshape(BATCH_ROWS, length).astype(np.int64))
        off += BATCH_ROWS * length
        with torch.no_grad():
            h = model.model(input_ids=rows[:, :-1]).last_hidden_state
        hs.append(h[:, n - 1:n - 1 + NEW_TOKENS].clone())  # row j produced continuation token j
        ts.append(rows[:, n:n + NEW_TOKENS].clone())
    hidden, tokens = torch.cat(hs), torch.cat(ts)
    with torch.no_grad():
        agree = (model.lm_head(hidden[:16]).argmax(-1) == tokens[:16]).float().mean().item()
    if agree < 0.99:
        sys.exit(f"{roll_path}: the teacher-forced states reproduce only {agree:.3f} of the greedy tokens")
    torch.save({"hidden": hidden, "tokens": tokens}, out_path)
    print(f"{split} states: {tuple(hidden.shape)}, lm_head reproduces {agree:.3f} of the greedy tokens", flush=True)


def head0_data(hidden, tokens, lm_head):
    """Inputs h_j, labels c_(j+1) (the token after the lm_head's own), soft top-k labels from the target at row
    j+1, and each input's index j in its continuation."""
    x = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = tokens[:, 1:].reshape(-1)
    nxt = hidden[:, 1:].reshape(-1, hidden.shape[-1])
    probs, ids = [], []
    with torch.no_grad():
        for i in range(0, len(nxt), 8192):
            p = F.softmax(lm_head(nxt[i:i + 8192]), -1)
            v, ix = p.topk(TOP_K, -1)
            probs.append(v / v.sum(-1, keepdim=True))
            ids.append(ix)
    index = torch.arange(hidden.shape[1] - 1).repeat(hidden.shape[0])
    return x, y, torch.cat(probs), torch.cat(ids), index


class MLP4x(nn.Module):
    def __init__(self, hidden, width):
        super().__init__()
        self.up, self.down = nn.Linear(hidden, width), nn.Linear(width, hidden)
        nn.init.normal_(self.up.weight, std=0.02)
        nn.init.zeros_(self.up.bias)
        nn.init.zeros_(self.down.weight)  # starts as the identity, like a ResBlock
        nn.init.zeros_(self.down.bias)

    def forward(self, x):
        return x + self.down(F.silu(self.up(x)))


def make_head(shape, hidden):
    if shape == "resblock":
        return ResBlock(hidden)
    if shape == "resblock-shipped":
        from safetensors.torch import load_file
        head = ResBlock(hidden)
        weights = load_file(os.path.join(TARGET, "medusa_lm_head.safetensors"))
        head.linear.weight.data = weights["0.0.linear.weight"].float()
        head.linear.bias.data = weights["0.0.linear.bias"].float()
        return head
    if shape == "resblock3":
        return nn.Sequential(ResBlock(hidden), ResBlock(hidden), ResBlock(hidden))
    if shape == "mlp4x":
        return MLP4x(hidden, 4 * hidden)
    sys.exit(f"unknown shape {shape!r}")


def top1(head, lm_head, x, y):
    head.eval()
    right = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(x), 4096):
            right += (lm_head(head(x[i:i + 4096])).argmax(-1) == y[i:i + 4096]).sum().item()
    head.train()
    return right / max(1, len(x))


def train(shape, args, lm_head, data, valid):
    x, y, probs, ids, _ = data
    vx, vy, _, _, vindex = valid
    early = vindex < EARLY
    torch.manual_seed(args.seed)
    head = make_head(shape, x.shape[1])
    lr0 = args.lr / 2 if shape == "resblock-shipped" else args.lr
    opt = torch.optim.AdamW(head.parameters(), lr=lr0, weight_decay=0.0)
    batch = 512
    steps = args.epochs * (len(x) // batch)
    result = {"shape": shape, "parameters": sum(p.numel() for p in head.parameters()), "lr": lr0,
              "start": {"valid_top1": top1(head, lm_head, vx, vy), "valid_top1_first64": top1(head, lm_head, vx[early], vy[early])},
              "epochs": []}
    print(f"{shape}: {result['parameters']:,} parameters; start {result['start']}", flush=True)
    step, t0 = 0, time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            for group in opt.param_groups:
                group["lr"] = lr0 * 0.5 * (1 + math.cos(math.pi * step / steps))
            rows = order[i:i + batch]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = lm_head(head(x[rows]))
            loss = -(probs[rows] * F.log_softmax(logits.float(), -1).gather(1, ids[rows])).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        seen = order[:50000]
        figures = {"epoch": epoch + 1, "train_top1_seen": round(top1(head, lm_head, x[seen], y[seen]), 4),
                   "valid_top1": round(top1(head, lm_head, vx, vy), 4),
                   "valid_top1_first64": round(top1(head, lm_head, vx[early], vy[early]), 4),
                   "seconds": round(time.time() - t0)}
        result["epochs"].append(figures)
        print(f"{shape}: {figures}", flush=True)
    return result


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.state_dir, exist_ok=True)
    model = None
    for split, tokens, seed in [("train", args.train_tokens, 2), ("valid", args.valid_tokens, 1)]:
        roll_path = os.path.join(args.state_dir, f"{split}.bin")
        states_path = os.path.join(args.state_dir, f"states_{split}.pt")
        have = os.path.getsize(roll_path) // 2 if os.path.exists(roll_path) else 0
        if have < tokens or not os.path.exists(states_path):
            model = model or load_target()
            rollouts(model, split, tokens, roll_path, seed)
            states(model, split, roll_path, states_path, seed)
    model = model or load_target()
    lm_head = model.lm_head
    data = [torch.load(os.path.join(args.state_dir, f"states_{s}.pt")) for s in ("train", "valid")]
    train_data, valid_data = (head0_data(d["hidden"], d["tokens"], lm_head) for d in data)
    print(f"head 0 positions: train {len(train_data[0]):,}, valid {len(valid_data[0]):,} "
          f"({int((valid_data[4] < EARLY).sum()):,} in the first {EARLY})", flush=True)
    results = [train(shape, args, lm_head, train_data, valid_data) for shape in args.shapes.split(",")]
    report = {"target": TARGET, "train_positions": len(train_data[0]), "valid_positions": len(valid_data[0]),
              "epochs": args.epochs, "heads": results}
    with open(os.path.join(args.state_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
