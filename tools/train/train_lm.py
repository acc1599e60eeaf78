#!/usr/bin/env python3
"""Stage 3: pre-train a LLaMA language model on the encoded corpus.

Trains the target (`--preset target`) or the draft (`--preset draft`) from
scratch with AdamW, linear warmup and cosine decay over a planned token budget.
Random windows of `--seq-len + 1` tokens are drawn from the train split with a
dedicated, checkpointed random generator.

State lives in <state-dir>/<run>/ (default /root/specserve-train/<preset>/):
  ckpt-<step>.pt   model, optimizer, step, tokens, data generator and RNG states
                   (written every --ckpt-minutes, on SIGTERM/SIGINT and at the end;
                   the two newest are kept)
  log.jsonl        one JSON object per line: kind "train" (loss, lr, tokens/s) and
                   kind "eval" (validation loss per token on a fixed subset)
  done.json        written when the budget is reached
Starting the same command again resumes from the newest checkpoint.

Usage: python3 tools/train/train_lm.py --preset target [--tokens 30e6] [--threads 2]
"""
import argparse
import glob
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import build_model, config_summary, config_from_summary, count_params, make_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = os.path.join(HERE, "work", "tokens")
MANIFEST = os.path.join(HERE, "corpus_manifest.json")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["target", "draft"], default="target")
    ap.add_argument("--run", help="run name (state sub-directory); default: the preset")
    ap.add_argument("--state-dir", default="/root/specserve-train")
    ap.add_argument("--tokens", type=float, default=30e6, help="planned training token budget")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16, help="sequences per optimizer step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16",
                    help="bf16 = autocast matmuls in bfloat16, weights and optimizer stay fp32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--log-every", type=int, default=10, help="steps between train log lines")
    ap.add_argument("--eval-every", type=int, default=250, help="steps between validation evaluations")
    ap.add_argument("--eval-seqs", type=int, default=128, help="fixed validation windows (of --seq-len)")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--max-steps", type=int, default=0, help="stop (with a checkpoint) after this many steps "
                                                             "in this invocation; 0 = until the budget")
    ap.add_argument("--benchmark", type=int, default=0,
                    help="time this many steps in fp32 and bf16 on the real model and exit (no state written)")
    # Architecture overrides (default: the preset's).
    for name in ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size"]:
        ap.add_argument("--" + name.replace("_", "-"), type=int, dest=name)
    return ap.parse_args(argv)


class Data:
    """Random windows from a uint16 token file; position is the generator's state."""

    def __init__(self, path, seq_len, seed):
        self.tokens = np.memmap(path, dtype=np.uint16, mode="r")
        self.seq_len = seq_len
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self, n):
        hi = len(self.tokens) - self.seq_len - 1
        starts = torch.randint(0, hi, (n,), generator=self.gen).tolist()
        rows = [np.asarray(self.tokens[s:s + self.seq_len + 1], dtype=np.int64) for s in starts]
        return torch.from_numpy(np.stack(rows))


def eval_windows(path, seq_len, count):
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    total = (len(tokens) - 1) // seq_len
    count = min(count, total)
    picks = np.linspace(0, total - 1, count).astype(np.int64)
    rows = [np.asarray(tokens[i * seq_len:i * seq_len + seq_len + 1], dtype=np.int64) for i in picks]
    return torch.from_numpy(np.stack(rows))


def lr_at(step, total_steps, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


def autocast(args):
    if args.precision == "bf16":
        return torch.autocast(device_type=args.device, dtype=torch.bfloat16)
    return torch.autocast(device_type=args.device, enabled=False)


def loss_of(model, batch, args):
    x, y = batch[:, :-1], batch[:, 1:]
    with autocast(args):
        logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


@torch.no_grad()
def evaluate(model, windows, args, chunk=16):
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), chunk):
        b = windows[i:i + chunk].to(args.device)
        n = b[:, 1:].numel()
        total += loss_of(model, b, args).item() * n
        count += n
    model.train()
    return total / count


def make_optimizer(model, args):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                             fused=False, foreach=True)


def checkpoints(run_dir):
    found = glob.glob(os.path.join(run_dir, "ckpt-*.pt"))
    return sorted(found, key=lambda p: int(os.path.basename(p)[5:-3]))


def save_checkpoint(run_dir, model, opt, data, step, tokens_seen, elapsed, args, mcfg):
    path = os.path.join(run_dir, f"ckpt-{step:07d}.pt")
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "tokens_seen": tokens_seen,
        "elapsed_s": elapsed,
        "data_rng": data.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "model_config": mcfg,
        "args": vars(args),
        "torch_version": torch.__version__,
        "train_tokens_total": int(len(data.tokens)),
    }
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in checkpoints(run_dir)[:-2]:
        os.remove(old)
    return path


