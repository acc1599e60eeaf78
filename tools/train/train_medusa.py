#!/usr/bin/env python3
"""Stage 5: Medusa heads (layout v2) on the frozen target, by self-distillation.

Heads: --heads (4) heads of --layers (1) ResBlock `x + SiLU(W x + b)`, zero-initialised, each
followed by the target's frozen lm_head (v2: no vocabulary projection of their own). Every head
reads the target's final hidden state after the final norm at position i; head h predicts the
token at position i + 2 + h.

Self-distillation data: each step draws --batch windows from the train split, keeps a prefix of
P tokens (P uniform in [--min-prefix, --seq-len], one P per step) and lets the frozen target
continue it greedily for --gen tokens with a KV cache. That continuation is what the target
itself would write, so every position i of it (from the last prefix position on) has exact
labels: the target's distribution at position i + 1 + h, whose argmax is the greedy token at
i + 2 + h. The loss of head h is the cross-entropy against that soft distribution (KL to the
target plus a constant), weighted by --head-decay ** h. The positions inside the real prefix
are not trained on: their future is real text, not the target's continuation.

Evaluation on fixed validation prefixes (length --seq-len) and their greedy continuations:
per-head top-1 and top-5 agreement with the target's own greedy tokens, and the loss.

"tokens" counts trained positions (batch x gen per step).

With --train-bin (rollouts.py's file of the target's own greedy continuations) no generation is
needed: each step takes --batch windows of --seq-len tokens of that file, teacher forced, and the
labels of position i are the target's distributions at i + 1 + h along the window (on the
continuation parts exactly the generated labels above, computed in one batched forward instead of
--gen sequential steps). "tokens" then counts batch x seq-len positions. --init-run medusa
fine-tunes the finished heads this way; the evaluation stays the generated one above.

State in <state-dir>/medusa/ (see stage.py); export: export_family.py writes
medusa_lm_head.safetensors ({h}.{l}.linear.weight [H, H], {h}.{l}.linear.bias [H]).

Usage: python3 tools/train/train_medusa.py [--tokens 2e6] [--threads 2] [--device cuda]
       python3 tools/train/train_medusa.py --run medusa-rollouts --init-run medusa \
           --train-bin <state-dir>/rollouts/train.bin --tokens 4e6
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from heads import MedusaHeads, greedy_continue, soft_ce, target_states  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage.add_args(ap, run="medusa", tokens=2e6, lr=1e-3, min_lr=1e-4, warmup=50, batch=32, seq_len=128,
                   eval_every=200, eval_seqs=32)
    ap.add_argument("--gen", type=int, default=64, help="greedy continuation length per prefix")
    ap.add_argument("--min-prefix", type=int, default=16)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--head-decay", type=float, default=0.8, help="loss weight of head h is decay ** h")
    ap.add_argument("--train-bin", help="train teacher forced on windows of these ids (the target's own "
                                        "continuations, rollouts.py) instead of generating continuations")
    stage.add_init_args(ap, "Medusa heads")
    return ap.parse_args(argv)


def valid_prefixes(count, length):
    """`count` validation windows of `length` tokens at evenly spaced offsets."""
    tokens = np.memmap(stage.VALID_BIN, dtype=np.uint16, mode="r")
    starts = np.linspace(0, len(tokens) - length - 1, count).astype(np.int64)
    return torch.from_numpy(np.stack([np.asarray(tokens[s:s + length], dtype=np.int64) for s in starts]))


def head_losses(heads, lm_head, hidden, t_logits, tokens, decay):
    """hidden/t_logits/tokens: [B, G, ...] of a greedy continuation (row j produced tokens[:, j]).
    Returns the weighted loss and per-head (loss, top-1, top-5)."""
    g = hidden.shape[1]
    states = heads(hidden)
    total, weights, per_head = 0.0, 0.0, []
    for h in range(len(heads)):
        n = g - 1 - h                                   # rows whose token i + 2 + h was generated
        logits = lm_head(states[h][:, :n])
        loss = soft_ce(logits, t_logits[:, 1 + h:])
        labels = tokens[:, 1 + h:]
        top5 = logits.float().topk(5, -1).indices
        per_head.append((loss, (top5[..., 0] == labels).float().mean().item(),
                         (top5 == labels[..., None]).any(-1).float().mean().item()))
        total = total + decay ** h * loss
        weights += decay ** h
    return total / weights, per_head


def main(argv=None):
    args = parse_args(argv)
    stage.setup(args)
    if stage.already_done(args):
        return 0
    target, target_ident = stage.frozen_target(args)
    cfg = target.config
    heads = MedusaHeads(cfg.hidden_size, args.heads, args.layers)
    init_state, init = stage.init_state(args, "Medusa heads", target_ident)
    if init_state:
        heads.load_state_dict(init_state["model"])
    heads = heads.to(args.device)
    data = stage.Data(args.train_bin or stage.TRAIN_BIN, args.seq_len, args.seed)
    extra = {"medusa": {"medusa_num_heads": args.heads, "medusa_num_layers": args.layers,
                        "hidden_size": cfg.hidden_size, "layout": "v2"}}
    if init:
        extra["init"] = init
    run = stage.Run(args, heads, data, target_ident, extra)

    with stage.autocast(args):
        prefixes = valid_prefixes(args.eval_seqs, args.seq_len).to(args.device)
        ev = [greedy_continue(target, prefixes[i:i + 16], args.gen) for i in range(0, len(prefixes), 16)]
    ev_tokens, ev_hidden, ev_logits = (torch.cat([e[k] for e in ev]) for k in range(3))

    def step_fn():
        windows = data.batch(args.batch).to(args.device)
        with stage.autocast(args):
            if args.train_bin:  # the window is the target's own text: teacher forced, its argmax are the labels
                hidden, t_logits = target_states(target, windows[:, :-1])
                tokens = t_logits.argmax(-1)
            else:
                p = int(torch.randint(args.min_prefix, args.seq_len + 1, (1,), generator=data.gen))
                tokens, hidden, t_logits = greedy_continue(target, windows[:, :p], args.gen)
            loss, per_head = head_losses(heads, target.lm_head, hidden, t_logits, tokens, args.head_decay)
        metrics = {f"top1_h{h}": r[1] for h, r in enumerate(per_head)}
        return loss, metrics

    @torch.no_grad()
    def eval_fn():
        heads.eval()
        with stage.autocast(args):
            loss, per_head = head_losses(heads, target.lm_head, ev_hidden, ev_logits, ev_tokens, args.head_decay)
        out = {"val_loss": loss.item()}
        for h, (l, t1, t5) in enumerate(per_head):
            out[f"val_top1_h{h}"] = t1
            out[f"val_top5_h{h}"] = t5
        return out

    run.loop(step_fn, eval_fn, args.batch * (args.seq_len if args.train_bin else args.gen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
