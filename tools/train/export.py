#!/usr/bin/env python3
"""Export one train_lm.py-format checkpoint as a Hugging Face model folder
(export_family.py uses it for the target and the distilled draft).

Writes <out>/config.json, <out>/model.safetensors (BF16 by default, HF tensor
names, tied lm_head stored once as model.embed_tokens.weight), <out>/tokenizer.json
and a model card <out>/README.md with the training figures. config.json carries
both the transformers-5 keys (`rope_parameters`, `dtype`) and the classic
top-level `rope_theta` / `torch_dtype` that most published checkpoints use.

The export is verified before it returns: the folder is reloaded with
transformers in float32 and its logits are compared with the checkpoint's
weights rounded to the storage dtype.

Usage: python3 tools/train/export.py --run target --name specserve-code --out models/specserve-code
       [--ckpt PATH] [--dtype bf16|f16|f32] [--state-dir DIR]
"""
import argparse
import copy
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import build_model, config_from_summary, count_params, rope_theta  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKENIZER = os.path.join(ROOT, "models", "specserve-code", "tokenizer.json")
MANIFEST = os.path.join(HERE, "corpus_manifest.json")
DTYPES = {"bf16": (torch.bfloat16, "bfloat16"), "f16": (torch.float16, "float16"), "f32": (torch.float32, "float32")}


def latest_checkpoint(run_dir):
    found = sorted(f for f in os.listdir(run_dir) if f.startswith("ckpt-") and f.endswith(".pt"))
    if not found:
        sys.exit(f"export: no checkpoint in {run_dir}")
    return os.path.join(run_dir, found[-1])