def log(run_dir, record):
    with open(os.path.join(run_dir, "log.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


def bytes_per_token(split):
    try:
        with open(MANIFEST) as f:
            return json.load(f)["splits"][split]["bytes_per_token"]
    except (OSError, KeyError):
        return None


def benchmark(args, model, data):
    """Time optimizer steps in fp32 and bf16, alternating step by step so both see the same machine load."""
    import copy
    runs = {}
    for precision in ["fp32", "bf16"]:
        m = copy.deepcopy(model)
        runs[precision] = {"model": m, "opt": make_optimizer(m, args), "times": []}
    for i in range(args.benchmark + 1):
        batch = data.batch(args.batch).to(args.device)
        for precision, r in runs.items():
            args.precision = precision
            t0 = time.time()
            loss = loss_of(r["model"], batch, args)
            loss.backward()
            r["opt"].step()
            r["opt"].zero_grad(set_to_none=True)
            if i:  # the first step warms up kernels
                r["times"].append(time.time() - t0)
            r["loss"] = loss.item()
    tps = {}
    for precision, r in runs.items():
        tps[precision] = args.batch * args.seq_len / (sum(r["times"]) / len(r["times"]))
        print(f"benchmark {precision}: {tps[precision]:,.0f} tokens/s ({len(r['times'])} steps, batch "
              f"{args.batch}x{args.seq_len}, {args.threads} threads), last loss {r['loss']:.3f}", flush=True)
    print(f"benchmark: bf16/fp32 = {tps['bf16'] / tps['fp32']:.2f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    run = args.run or args.preset
    run_dir = os.path.join(args.state_dir, run)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("train_lm: --device cuda requested but CUDA is not available")

    overrides = {k: getattr(args, k) for k in ["hidden_size", "num_hidden_layers", "num_attention_heads",
                                              "num_key_value_heads", "intermediate_size"]}
    mcfg = config_summary(make_config(args.preset, **overrides))

    train_path = os.path.join(TOKENS, "train.bin")
    valid_path = os.path.join(TOKENS, "valid.bin")
    for p in (train_path, valid_path):
        if not os.path.exists(p):
            sys.exit(f"train_lm: {p} is missing; run corpus.py and train_tokenizer.py first")

    torch.manual_seed(args.seed)
    model = build_model(config_from_summary(mcfg)).to(args.device)
    data = Data(train_path, args.seq_len, args.seed)

    if args.benchmark:
        benchmark(args, model, data)
        return 0

    os.makedirs(run_dir, exist_ok=True)
    opt = make_optimizer(model, args)
    tokens_per_step = args.batch * args.seq_len
    total_steps = math.ceil(args.tokens / tokens_per_step)
    step, tokens_seen, elapsed = 0, 0, 0.0

    existing = checkpoints(run_dir)
    if existing:
        state = torch.load(existing[-1], map_location="cpu", weights_only=False)
        if state["model_config"] != mcfg:
            sys.exit(f"train_lm: {existing[-1]} holds a different architecture {state['model_config']} "
                     f"than requested {mcfg}; use another --run")
        if state.get("train_tokens_total", len(data.tokens)) != len(data.tokens):
            sys.exit(f"train_lm: {train_path} holds {len(data.tokens):,} tokens but the run started on "
                     f"{state['train_tokens_total']:,}; rebuild the corpus and tokens as they were")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        data.gen.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        step, tokens_seen, elapsed = state["step"], state["tokens_seen"], state["elapsed_s"]
        print(f"resumed from {existing[-1]} at step {step} ({tokens_seen:,} tokens)", flush=True)
    else:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump({"model_config": mcfg, "args": vars(args), "params": count_params(model)}, f, indent=1)
    print(f"run {run}: {count_params(model):,} parameters, {total_steps} steps of {tokens_per_step} tokens "
          f"({args.tokens:,.0f} tokens), precision {args.precision}, {args.threads} threads, device {args.device}",
          flush=True)
    if args.compile:
        model = torch.compile(model)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    windows = eval_windows(valid_path, args.seq_len, args.eval_seqs)
    bpt = bytes_per_token("valid")
    raw = getattr(model, "_orig_mod", model)

    def run_eval():
        val = evaluate(model, windows, args)
        rec = {"kind": "eval", "step": step, "tokens": tokens_seen, "val_loss": round(val, 5),
               "val_tokens": int(windows[:, 1:].numel()), "time": time.time()}
        if bpt:
            rec["val_bits_per_byte"] = round(val / math.log(2) / bpt, 5)
        log(run_dir, rec)
        print(f"eval step {step}: validation loss {val:.4f} nats/token", flush=True)

    if step == 0:
        run_eval()
    model.train()
    last_ckpt = time.time()
    interval_loss, interval_steps, interval_t0 = 0.0, 0, time.time()
    started_step = step
    while step < total_steps:
        lr = lr_at(step, total_steps, args)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = data.batch(args.batch).to(args.device)
        t0 = time.time()
        loss = loss_of(model, batch, args)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed += time.time() - t0
        step += 1
        tokens_seen += tokens_per_step
        interval_loss += loss.item()
        interval_steps += 1

        if step % args.log_every == 0 or step == total_steps:
            dt = time.time() - interval_t0
            tps = interval_steps * tokens_per_step / dt
            eta = (total_steps - step) * tokens_per_step / tps
            log(run_dir, {"kind": "train", "step": step, "tokens": tokens_seen,
                          "loss": round(interval_loss / interval_steps, 5), "lr": lr,
                          "tokens_per_s": round(tps, 1), "eta_s": round(eta), "time": time.time()})
            print(f"step {step}/{total_steps} loss {interval_loss / interval_steps:.4f} lr {lr:.2e} "
                  f"{tps:,.0f} tok/s eta {eta / 3600:.1f} h", flush=True)
            interval_loss, interval_steps, interval_t0 = 0.0, 0, time.time()
        if step % args.eval_every == 0 or step == total_steps:
            run_eval()
        finished = step == total_steps
        limit = args.max_steps and step - started_step >= args.max_steps
        due = time.time() - last_ckpt >= args.ckpt_minutes * 60
        if finished or limit or due or stop["signal"]:
            path = save_checkpoint(run_dir, raw, opt, data, step, tokens_seen, elapsed, args, mcfg)
            last_ckpt = time.time()
            print(f"checkpoint {path}", flush=True)
        if stop["signal"]:
            print(f"stopping on signal {stop['signal']} at step {step}", flush=True)
            return 0
        if limit:
            return 0

    with open(os.path.join(run_dir, "done.json"), "w") as f:
        json.dump({"step": step, "tokens": tokens_seen, "train_seconds": round(elapsed)}, f)
    print(f"done: {tokens_seen:,} tokens in {elapsed / 3600:.2f} h of training", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
