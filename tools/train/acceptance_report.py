#!/usr/bin/env python3
"""Stage 7: offline acceptance report of the draft, the Medusa heads and the MTP module.

Simulates greedy speculative decoding in PyTorch, float32 compute on weights rounded to the
export storage dtype (--dtype, bf16 by default), as the engine sees them.

Protocol (recorded in the JSON):
  * --samples validation prompts of --prefix tokens each, from tools/train/work/tokens/valid.bin at
    evenly spaced offsets, each moved forward until it holds no <|endoftext|> (a prompt inside one file);
  * the target continues every prompt greedily for --gen tokens (KV cache) -> cont;
  * speculation is measured at the starts j in --starts: context = prompt + cont[:j], whose greedy
    continuation is cont[j:] by construction. A method proposes a chain of k tokens; accepted = the
    longest prefix that matches the target's greedy tokens; tokens per target forward ("acceptance
    length") = accepted + 1 (the target's own token).
  * draft: its greedy chain from the context proposes cont[j..j+k-1], k = 1..--k-max.
  * MTP: the module runs over the context (step 1 at every position i with h_i and t_{i+1}, cont[j]
    being the pending token at the last one) and is then reused for the chain (h', drafted token,
    next position) -> proposals for cont[j+1..]; acceptance for k = 1..--k-max.
  * Medusa: at every continuation row (the target's post-norm hidden state at the position that produced
    cont[a]) head h is scored against cont[a + 1 + h]: top-1, top-5; the top-1 chain's acceptance length,
    and a tree of --tree-nodes rank paths chosen by frequency on even rows, scored on odd rows.
  * teacher-forced figures on the real prompt text: draft top-1 agreement with the target's argmax and
    MTP t+2 agreement.

Outputs <out>.json (figures, protocol, input checkpoints, prompt ids and greedy continuations so the
engine can replay them) and <out>.md (tables for the model cards). Skipped when <out>.json exists
for the same input checkpoints (--force to redo). Missing stages are reported as absent.

Usage: python3 tools/train/acceptance_report.py [--out /root/specserve-train/report/acceptance]
"""
import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from heads import MTPCache, MTPModule, MedusaHeads, greedy_continue  # noqa: E402
from model import load_checkpoint_model  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", default="/root/specserve-train")
    ap.add_argument("--out", help="output path without extension; default <state-dir>/report/acceptance")
    for name, run in stage.SHIPPED_RUNS:
        ap.add_argument(f"--{name}-run", default=run)
        ap.add_argument(f"--{name}-ckpt", help=f"a {name} checkpoint; default: the newest of a finished run")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--prefix", type=int, default=128)
    ap.add_argument("--gen", type=int, default=40)
    ap.add_argument("--starts", default="0,8,16,24")
    ap.add_argument("--k-max", type=int, default=8)
    ap.add_argument("--tree-nodes", type=int, default=16)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--force", action="store_true")
    return ap.parse_args(argv)


def rounded(module, dtype):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return module.eval()


def prompts(count, length):
    tokens = np.memmap(stage.VALID_BIN, dtype=np.uint16, mode="r")
    out, offsets = [], []
    for s in np.linspace(0, len(tokens) - 4 * length, count).astype(np.int64):
        while True:
            w = np.asarray(tokens[s:s + length], dtype=np.int64)
            eot = np.flatnonzero(w == 0)
            if len(eot) == 0:
                break
            s += int(eot[-1]) + 1
        out.append(w)
        offsets.append(int(s))
    return torch.from_numpy(np.stack(out)), offsets


def chunks(n, size):
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def matched(proposal, truth):
    """Length of the longest common prefix per row: proposal/truth [B, k]."""
    eq = (proposal == truth).int()
    return eq.cumprod(1).sum(1)


def acceptance_table(m, k_max):
    m = torch.as_tensor(m)
    return {"k": list(range(1, k_max + 1)),
            "p_accept_at_least": [round((m >= k).float().mean().item(), 4) for k in range(1, k_max + 1)],
            "mean_acceptance_length": [round((m.clamp(max=k) + 1).float().mean().item(), 4)
                                       for k in range(1, k_max + 1)],
            "chains": int(m.numel())}


