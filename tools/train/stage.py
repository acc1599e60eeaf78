"""Shared machinery of the stages that train on top of the frozen target
(distill_draft.py, train_medusa.py, train_mtp.py).

Each stage keeps its state in <state-dir>/<run>/ exactly like train_lm.py: `ckpt-<step>.pt`
(trained module, optimizer, step, tokens, data and RNG states, the identity of the frozen
target it was trained against; every --ckpt-minutes, on SIGTERM/SIGINT and at the end, the two
newest kept), `log.jsonl` (kind "train" and kind "eval"), `done.json` when the token budget is
reached. Re-running the same command resumes; a finished stage returns at once.

The frozen target is the newest checkpoint of <state-dir>/<target-run>/ and must be finished
(done.json) unless --target-ckpt names a checkpoint explicitly (for trials on an unfinished run).
A stage refuses to resume against a different target checkpoint than it started with.
"""
import json
import math
import os
import signal
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import load_checkpoint_model  # noqa: E402
from train_lm import Data, autocast, checkpoints, log, lr_at, make_optimizer  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = os.path.join(HERE, "work", "tokens")
TRAIN_BIN = os.path.join(TOKENS, "train.bin")
VALID_BIN = os.path.join(TOKENS, "valid.bin")

# The runs the shipped family comes from (acceptance_report.py and export_family.py default to them):
# the draft, the MTP module and the Medusa heads as fine-tuned on the target's own continuations.
SHIPPED_RUNS = [("target", "target"), ("draft", "draft-rollouts"), ("medusa", "medusa-rollouts"),
                ("mtp", "mtp-rollouts")]


def add_args(ap, *, run, tokens, lr, min_lr, warmup, batch, seq_len, eval_every=100, eval_seqs=32):
    ap.add_argument("--run", default=run, help=f"run name (state sub-directory); default {run}")
    ap.add_argument("--state-dir", default="/root/specserve-train")
    ap.add_argument("--target-run", default="target", help="run of the frozen target (default target)")
    ap.add_argument("--target-ckpt", help="a target checkpoint file; default: the newest of a finished --target-run")
    ap.add_argument("--tokens", type=float, default=tokens, help="token budget of this stage")
    ap.add_argument("--seq-len", type=int, default=seq_len)
    ap.add_argument("--batch", type=int, default=batch, help="sequences per optimizer step")
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--min-lr", type=float, default=min_lr)
    ap.add_argument("--warmup-steps", type=int, default=warmup)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16",
                    help="bf16 = autocast matmuls in bfloat16; trained weights and optimizer stay fp32")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=eval_every)
    ap.add_argument("--eval-seqs", type=int, default=eval_seqs, help="fixed validation sequences")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop (with a checkpoint) after this many steps of this invocation; 0 = until the budget")


def add_data_args(ap):
    """--train-bin, --valid-bin, --mix-corpus: train on other ids than the corpus (rollouts.py's continuations)."""
    ap.add_argument("--train-bin", default=TRAIN_BIN,
                    help="training ids (default the corpus' train split; rollouts.py writes the target's own text)")
    ap.add_argument("--valid-bin", default=VALID_BIN, help="validation ids (default the corpus' valid split)")
    ap.add_argument("--mix-corpus", type=float, default=0.0,
                    help="with --train-bin: this fraction of each batch's sequences comes from the corpus' train split")


def add_init_args(ap, what):
    ap.add_argument("--init-run", help=f"start from the newest checkpoint of this finished run of the {what} "
                                       "(fine-tuning, e.g. on rollouts); default: a fresh module")
    ap.add_argument("--init-ckpt", help=f"start from this checkpoint of the {what}")


class TrainData:
    """Random windows of --train-bin; with --mix-corpus, that fraction of each batch comes from the corpus'
    train split. `gen` and `tokens` are those of --train-bin (what Run checkpoints and records)."""

    def __init__(self, args, seq_len, seed):
        self.main = Data(args.train_bin, seq_len, seed)
        self.corpus = Data(TRAIN_BIN, seq_len, seed + 1) if args.mix_corpus > 0 else None
        self.mix = args.mix_corpus
        self.gen, self.tokens = self.main.gen, self.main.tokens

    def batch(self, n):
        k = round(n * self.mix) if self.corpus else 0
        rows = self.main.batch(n - k)
        return torch.cat([rows, self.corpus.batch(k)]) if k else rows