def read_log(run_dir):
    evals, trains = [], []
    path = os.path.join(run_dir, "log.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                (evals if rec["kind"] == "eval" else trains).append(rec)
    return evals, trains


def stage_chain(state):
    """The checkpoint states that led to this one, oldest first, following `init`; a stage whose checkpoint
    is gone appears as its `init` record (tokens_seen, elapsed_s; no args)."""
    chain = [state]
    while chain[-1].get("init"):
        init = chain[-1]["init"]
        if not os.path.exists(init["path"]):
            chain.append({"tokens_seen": init["tokens_seen"], "elapsed_s": init["elapsed_s"]})
            break
        chain.append(torch.load(init["path"], map_location="cpu", weights_only=False))
    return chain[::-1]


def on_rollouts(args, key="train_bin"):
    """True when a stage's --train-bin (or `key`, e.g. valid_bin) is rollouts.py's continuations, not corpus text."""
    return "rollouts" in str(args.get(key) or "")


def training_stages(state):
    """(tokens, seconds, what) of each stage that led to this language-model checkpoint, oldest first."""
    stages = []
    for i, st in enumerate(stage_chain(state)):
        args = st.get("args")
        if args is None:
            what = "earlier training"
        elif i == 0 and not st.get("init"):
            what = "pre-training on the corpus"
        else:
            on = "the target's own greedy continuations" if on_rollouts(args) else "corpus text"
            mix = f", {args['mix_corpus']:g} of each batch corpus text" if args.get("mix_corpus") else ""
            what = (f"distilling the target's logits on {on} (KL, temperature {args.get('temperature', 1.0):g}, "
                    f"CE weight {args.get('ce_weight', 0.0):g}{mix})")
        stages.append((st["tokens_seen"], st["elapsed_s"], what))
    return stages


def model_card(name, state, params, evals, storage, size_bytes, sections=()):
    """The model card; `sections` are extra markdown blocks inserted before the data section."""
    with open(MANIFEST) as f:
        manifest = json.load(f)
    cfg = state["model_config"]
    args = state["args"]
    upto = [e for e in evals if e["step"] <= state["step"]]
    last = upto[-1] if upto else None
    splits = manifest["splits"]
    lines = [
        f"# {name}",
        "",
        "A small LLaMA-architecture Python code-completion model trained from scratch for SpecServe.",
        "",
        "| | |",
        "|---|---|",
        f"| Architecture | LlamaForCausalLM, hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
        f"{cfg['num_attention_heads']} heads / {cfg['num_key_value_heads']} KV heads, SwiGLU "
        f"{cfg['intermediate_size']}, tied embeddings: {cfg['tie_word_embeddings']}, context "
        f"{cfg['max_position_embeddings']}, rope_theta {cfg['rope_theta']:g} |",
        f"| Parameters | {params:,} |",
        f"| Storage | {storage}, {size_bytes / 1e6:.1f} MB |",
        f"| Tokenizer | byte-level BPE, {cfg['vocab_size']} tokens, `<|endoftext|>` = 0 |",
    ]
    stages = training_stages(state)
    if len(stages) > 1:  # pre-training, then one or more distillations, each from the one before
        args = state["args"]
        what = "; then ".join(f"{t:,} {d}" for t, _, d in stages)
        lines += [
            f"| Tokens trained | {sum(t for t, _, _ in stages):,}: {what} (sequence {args['seq_len']}, batch "
            f"{args['batch']}) |",
            f"| Training time | {sum(e for _, e, _ in stages) / 3600:.2f} h on {args['device']} ("
            + " + ".join(f"{e / 3600:.2f} h" for _, e, _ in stages)
            + f"; {args['threads']} threads, {args['precision']}) |",
        ]
    else:
        lines += [
            f"| Tokens trained | {state['tokens_seen']:,} (step {state['step']}, sequence {args['seq_len']}, "
            f"batch {args['batch']}, planned budget {args['tokens']:,.0f}) |",
            f"| Training time | {state['elapsed_s'] / 3600:.2f} h on {args['device']} ({args['threads']} threads, "
            f"{args['precision']}) |",
        ]
    if last:
        bpb = f", {last['val_bits_per_byte']} bits/byte" if "val_bits_per_byte" in last else ""
        held_out = ("tokens of the target's held-out greedy continuations" if on_rollouts(args, "valid_bin")
                    else "fixed held-out tokens")
        lines.append(f"| Validation loss | {last['val_loss']} nats/token{bpb} (step {last['step']}, "
                     f"{last['val_tokens']:,} {held_out}) |")
    for section in sections:
        lines += ["", section.rstrip("\n")]
    lines += [
        "",
        "## Data",
        "",
        f"Python source files from the CPython {manifest['python']} standard library (PSF licence) and installed "
        f"packages whose metadata declares only permissive licences (MIT, BSD, Apache-2.0, ISC, PSF and similar; "
        f"{len(manifest['licences']['packages_used'])} packages). Copyleft, weak-copyleft and unlicensed packages "
        f"and vendored sub-trees were excluded; exact duplicates removed. Split by file: "
        f"train {splits['train']['files']:,} files / {splits['train']['bytes']:,} bytes / "
        f"{splits['train'].get('tokens', 0):,} tokens, validation {splits['valid']['files']:,} files / "
        f"{splits['valid']['bytes']:,} bytes / {splits['valid'].get('tokens', 0):,} tokens. "
        "Per-package licences: `tools/train/corpus_manifest.json`.",
        "",
        "Reproduce: `tools/train/run_all.sh` (see `tools/train/README.md`).",
        "",
    ]
    return "\n".join(lines)


@torch.no_grad()
def verify(out, reference, storage_dtype):
    from transformers import LlamaForCausalLM
    loaded = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    # Round the parameters only: casting the whole module would also round the RoPE inv_freq buffer,
    # which transformers recomputes in float32 on load (and so does the engine).
    ref = copy.deepcopy(reference).eval()
    for p in ref.parameters():
        p.copy_(p.to(storage_dtype).to(torch.float32))
    ids = torch.arange(1, 65)[None] * 37 % loaded.config.vocab_size
    a = loaded(input_ids=ids).logits
    b = ref(input_ids=ids).logits
    diff = (a - b).abs().max().item()
    if diff > 1e-3:
        sys.exit(f"export: reloaded {out} differs from the checkpoint (max logit difference {diff})")
    return loaded, diff


def export_checkpoint(ckpt, out, name=None, dtype="bf16", run_dir=None, sections=()):
    """Writes the HF folder for a train_lm.py-format checkpoint, verifies it by reloading, and returns
    (the float32 model, its checkpoint state, the reloaded transformers model, max logit difference)."""
    run_dir = run_dir or os.path.dirname(os.path.abspath(ckpt))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    config = config_from_summary(state["model_config"])
    model = build_model(config, attn="eager")
    model.load_state_dict(state["model"])
    params = count_params(model)
    storage_dtype, dtype_name = DTYPES[dtype]

    os.makedirs(out, exist_ok=True)
    copy.deepcopy(model).to(storage_dtype).save_pretrained(out, safe_serialization=True)
    gen_cfg = os.path.join(out, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    update_config(out, {"rope_theta": rope_theta(config), "torch_dtype": dtype_name, "dtype": dtype_name})
    if os.path.abspath(TOKENIZER) != os.path.abspath(os.path.join(out, "tokenizer.json")):
        shutil.copyfile(TOKENIZER, os.path.join(out, "tokenizer.json"))

    weights = os.path.join(out, "model.safetensors")
    evals, _ = read_log(run_dir)
    name = name or os.path.basename(os.path.normpath(out))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(model_card(name, state, params, evals, dtype_name, os.path.getsize(weights), sections))

    loaded, diff = verify(out, model, storage_dtype)
    print(f"export: {ckpt} (step {state['step']}, {state['tokens_seen']:,} tokens) -> {out} "
          f"[{dtype_name}, {os.path.getsize(weights) / 1e6:.1f} MB, {params:,} parameters]; "
          f"reload max logit difference {diff:.2e}")
    return model, state, loaded, diff


def update_config(out, keys):
    """Adds or replaces keys of <out>/config.json (sorted, indented)."""
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.update(keys)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def greedy_sample(loaded, out, prompt):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    ids = torch.tensor([tok.encode(prompt).ids])
    t0 = time.time()
    gen = loaded.generate(ids, max_new_tokens=48, do_sample=False, eos_token_id=0, pad_token_id=0)
    print(f"greedy sample ({time.time() - t0:.1f}s):\n{tok.decode(gen[0].tolist())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="target")
    ap.add_argument("--state-dir", default="/root/specserve-train")
    ap.add_argument("--ckpt", help="checkpoint file; default: the newest of the run")
    ap.add_argument("--name", help="model name for the card; default: the output folder's name")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--sample", default="def fibonacci(n):\n", help="prompt for a greedy sample printed at the end")
    args = ap.parse_args()

    run_dir = os.path.join(args.state_dir, args.run)
    ckpt = args.ckpt or latest_checkpoint(run_dir)
    _, _, loaded, _ = export_checkpoint(ckpt, args.out, args.name, args.dtype, run_dir)
    greedy_sample(loaded, args.out, args.sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