def locate(args, name):
    explicit = getattr(args, f"{name}_ckpt")
    run_dir = os.path.join(args.state_dir, getattr(args, f"{name}_run"))
    if not explicit and not os.path.exists(os.path.join(run_dir, "done.json")):
        if name == "target":
            sys.exit(f"target run {run_dir} is not finished; pass --target-ckpt to report on a checkpoint")
        return None
    return stage.newest_finished(args.state_dir, getattr(args, f"{name}_run"), explicit, what=name)


@torch.no_grad()
def run_draft(draft, seq, cont, starts, args, tf_target_argmax):
    p = args.prefix
    ms = []
    for j in starts:
        for sl in chunks(len(seq), args.batch):
            proposal, _, _ = greedy_continue(draft, seq[sl, :p + j], args.k_max)
            ms.append(matched(proposal, cont[sl, j:j + args.k_max]))
    m = torch.cat(ms)
    agree_tf, agree_cont = [], []
    for sl in chunks(len(seq), args.batch):
        d_arg = draft(input_ids=seq[sl]).logits.argmax(-1)
        agree_tf.append((d_arg[:, :p - 1] == tf_target_argmax[sl, :p - 1]).float().flatten())
        agree_cont.append((d_arg[:, p - 1:-1] == cont[sl]).float().flatten())
    return {"chain": acceptance_table(m, args.k_max),
            "top1_agreement_teacher_forced": round(torch.cat(agree_tf).mean().item(), 4),
            "top1_agreement_on_greedy_continuation": round(torch.cat(agree_cont).mean().item(), 4)}


def best_tree(rank_rows, nodes):
    """The `nodes` rank paths (tuples) most often fully matched, i.e. prefixes of the rows' rank vectors."""
    counts = Counter()
    for ranks in rank_rows:
        for d in range(1, len(ranks) + 1):
            if ranks[d - 1] < 0:
                break
            counts[tuple(ranks[:d])] += 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))
    return sorted([list(path) for path, _ in ordered[:nodes]], key=lambda p: (len(p), p))


def tree_depth(ranks, tree):
    d = 0
    while d < len(ranks) and ranks[d] >= 0 and tuple(ranks[:d + 1]) in tree:
        d += 1
    return d


@torch.no_grad()
def run_medusa(heads, target, hidden, cont, args, top=10):
    p, g = args.prefix, args.gen
    rows = hidden[:, p - 1:p - 1 + g]                          # row a produced cont[:, a]
    n_heads = len(heads)
    valid = g - n_heads                                        # rows where every head's token is known
    ranks = torch.full((len(cont), valid, n_heads), -1, dtype=torch.long)
    per_head = []
    for h in range(n_heads):
        states = heads[h](rows[:, :g - 1 - h])
        top_ids = target.lm_head(states).topk(top, -1).indices
        labels = cont[:, 1 + h:]
        hit = top_ids == labels[..., None]
        per_head.append({"head": h, "predicts": f"t+{h + 2}",
                         "top1": round(hit[..., 0].float().mean().item(), 4),
                         "top5": round(hit[..., :5].any(-1).float().mean().item(), 4),
                         # P(the rank-r token is the target's), r = 0..top-1: the engine sizes its tree with these.
                         "rank_accuracy": [round(hit[..., r].float().mean().item(), 4) for r in range(top)],
                         "positions": int(labels.numel())})
        r = torch.where(hit.any(-1), hit.float().argmax(-1), torch.full_like(labels, -1))
        ranks[:, :, h] = r[:, :valid]
    flat = ranks.reshape(-1, n_heads).tolist()
    chain = torch.tensor([tree_depth(r, {tuple([0] * d) for d in range(1, n_heads + 1)}) for r in flat])
    tree = best_tree(flat[0::2], args.tree_nodes)
    tree_set = {tuple(t) for t in tree}
    depth = torch.tensor([tree_depth(r, tree_set) for r in flat[1::2]], dtype=torch.float)
    return {"heads": per_head,
            "top1_chain": acceptance_table(chain, n_heads),
            "tree": {"nodes": len(tree), "choices": tree, "mean_acceptance_length": round(1 + depth.mean().item(), 4),
                     "chosen_on": "even rows", "scored_on": f"odd rows ({len(depth)})"}}