def load_init(state_dir, run, ckpt, what):
    """(path, state, `init` record) of the checkpoint a stage starts from: `ckpt`, or the newest of a finished run."""
    path = newest_finished(state_dir, run, ckpt, what=what)
    state = torch.load(path, map_location="cpu", weights_only=False)
    record = {"path": os.path.abspath(path), "step": state["step"], "tokens_seen": state["tokens_seen"],
              "elapsed_s": state["elapsed_s"]}
    return path, state, record


def init_state(args, what, target_ident):
    """The state and `init` record named by --init-run/--init-ckpt, or (None, None) without either.
    A checkpoint trained against another target than `target_ident` is refused."""
    if not (args.init_run or args.init_ckpt):
        return None, None
    path, state, record = load_init(args.state_dir, args.init_run, args.init_ckpt, what)
    if not same_model(state["target"], target_ident):
        sys.exit(f"{path} was trained against target {state['target']}, not {target_ident}")
    return state, record


def setup(args):
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    for p in (TRAIN_BIN, VALID_BIN):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing; run corpus.py and train_tokenizer.py first")


def already_done(args):
    """True (with a message) when <state-dir>/<run>/done.json exists: the stage has nothing left to do."""
    path = os.path.join(args.state_dir, args.run, "done.json")
    if os.path.exists(path):
        print(f"{os.path.dirname(path)} is finished (done.json); nothing to do")
        return True
    return False


def newest_finished(state_dir, run, explicit=None, what="target"):
    """The checkpoint to use as a frozen input: `explicit`, or the newest of a finished run."""
    if explicit:
        if not os.path.exists(explicit):
            sys.exit(f"{what} checkpoint {explicit} does not exist")
        return explicit
    run_dir = os.path.join(state_dir, run)
    found = checkpoints(run_dir) if os.path.isdir(run_dir) else []
    if not found:
        sys.exit(f"no {what} checkpoint in {run_dir}; train it first")
    if not os.path.exists(os.path.join(run_dir, "done.json")):
        sys.exit(f"{what} run {run_dir} is not finished (no done.json); finish it, or pass a checkpoint "
                 f"explicitly to try this stage on an unfinished {what}")
    return found[-1]


