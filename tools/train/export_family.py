#!/usr/bin/env python3
"""Stage 8: export the whole family as Hugging Face folders.

<out-dir>/specserve-code/         the target (export.py), plus
    medusa_lm_head.safetensors    Medusa heads, layout v2: `{h}.{l}.linear.weight` [H, H] and
                                  `{h}.{l}.linear.bias` [H]; config.json gains medusa_num_heads,
                                  medusa_num_layers
    model.safetensors             also holds the MTP module as layer num_hidden_layers:
                                  `model.layers.<L>.{enorm,hnorm,eh_proj,self_attn.*,mlp.*,input_layernorm,
                                  post_attention_layernorm,shared_head.norm}.weight`; config.json gains
                                  num_nextn_predict_layers: 1
    acceptance_report.json        the offline report (figures, prompts, greedy continuations)
    README.md                     model card with every figure
<out-dir>/specserve-code-draft/   the distilled draft (export.py), the same tokenizer.json, model card

Every tensor is stored in --dtype (bf16). Verified before returning: transformers loads the target
folder as LlamaForCausalLM (the MTP tensors are reported as unexpected and ignored) with the same
logits as without them; the Medusa and MTP tensors read back equal, name by name, to the trained
ones rounded to the storage dtype; both folders' tokenizer.json are identical; the safetensors
files together stay under --max-mb.

Inputs: the newest checkpoints of the finished runs (stage.SHIPPED_RUNS: target, draft-rollouts,
medusa-rollouts, mtp-rollouts) and
<state-dir>/report/acceptance.json; --*-ckpt and --report override them (trials on unfinished runs).
With --require-all (run_all.sh) every part must exist; otherwise a missing part is left out.

Usage: python3 tools/train/export_family.py [--out-dir models] [--require-all]
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stage  # noqa: E402
from acceptance_report import markdown  # noqa: E402
from export import DTYPES, export_checkpoint, on_rollouts, read_log, stage_chain, training_stages, update_config  # noqa: E402,E501
from heads import MedusaHeads, MTPModule, param_count  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", default="/root/specserve-train")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--target-name", default="specserve-code")
    ap.add_argument("--draft-name", default="specserve-code-draft")
    for name, run in stage.SHIPPED_RUNS:
        ap.add_argument(f"--{name}-run", default=run)
        ap.add_argument(f"--{name}-ckpt")
    ap.add_argument("--report", help="report path without extension; default <state-dir>/report/acceptance")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--max-mb", type=float, default=200.0)
    ap.add_argument("--require-all", action="store_true")
    ap.add_argument("--force", action="store_true", help="export even when the folders are up to date")
    return ap.parse_args(argv)


def find(args, name):
    explicit = getattr(args, f"{name}_ckpt")
    run_dir = os.path.join(args.state_dir, getattr(args, f"{name}_run"))
    if explicit or os.path.exists(os.path.join(run_dir, "done.json")) or name == "target" or args.require_all:
        return stage.newest_finished(args.state_dir, getattr(args, f"{name}_run"), explicit, what=name)
    print(f"export_family: {run_dir} is not finished; {name} left out")
    return None


def last_eval(ckpt):
    evals, _ = read_log(os.path.dirname(os.path.abspath(ckpt)))
    return evals[-1] if evals else {}


def rounded(state, dtype):
    return {k: v.detach().to(dtype).contiguous() for k, v in state.items()}


def write_medusa(out, state, dtype):
    cfg = state["medusa"]
    tensors = rounded(state["model"], dtype)
    expected = {f"{h}.{l}.linear.{w}" for h in range(cfg["medusa_num_heads"]) for l in range(cfg["medusa_num_layers"])
                for w in ("weight", "bias")}
    assert set(tensors) == expected, f"unexpected Medusa tensor names {sorted(set(tensors) ^ expected)}"
    path = os.path.join(out, "medusa_lm_head.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    update_config(out, {"medusa_num_heads": cfg["medusa_num_heads"], "medusa_num_layers": cfg["medusa_num_layers"]})
    back = load_file(path)
    for k, v in tensors.items():
        assert torch.equal(back[k], v) and back[k].shape == v.shape, f"{path}: {k} did not read back"
    return path


def write_mtp(out, state, layer, dtype):
    path = os.path.join(out, "model.safetensors")
    tensors = load_file(path)
    prefix = f"model.layers.{layer}."
    assert not any(k.startswith(prefix) for k in tensors), f"{path} already holds {prefix}*"
    mtp = rounded(state["model"], dtype)
    for k, v in mtp.items():
        tensors[prefix + k] = v
    save_file(tensors, path, metadata={"format": "pt"})
    update_config(out, {"num_nextn_predict_layers": 1})
    back = load_file(path)
    for k, v in mtp.items():
        assert torch.equal(back[prefix + k], v), f"{path}: {prefix + k} did not read back"
    return sorted(prefix + k for k in mtp)


@torch.no_grad()
def verify_hf(out, reference_loaded, mtp_names):
    """transformers still loads the folder as LlamaForCausalLM, ignores the MTP tensors, same logits."""
    from transformers import LlamaForCausalLM
    model, info = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager",
                                                   output_loading_info=True)
    unexpected = set(info.get("unexpected_keys", []))
    missing = set(info.get("missing_keys", []))
    if missing:
        sys.exit(f"export_family: transformers reports missing tensors in {out}: {sorted(missing)}")
    if unexpected != set(mtp_names):
        sys.exit(f"export_family: transformers' unexpected tensors {sorted(unexpected)} differ from the MTP "
                 f"module's {len(mtp_names)}")
    ids = torch.arange(1, 65)[None] * 37 % model.config.vocab_size
    diff = (model.eval()(input_ids=ids).logits - reference_loaded(input_ids=ids).logits).abs().max().item()
    if diff != 0.0:
        sys.exit(f"export_family: logits changed after adding the MTP tensors (max difference {diff})")
    return len(unexpected)


def hours(seconds):
    return f"{seconds / 3600:.2f} h"


def medusa_section(state, ckpt):
    cfg, ev = state["medusa"], last_eval(ckpt)
    heads = MedusaHeads(cfg["hidden_size"], cfg["medusa_num_heads"], cfg["medusa_num_layers"])
    args = state["args"]
    acc = ", ".join(f"head {h}: top-1 {ev[f'val_top1_h{h}']:.3f} / top-5 {ev[f'val_top5_h{h}']:.3f}"
                    for h in range(cfg["medusa_num_heads"]) if f"val_top1_h{h}" in ev)
    done = []
    for st in stage_chain(state):
        a = st.get("args") or {}
        if a.get("train_bin"):
            done.append(f"{st['tokens_seen']:,} positions teacher forced on windows of the target's stored greedy "
                        f"continuations (`rollouts.py`), {hours(st['elapsed_s'])}")
        else:
            done.append(f"{st['tokens_seen']:,} positions of the frozen target's own greedy continuations of "
                        f"training-text prefixes, generated during training, {hours(st['elapsed_s'])}")
    return (f"## Medusa heads (`medusa_lm_head.safetensors`)\n\n"
            f"{cfg['medusa_num_heads']} heads x {cfg['medusa_num_layers']} ResBlock `x + SiLU(W x + b)`, layout v2 "
            f"(the target's lm_head is shared; no vocabulary projection stored), {param_count(heads):,} parameters. "
            f"Head h reads the target's final hidden state after the final norm at position i and predicts token "
            f"i + 2 + h. Self-distillation (soft labels: the target's distributions along its continuation) on "
            f"{'; then '.join(done)}; on {args['device']}. Validation (greedy continuations of {args['eval_seqs']} "
            f"held-out prefixes, step {ev.get('step', '?')}): {acc}.\n")


def mtp_section(state, ckpt, layer):
    ev, args = last_eval(ckpt), state["args"]
    n = sum(v.numel() for v in state["model"].values())
    figures = ", ".join(f"t+{s}: {ev[f'val_top1_t{s}']:.3f}" for s in (2, 3, 4) if f"val_top1_t{s}" in ev)
    done = []
    for st in stage_chain(state):
        a = st.get("args") or {}
        if on_rollouts(a):
            mix = f", {a['mix_corpus']:g} of each batch corpus text" if a.get("mix_corpus") else ""
            done.append(f"{st['tokens_seen']:,} tokens of the target's own greedy continuations{mix}, "
                        f"{hours(st['elapsed_s'])}")
        else:
            done.append(f"{st['tokens_seen']:,} training tokens of the corpus, {hours(st['elapsed_s'])}")
    windows = "windows of the target's held-out greedy continuations" if on_rollouts(args, "valid_bin") \
        else "held-out windows"
    return (f"## MTP module (`model.layers.{layer}.*`, `num_nextn_predict_layers: 1`)\n\n"
            f"One DeepSeek-V3-style module, {n:,} parameters: `enorm`, `hnorm`, `eh_proj` [H, 2H], one LLaMA block "
            f"with the target's layer shapes, `shared_head.norm`; embedding and lm_head shared with the target. At "
            f"position i: x = eh_proj(concat(enorm(embed(t_(i+1))), hnorm(h_i))) (embedding first, h_i the target's "
            f"post-norm final hidden state), block at RoPE position i with its own causal KV cache, logits = "
            f"lm_head(shared_head.norm(y)) predict t_(i+2); further drafts reuse it with h' = shared_head.norm(y) "
            f"and the drafted token at position i + 1. Trained with a {args.get('steps', 1)}-step unroll against "
            f"the frozen target's distributions, teacher forced, on {'; then '.join(done)}; on {args['device']}. "
            f"Validation top-1 agreement with the target (teacher forced, {args['eval_seqs']} {windows}, step "
            f"{ev.get('step', '?')}): {figures}.\n")


def up_to_date(report_path, target_out, draft_out, states):
    """The folders were exported from the same report (whose inputs name every checkpoint) and are complete."""
    copy = os.path.join(target_out, "acceptance_report.json")
    needed = [os.path.join(target_out, "model.safetensors")]
    needed += [os.path.join(target_out, "medusa_lm_head.safetensors")] if "medusa" in states else []
    needed += [os.path.join(draft_out, "model.safetensors")] if "draft" in states else []
    if not os.path.exists(copy) or not all(os.path.exists(p) for p in needed):
        return False
    with open(copy, "rb") as a, open(report_path + ".json", "rb") as b:
        return a.read() == b.read()


def main(argv=None):
    args = parse_args(argv)
    dtype = DTYPES[args.dtype][0]
    paths = {name: find(args, name) for name in ["target", "draft", "medusa", "mtp"]}
    report_path = args.report or os.path.join(args.state_dir, "report", "acceptance")
    report = None
    if os.path.exists(report_path + ".json"):
        with open(report_path + ".json") as f:
            report = json.load(f)
    elif args.require_all:
        sys.exit(f"export_family: {report_path}.json is missing; run acceptance_report.py first")
    states = {k: torch.load(p, map_location="cpu", weights_only=False) for k, p in paths.items() if p}
    if report:
        used = {k: {"step": s["step"], "tokens_seen": s["tokens_seen"]} for k, s in states.items()}
        inputs = {k: ({"step": v["step"], "tokens_seen": v["tokens_seen"]} if v else None)
                  for k, v in report["inputs"].items() if k in used}
        if inputs != used:
            msg = f"the report {report_path}.json was made from other checkpoints {inputs} than {used}"
            if args.require_all:
                sys.exit(f"export_family: {msg}; run acceptance_report.py again")
            print(f"export_family: warning: {msg}")

    target_out = os.path.join(args.out_dir, args.target_name)
    draft_out = os.path.join(args.out_dir, args.draft_name)
    if report and not args.force and up_to_date(report_path, target_out, draft_out, states):
        print(f"export_family: {target_out} and {draft_out} already hold these checkpoints; nothing to do")
        return 0
    layer = states["target"]["model_config"]["num_hidden_layers"]
    sections = []
    if "medusa" in states:
        sections.append(medusa_section(states["medusa"], paths["medusa"]))
    if "mtp" in states:
        sections.append(mtp_section(states["mtp"], paths["mtp"], layer))
    if report:
        sections.append("## Offline acceptance (greedy speculative decoding)\n\n" + markdown(report))
    _, _, loaded, _ = export_checkpoint(paths["target"], target_out, args.target_name, args.dtype,
                                        sections=sections)
    if "medusa" in states:
        print(f"export_family: {write_medusa(target_out, states['medusa'], dtype)}")
    mtp_names = []
    if "mtp" in states:
        mtp_names = write_mtp(target_out, states["mtp"], layer, dtype)
        MTPModule(loaded.config).load_state_dict(
            {k[len(f"model.layers.{layer}."):]: v for k, v in load_file(os.path.join(target_out, "model.safetensors")).items()
             if k.startswith(f"model.layers.{layer}.")})
        print(f"export_family: {len(mtp_names)} MTP tensors as model.layers.{layer}.* in model.safetensors")
    ignored = verify_hf(target_out, loaded, mtp_names)
    print(f"export_family: transformers loads {target_out} as LlamaForCausalLM, ignores {ignored} MTP tensors, "
          f"same logits")
    if report:
        shutil.copyfile(report_path + ".json", os.path.join(target_out, "acceptance_report.json"))
        heads = (report.get("medusa") or {}).get("heads") or []
        if "medusa" in states and heads and all("rank_accuracy" in h for h in heads):
            # Measured per-head, per-rank accuracies: the engine sizes its Medusa tree from them and the verify
            # cost it measures at start-up.
            update_config(target_out, {"medusa_topk_accuracy": [h["rank_accuracy"] for h in heads]})

    if "draft" in states:
        stages = training_stages(states["draft"])
        steps = ", then ".join(f"{d} ({t:,} tokens)" for t, _, d in stages)
        d_sections = [f"## Role\n\nDraft model for speculative decoding with `{args.target_name}` (same tokenizer, "
                      f"identical `tokenizer.json`): {steps} (`train_lm.py --preset draft`, then `distill_draft.py`, "
                      f"KL(target || draft); the last stage on `rollouts.py` output, see `tools/train/README.md`).\n"]
        if report and report.get("draft"):
            d_sections.append("## Offline acceptance (greedy speculative decoding)\n\n"
                              + markdown(report, parts=("draft",)))
        export_checkpoint(paths["draft"], draft_out, args.draft_name, args.dtype, sections=d_sections)
        with open(os.path.join(target_out, "tokenizer.json"), "rb") as a, \
                open(os.path.join(draft_out, "tokenizer.json"), "rb") as b:
            assert a.read() == b.read(), "the draft's tokenizer.json differs from the target's"

    total = sum(os.path.getsize(os.path.join(d, f)) for d in (target_out, draft_out) if os.path.isdir(d)
                for f in os.listdir(d) if f.endswith(".safetensors"))
    if total > args.max_mb * 1e6:
        sys.exit(f"export_family: weights total {total / 1e6:.1f} MB > {args.max_mb} MB")
    print(f"export_family: done, weights {total / 1e6:.1f} MB in {target_out} and {draft_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