@torch.no_grad()
def run_mtp(mtp, target, seq, hidden, cont, tf_target_argmax, starts, args):
    p = args.prefix
    embed = target.model.embed_tokens
    ms, step1_tf = [], []
    for j in starts:
        for sl in chunks(len(seq), args.batch):
            n = p + j                                           # context length; cont[j] is pending
            b = seq[sl].shape[0]
            cache = MTPCache(mtp)
            pos = torch.arange(n, device=seq.device)[None].expand(b, n)
            h = cache.run(embed, hidden[sl, :n], seq[sl, 1:n + 1], pos)
            if j == starts[0]:
                tf = target.lm_head(h[:, :p - 1]).argmax(-1)      # rows i <= p - 2 read real tokens t_{i+1}
                step1_tf.append((tf == tf_target_argmax[sl, 1:p]).float().flatten())
            h = h[:, -1:]
            drafted = []
            for s in range(args.k_max):
                tok = target.lm_head(h)[:, -1].argmax(-1)
                drafted.append(tok)
                if s + 1 < args.k_max:
                    h = cache.run(embed, h, tok[:, None], torch.full((b, 1), n + s, device=seq.device))
            ms.append(matched(torch.stack(drafted, 1), cont[sl, j + 1:j + 1 + args.k_max]))
    m = torch.cat(ms)
    return {"chain": acceptance_table(m, args.k_max),
            "top1_t2": round((m >= 1).float().mean().item(), 4),
            "top1_t3_given_t2": round(((m >= 2).float().sum() / (m >= 1).float().sum().clamp(min=1)).item(), 4),
            "top1_t2_teacher_forced": round(torch.cat(step1_tf).mean().item(), 4)}


def markdown(rep, parts=("draft", "mtp", "medusa")):
    """Tables of the report; `parts` picks the methods shown."""
    lines = [f"Offline greedy speculation on {rep['protocol']['samples']} validation prompts of "
             f"{rep['protocol']['prefix']} tokens, measured at {len(rep['protocol']['starts'])} points of the target's "
             f"greedy continuation each (PyTorch, float32 on {rep['protocol']['dtype']}-rounded weights; "
             f"`tools/train/acceptance_report.py`). Acceptance length = tokens per target forward = accepted + 1.", ""]
    for name, key in [("Draft model chain", "draft"), ("MTP module reused as a chain", "mtp")]:
        if rep.get(key) and key in parts:
            c = rep[key]["chain"]
            lines += [f"**{name}** ({c['chains']} chains)", "", "| k | " + " | ".join(map(str, c["k"])) + " |",
                      "|---|" + "---|" * len(c["k"]),
                      "| P(accepted ≥ k) | " + " | ".join(f"{v:.3f}" for v in c["p_accept_at_least"]) + " |",
                      "| mean acceptance length | " + " | ".join(f"{v:.2f}" for v in c["mean_acceptance_length"]) + " |",
                      ""]
    if rep.get("draft") and "draft" in parts:
        d = rep["draft"]
        lines += [f"Draft top-1 agreement with the target: {d['top1_agreement_teacher_forced']:.3f} on validation text "
                  f"(teacher forced), {d['top1_agreement_on_greedy_continuation']:.3f} on the target's greedy "
                  f"continuations; mean acceptance length at k = 5: "
                  f"{d['chain']['mean_acceptance_length'][4]:.2f}.", ""]
    if rep.get("mtp") and "mtp" in parts:
        m = rep["mtp"]
        lines += [f"MTP top-1 agreement for t+2: {m['top1_t2']:.3f} (on greedy continuations), "
                  f"{m['top1_t2_teacher_forced']:.3f} (teacher forced on validation text); t+3 after a correct t+2 "
                  f"(module reused): {m['top1_t3_given_t2']:.3f}.", ""]
    if rep.get("medusa") and "medusa" in parts:
        md = rep["medusa"]
        lines += ["**Medusa heads** (on the target's greedy continuations)", "", "| head | predicts | top-1 | top-5 |",
                  "|---|---|---|---|"]
        lines += [f"| {h['head']} | {h['predicts']} | {h['top1']:.3f} | {h['top5']:.3f} |" for h in md["heads"]]
        lines += ["", f"Top-1 chain of all heads: mean acceptance length "
                  f"{md['top1_chain']['mean_acceptance_length'][-1]:.2f}; tree of {md['tree']['nodes']} nodes "
                  f"(choices `{json.dumps(md['tree']['choices'])}`): {md['tree']['mean_acceptance_length']:.2f}.", ""]
    return "\n".join(lines)