def identity(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    return {"path": os.path.abspath(path), "step": state["step"], "tokens_seen": state["tokens_seen"]}


def frozen_target(args):
    """The target as a frozen, eval-mode LlamaForCausalLM on args.device, and its identity."""
    path = newest_finished(args.state_dir, args.target_run, args.target_ckpt)
    model = load_checkpoint_model(path).to(args.device).eval()
    model.requires_grad_(False)
    return model, identity(path)


def same_model(a, b):
    return a["step"] == b["step"] and a["tokens_seen"] == b["tokens_seen"]


class Run:
    """Optimizer, data position, checkpoints and logs of one resumable stage."""

    def __init__(self, args, module, data, target_ident, extra=None):
        self.args, self.module, self.data = args, module, data
        self.dir = os.path.join(args.state_dir, args.run)
        self.target = target_ident
        self.extra = extra or {}
        self.opt = make_optimizer(module, args)
        self.step, self.tokens_seen, self.elapsed = 0, 0, 0.0
        os.makedirs(self.dir, exist_ok=True)
        found = checkpoints(self.dir)
        if found:
            state = torch.load(found[-1], map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
            if not same_model(state["target"], target_ident):
                sys.exit(f"{found[-1]} was trained against target {state['target']}, not {target_ident}; "
                         f"remove {self.dir} or use another --run")
            module.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            data.gen.set_state(state["data_rng"])
            torch.set_rng_state(state["torch_rng"])
            self.step, self.tokens_seen, self.elapsed = state["step"], state["tokens_seen"], state["elapsed_s"]
            print(f"resumed from {found[-1]} at step {self.step} ({self.tokens_seen:,} tokens)", flush=True)

    def save(self):
        path = os.path.join(self.dir, f"ckpt-{self.step:07d}.pt")
        state = {
            "model": self.module.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
            "tokens_seen": self.tokens_seen, "elapsed_s": self.elapsed, "data_rng": self.data.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "args": vars(self.args), "torch_version": torch.__version__,
            "target": self.target, "train_tokens_total": int(len(self.data.tokens)), **self.extra,
        }
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)
        for old in checkpoints(self.dir)[:-2]:
            os.remove(old)
        return path

    def loop(self, step_fn, eval_fn, tokens_per_step):
        """step_fn() -> (loss, metrics dict) on a fresh batch; eval_fn() -> metrics dict on validation."""
        args = self.args
        total_steps = math.ceil(args.tokens / tokens_per_step)
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump({"args": vars(args), "target": self.target, "total_steps": total_steps,
                       **{k: v for k, v in self.extra.items() if isinstance(v, (dict, int, float, str))}}, f, indent=1)
        stop = {"signal": None}

        def on_signal(signum, _frame):
            stop["signal"] = signum

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def run_eval():
            t0 = time.time()
            metrics = eval_fn()
            log(self.dir, {"kind": "eval", "step": self.step, "tokens": self.tokens_seen,
                           **{k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()},
                           "eval_s": round(time.time() - t0, 1), "time": time.time()})
            shown = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            print(f"eval step {self.step}: {shown}", flush=True)

        print(f"run {args.run}: {total_steps} steps of {tokens_per_step} tokens ({args.tokens:,.0f} tokens), "
              f"precision {args.precision}, {args.threads} threads, device {args.device}", flush=True)
        if self.step == 0:
            run_eval()
        self.module.train()
        last_ckpt = time.time()
        acc, acc_n, t_int = {}, 0, time.time()
        started = self.step
        while self.step < total_steps:
            lr = lr_at(self.step, total_steps, args)
            for group in self.opt.param_groups:
                group["lr"] = lr
            t0 = time.time()
            loss, metrics = step_fn()
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), args.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.elapsed += time.time() - t0
            self.step += 1
            self.tokens_seen += tokens_per_step
            for k, v in {"loss": loss.item(), **metrics}.items():
                acc[k] = acc.get(k, 0.0) + float(v)
            acc_n += 1
            if self.step % args.log_every == 0 or self.step == total_steps:
                dt = time.time() - t_int
                tps = acc_n * tokens_per_step / dt
                eta = (total_steps - self.step) * tokens_per_step / tps
                means = {k: round(v / acc_n, 5) for k, v in acc.items()}
                log(self.dir, {"kind": "train", "step": self.step, "tokens": self.tokens_seen, **means, "lr": lr,
                               "tokens_per_s": round(tps, 1), "eta_s": round(eta), "time": time.time()})
                shown = " ".join(f"{k} {v:.4f}" for k, v in means.items())
                print(f"step {self.step}/{total_steps} {shown} lr {lr:.2e} {tps:,.0f} tok/s eta {eta / 3600:.1f} h",
                      flush=True)
                acc, acc_n, t_int = {}, 0, time.time()
            if self.step % args.eval_every == 0 or self.step == total_steps:
                run_eval()
                self.module.train()
            finished = self.step == total_steps
            limit = args.max_steps and self.step - started >= args.max_steps
            due = time.time() - last_ckpt >= args.ckpt_minutes * 60
            if finished or limit or due or stop["signal"]:
                print(f"checkpoint {self.save()}", flush=True)
                last_ckpt = time.time()
            if stop["signal"]:
                print(f"stopping on signal {stop['signal']} at step {self.step}", flush=True)
                return False
            if limit:
                return False
        with open(os.path.join(self.dir, "done.json"), "w") as f:
            json.dump({"step": self.step, "tokens": self.tokens_seen, "train_seconds": round(self.elapsed)}, f)
        print(f"done: {self.tokens_seen:,} tokens in {self.elapsed / 3600:.2f} h of training", flush=True)
        return True
