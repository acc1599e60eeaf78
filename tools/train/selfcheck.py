#!/usr/bin/env python3
"""Checks of the conventions the speculation stages rely on, on a tiny random LLaMA (seconds, CPU).

1. transformers' `hidden_states[-1]` of LlamaForCausalLM is the state *after* the final norm,
   equal to `model.model(...).last_hidden_state`, and lm_head of it gives the logits.
2. heads.MTPModule's block computes exactly what transformers' LlamaDecoderLayer computes
   (same weights, causal, RoPE at positions 0..T-1).
3. The teacher-forced unroll used for training (MTPModule.step_train, steps 1..3) equals the
   engine's incremental chain (MTPCache: step 1 over the context, then one row per drafted token
   at position i + s - 1 with h' and the drafted token), at every start position.
4. Zero-initialised Medusa heads are the identity (they start as the lm_head's prediction).
5. The greedy continuation with a KV cache equals argmax decoding without one.
6. Teacher forcing on a stored continuation (prompt + the target's greedy tokens, as rollouts.py writes
   them) gives the generated labels: the same hidden states and logits along the continuation, and
   their argmax are the continuation (train_medusa.py --train-bin relies on it).
7. A model card's training stages follow each checkpoint's `init` back to pre-training (the shipped draft:
   pre-training, distillation on corpus text, distillation on the target's own continuations).

Usage: python3 tools/train/selfcheck.py
"""
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heads import MTPCache, MTPModule, MedusaHeads, greedy_continue, target_states  # noqa: E402
from export import training_stages  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402


def tiny():
    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                      rope_theta=500.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()


def close(a, b, what, tol=1e-5):
    d = (a - b).abs().max().item() / max(1.0, b.abs().max().item())   # relative to the scale of b
    if d > tol:
        sys.exit(f"selfcheck FAILED: {what}: relative difference {d:.3g}")
    print(f"ok  {what} (relative difference {d:.1e})")


@torch.no_grad()
def main():
    torch.set_num_threads(1)
    target = tiny()
    ids = torch.randint(1, 97, (3, 20))
    out = target(input_ids=ids, output_hidden_states=True)
    last = target.model(input_ids=ids).last_hidden_state
    close(out.hidden_states[-1], last, "hidden_states[-1] == post-norm last_hidden_state")
    close(target.lm_head(last), out.logits, "lm_head(post-norm hidden) == logits")
    pre = target.model.norm(out.hidden_states[-1])
    assert (pre - last).abs().max() > 1e-3, "hidden_states[-1] looks un-normed"

    mtp = MTPModule(target.config)
    for p in mtp.parameters():
        p.normal_(0, 0.3) if p.dim() > 1 else p.uniform_(0.6, 1.4)
    layer = target.model.layers[0]
    layer.load_state_dict({k: v for k, v in mtp.state_dict().items() if k in layer.state_dict()})
    x = torch.randn(3, 20, 48)
    pos = torch.arange(20)[None].expand(3, 20)
    cos_sin = target.model.rotary_emb(x, position_ids=pos)
    mask = torch.full((20, 20), float("-inf")).triu(1)[None, None]
    ref = layer(x, attention_mask=mask, position_embeddings=cos_sin, position_ids=pos)
    ref = ref[0] if isinstance(ref, tuple) else ref
    close(mtp.block(x, pos)[0], ref, "MTP block == transformers LlamaDecoderLayer")

    embed = target.model.embed_tokens
    hidden = last
    tokens = ids[:, 1:]                       # tokens[:, i] = t_{i+1}
    t = tokens.shape[1]
    outs = mtp.step_train(embed, hidden[:, :t], tokens, steps=3)
    for start in [0, 5, t - 3]:
        cache = MTPCache(mtp)
        p = torch.arange(start + 1)[None].expand(3, -1)
        h1 = cache.run(embed, hidden[:, :start + 1], tokens[:, :start + 1], p)[:, -1:]
        close(h1[:, 0], outs[0][:, start], f"step 1 at row {start}: unroll == incremental")
        h2 = cache.run(embed, h1, tokens[:, start + 1:start + 2], torch.full((3, 1), start + 1))
        close(h2[:, 0], outs[1][:, start], f"step 2 at row {start}: unroll == incremental")
        h3 = cache.run(embed, h2, tokens[:, start + 2:start + 3], torch.full((3, 1), start + 2))
        close(h3[:, 0], outs[2][:, start], f"step 3 at row {start}: unroll == incremental")

    heads = MedusaHeads(48, 4, 1)
    close(heads(last)[2], last, "zero-initialised Medusa head is the identity")
    names = sorted(heads.state_dict())
    assert names[:2] == ["0.0.linear.bias", "0.0.linear.weight"], names

    toks, hs, lg = greedy_continue(target, ids[:, :7], 6)
    seq = ids[:, :7]
    for s in range(6):
        full = target(input_ids=seq).logits[:, -1]
        close(lg[:, s], full, f"greedy step {s}: cached logits == full forward", tol=1e-4)
        seq = torch.cat([seq, full.argmax(-1, keepdim=True)], 1)
    assert torch.equal(seq[:, 7:], toks)

    tf_hidden, tf_logits = target_states(target, seq[:, :-1])       # prompt + continuation, teacher forced
    close(tf_hidden[:, 6:], hs, "teacher forced on a stored continuation: hidden == generated", tol=1e-4)
    close(tf_logits[:, 6:], lg, "teacher forced on a stored continuation: logits == generated", tol=1e-4)
    assert torch.equal(tf_logits[:, 6:].argmax(-1), toks), "teacher-forced labels differ from the continuation"

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.pt")
        torch.save({"args": {}, "tokens_seen": 100, "elapsed_s": 1.0}, pre)
        corpus = os.path.join(tmp, "corpus.pt")
        torch.save({"args": {"train_bin": "work/tokens/train.bin"}, "tokens_seen": 50, "elapsed_s": 2.0,
                    "init": {"path": pre, "tokens_seen": 100, "elapsed_s": 1.0}}, corpus)
        last = {"args": {"train_bin": "/s/rollouts/train.bin", "mix_corpus": 0.25}, "tokens_seen": 20, "elapsed_s": 3.0,
                "init": {"path": corpus, "tokens_seen": 50, "elapsed_s": 2.0}}
        stages = training_stages(last)
        assert [(t, e) for t, e, _ in stages] == [(100, 1.0), (50, 2.0), (20, 3.0)], stages
        assert "pre-training" in stages[0][2] and "corpus text" in stages[1][2], stages
        assert "own greedy continuations" in stages[2][2] and "0.25" in stages[2][2], stages
    print("ok  model card stages: pre-training -> corpus distillation -> rollout distillation")
    print("selfcheck passed")


if __name__ == "__main__":
    main()
