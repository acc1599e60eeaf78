#!/usr/bin/env python3
"""Stage 4b: distil the pre-trained draft on the frozen target's logits.

Starts from the newest checkpoint of the finished draft run (train_lm.py --preset draft) and
minimises KL(target || draft) at temperature --temperature (default 1; scaled by T^2),
optionally mixed with the cross-entropy on the real next token (--ce-weight w:
loss = (1 - w) KL + w CE), on random windows of the train split with teacher forcing.

Evaluation on fixed validation windows: KL, the draft's loss on the real tokens (nats/token,
comparable to train_lm.py's val_loss) and greedy top-1 agreement with the target (fraction of
positions where both argmaxes agree).

State in <state-dir>/draft-distill/ (see stage.py); the checkpoints have train_lm.py's format,
so `export.py --run draft-distill` exports the distilled draft.

Usage: python3 tools/train/distill_draft.py [--tokens 10e6] [--threads 2] [--device cuda]
       on the target's own continuations (rollouts.py), from the distilled draft:
       python3 tools/train/distill_draft.py --run draft-rollouts --draft-run draft-distill \
           --train-bin <state-dir>/rollouts/train.bin --valid-bin <state-dir>/rollouts/valid.bin \
           --mix-corpus 0.25 --tokens 3.5e6
       trial on an unfinished run: --target-ckpt PATH --draft-ckpt PATH --state-dir /tmp/x
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from model import load_checkpoint_model  # noqa: E402
from train_lm import eval_windows  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage.add_args(ap, run="draft-distill", tokens=10e6, lr=3e-4, min_lr=3e-5, warmup=50, batch=16, seq_len=256,
                   eval_every=250, eval_seqs=128)  # the same validation windows as train_lm.py
    ap.add_argument("--draft-run", default="draft", help="pre-training run of the draft (default draft)")
    ap.add_argument("--draft-ckpt", help="a draft checkpoint; default: the newest of a finished --draft-run")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--ce-weight", type=float, default=0.0, help="weight of the hard-label cross-entropy")
    stage.add_data_args(ap)
    return ap.parse_args(argv)


def distill_loss(d_logits, t_logits, labels, args):
    tau = args.temperature
    d = d_logits.float().reshape(-1, d_logits.size(-1))
    t = t_logits.float().reshape(-1, t_logits.size(-1))
    t_log = F.log_softmax(t / tau, -1)
    kl = (t_log.exp() * (t_log - F.log_softmax(d / tau, -1))).sum(-1).mean() * tau * tau
    ce = F.cross_entropy(d, labels.reshape(-1))
    agree = (d.argmax(-1) == t.argmax(-1)).float().mean()
    loss = kl if args.ce_weight == 0 else (1 - args.ce_weight) * kl + args.ce_weight * ce
    return loss, {"kl": kl.item(), "ce": ce.item(), "agree": agree.item()}


def main(argv=None):
    args = parse_args(argv)
    stage.setup(args)
    if stage.already_done(args):
        return 0
    target, target_ident = stage.frozen_target(args)
    init_path, init_state, init = stage.load_init(args.state_dir, args.draft_run, args.draft_ckpt, "draft")
    draft = load_checkpoint_model(init_path).to(args.device)
    if draft.config.vocab_size != target.config.vocab_size:
        sys.exit("draft and target vocabularies differ")
    data = stage.TrainData(args, args.seq_len, args.seed)
    extra = {"model_config": init_state["model_config"], "init": init}
    run = stage.Run(args, draft, data, target_ident, extra)
    windows = eval_windows(args.valid_bin, args.seq_len, args.eval_seqs)

    def step_fn():
        batch = data.batch(args.batch).to(args.device)
        x, y = batch[:, :-1], batch[:, 1:]
        with stage.autocast(args):
            with torch.no_grad():
                t_logits = target(input_ids=x).logits
            d_logits = draft(input_ids=x).logits
        return distill_loss(d_logits, t_logits, y, args)

    @torch.no_grad()
    def eval_fn():
        draft.eval()
        sums, n = {}, 0
        for i in range(0, len(windows), 8):
            b = windows[i:i + 8].to(args.device)
            x, y = b[:, :-1], b[:, 1:]
            with stage.autocast(args):
                t_logits = target(input_ids=x).logits
                d_logits = draft(input_ids=x).logits
            _, m = distill_loss(d_logits, t_logits, y, args)
            m["target_ce"] = F.cross_entropy(t_logits.float().reshape(-1, t_logits.size(-1)), y.reshape(-1)).item()
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v * y.numel()
            n += y.numel()
        return {"val_kl": sums["kl"] / n, "val_loss": sums["ce"] / n, "val_agree_top1": sums["agree"] / n,
                "target_val_loss": sums["target_ce"] / n, "val_tokens": n}

    run.loop(step_fn, eval_fn, args.batch * args.seq_len)
    return 0


if __name__ == "__main__":
    sys.exit(main())