@torch.no_grad()
def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or os.path.join(args.state_dir, "report", "acceptance")
    paths = {name: locate(args, name) for name in ["target", "draft", "medusa", "mtp"]}
    inputs = {name: (stage.identity(p) if p else None) for name, p in paths.items()}
    for name, p in paths.items():
        trained_on = torch.load(p, map_location="cpu", weights_only=False).get("target") if p else None
        if trained_on and not stage.same_model(trained_on, inputs["target"]):
            print(f"warning: {name} was trained against target step {trained_on['step']}, not the reported "
                  f"target (step {inputs['target']['step']})", flush=True)
    if os.path.exists(out + ".json") and not args.force:
        with open(out + ".json") as f:
            if json.load(f).get("inputs") == inputs:
                print(f"{out}.json is up to date; nothing to do")
                return 0
    t_start = time.time()
    dtype = DTYPES[args.dtype]
    dev = args.device
    target = rounded(load_checkpoint_model(paths["target"]).to(dev), dtype)
    starts = [int(s) for s in args.starts.split(",")]
    assert max(starts) + args.k_max + 1 <= args.gen, "--gen must cover the last start plus --k-max + 1"
    seq, offsets = prompts(args.samples, args.prefix)
    seq = seq.to(dev)
    conts = [greedy_continue(target, seq[sl], args.gen)[0] for sl in chunks(len(seq), args.batch)]
    cont = torch.cat(conts)
    full = torch.cat([seq, cont], 1)
    hidden, tf_arg = [], []
    for sl in chunks(len(full), args.batch):
        h = target.model(input_ids=full[sl]).last_hidden_state
        hidden.append(h)
        tf_arg.append(target.lm_head(h).argmax(-1))
    hidden, tf_arg = torch.cat(hidden), torch.cat(tf_arg)
    print(f"target: greedy continuations ready ({time.time() - t_start:.0f}s)", flush=True)
    rep = {"protocol": {"samples": args.samples, "prefix": args.prefix, "gen": args.gen, "starts": starts,
                        "k_max": args.k_max, "dtype": args.dtype, "valid_offsets": offsets},
           "inputs": inputs}
    if paths["draft"]:
        draft = rounded(load_checkpoint_model(paths["draft"]).to(dev), dtype)
        rep["draft"] = run_draft(draft, full, cont, starts, args, tf_arg)
        print(f"draft done ({time.time() - t_start:.0f}s)", flush=True)
    if paths["medusa"]:
        state = torch.load(paths["medusa"], map_location="cpu", weights_only=False)
        cfg = state["medusa"]
        heads = MedusaHeads(cfg["hidden_size"], cfg["medusa_num_heads"], cfg["medusa_num_layers"])
        heads.load_state_dict(state["model"])
        rep["medusa"] = run_medusa(rounded(heads.to(dev), dtype), target, hidden, cont, args)
        print(f"medusa done ({time.time() - t_start:.0f}s)", flush=True)
    if paths["mtp"]:
        state = torch.load(paths["mtp"], map_location="cpu", weights_only=False)
        mtp = MTPModule(target.config)
        mtp.load_state_dict(state["model"])
        rep["mtp"] = run_mtp(rounded(mtp.to(dev), dtype), target, full, hidden, cont, tf_arg, starts, args)
        print(f"mtp done ({time.time() - t_start:.0f}s)", flush=True)
    rep["prompt_ids"] = seq.tolist()
    rep["greedy_continuations"] = cont.tolist()
    rep["seconds"] = round(time.time() - t_start, 1)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(rep, f, separators=(",", ":"))
        f.write("\n")
    with open(out + ".md", "w") as f:
        f.write(markdown(rep))
    print(markdown(rep))
    print(f"report: {out}.json, {out}.md ({rep['seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
