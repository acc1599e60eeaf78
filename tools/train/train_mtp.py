#!/usr/bin/env python3
"""Stage 6: one DeepSeek-V3-style MTP module on the frozen target.

Module (heads.MTPModule; stored as layer num_hidden_layers of the target): enorm, hnorm,
eh_proj [H, 2H], one LLaMA block with the target's layer shapes, shared_head.norm; embedding
and lm_head are the target's, frozen. At position i, with h_i the target's final hidden state
after the final norm and t_{i+1} the next token:
    x_i = eh_proj(concat(enorm(embed(t_{i+1})), hnorm(h_i)))       (embedding first)
    y_i = block(x_i), causal over positions, RoPE position i
    logits_i = lm_head(shared_head.norm(y_i))                     predicts t_{i+2}
Step s > 1 (chain reuse, as the engine drafts): h' = shared_head.norm(y) of the previous step
stands in for the target's hidden state, with the next token, at position i + s - 1; it attends
to the step-1 entries at positions <= i and to its own chain.

Training: teacher forcing on random windows of the train split. Labels are the target's own
distributions (self-distillation): step s at position i is trained towards the target's
distribution at position i + s (its argmax is the target's greedy token t_{i+s+1} given the
real prefix), with cross-entropy against those soft labels (= KL + constant). The unroll runs
--steps (default 2: t+2 and t+3) steps with loss weights 1, --unroll-weight, ... The block starts
as a copy of the target's last layer (--init copy-last) or random (--init random).

Evaluation on fixed validation windows: per-step top-1 agreement with the target's argmax
(t+2 and t+3) and the loss.

State in <state-dir>/mtp/ (see stage.py); export: export_family.py writes the tensors into the
target's model.safetensors as model.layers.<num_hidden_layers>.* and num_nextn_predict_layers: 1.

Fine-tuning on the target's own greedy continuations (rollouts.py), from the finished run:
--init-run mtp --train-bin <state-dir>/rollouts/train.bin --valid-bin <state-dir>/rollouts/valid.bin
(--mix-corpus f keeps that fraction of each batch on corpus text).

Usage: python3 tools/train/train_mtp.py [--tokens 5e6] [--threads 2] [--device cuda]
       python3 tools/train/train_mtp.py --run mtp-rollouts --init-run mtp --train-bin ... --valid-bin ...
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from heads import MTPModule, soft_ce, target_states  # noqa: E402
from train_lm import eval_windows  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage.add_args(ap, run="mtp", tokens=5e6, lr=5e-4, min_lr=5e-5, warmup=100, batch=16, seq_len=256,
                   eval_every=250, eval_seqs=32)
    ap.add_argument("--steps", type=int, default=2, help="unrolled drafting steps trained (1 = t+2 only)")
    ap.add_argument("--unroll-weight", type=float, default=0.5, help="loss weight of step s is this ** (s - 1)")
    ap.add_argument("--init", choices=["copy-last", "random"], default="copy-last",
                    help="a fresh module's block: a copy of the target's last layer, or random")
    stage.add_init_args(ap, "MTP module")
    stage.add_data_args(ap)
    return ap.parse_args(argv)


def mtp_losses(mtp, target, ids, steps, weight):
    """ids [B, T]. Returns the weighted loss and per step (loss, top-1 agreement with the target)."""
    hidden, t_logits = target_states(target, ids)
    t = ids.shape[1]
    outs = mtp.step_train(target.model.embed_tokens, hidden[:, :t - 1], ids[:, 1:], steps)
    total, norm, per_step = 0.0, 0.0, []
    for s, h in enumerate(outs, start=1):
        n = t - s                                       # rows with a label inside the window
        logits = target.lm_head(h[:, :n])
        labels = t_logits[:, s:]
        loss = soft_ce(logits, labels)
        agree = (logits.argmax(-1) == labels.argmax(-1)).float().mean().item()
        per_step.append((loss, agree))
        total = total + weight ** (s - 1) * loss
        norm += weight ** (s - 1)
    return total / norm, per_step


def main(argv=None):
    args = parse_args(argv)
    stage.setup(args)
    if stage.already_done(args):
        return 0
    target, target_ident = stage.frozen_target(args)
    torch.manual_seed(args.seed)
    init_state, init = stage.init_state(args, "MTP module", target_ident)
    if init_state:
        mtp = MTPModule(target.config)
        mtp.load_state_dict(init_state["model"])
    else:
        mtp = MTPModule.init_from_target(target) if args.init == "copy-last" else MTPModule(target.config)
    mtp = mtp.to(args.device)
    data = stage.TrainData(args, args.seq_len, args.seed)
    cfg = target.config
    extra = {"mtp": {"num_nextn_predict_layers": 1, "layer_index": cfg.num_hidden_layers,
                     "hidden_size": cfg.hidden_size, "steps": args.steps}}
    if init:
        extra["init"] = init
    run = stage.Run(args, mtp, data, target_ident, extra)
    windows = eval_windows(args.valid_bin, args.seq_len, args.eval_seqs)

    def step_fn():
        ids = data.batch(args.batch)[:, :-1].to(args.device)
        with stage.autocast(args):
            loss, per_step = mtp_losses(mtp, target, ids, args.steps, args.unroll_weight)
        return loss, {f"top1_t{s + 2}": a for s, (_, a) in enumerate(per_step)}

    @torch.no_grad()
    def eval_fn():
        mtp.eval()
        sums, batches = {}, 0
        for i in range(0, len(windows), 8):
            ids = windows[i:i + 8, :-1].to(args.device)
            with stage.autocast(args):
                loss, per_step = mtp_losses(mtp, target, ids, args.steps, args.unroll_weight)
            sums["val_loss"] = sums.get("val_loss", 0.0) + loss.item()
            for s, (l, a) in enumerate(per_step):
                sums[f"val_top1_t{s + 2}"] = sums.get(f"val_top1_t{s + 2}", 0.0) + a
                sums[f"val_loss_t{s + 2}"] = sums.get(f"val_loss_t{s + 2}", 0.0) + l.item()
            batches += 1
        return {k: v / batches for k, v in sums.items()}

    run.loop(step_fn, eval_fn, args.batch * args.seq_len)
    return 0


if __name__ == "__main__":
    sys.exit(main())
