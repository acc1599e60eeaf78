"""Model definitions for the SpecServe code family.

Every model is a plain Hugging Face LlamaForCausalLM, so a checkpoint's
state_dict already uses the HF tensor names and exports without renaming.
"""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 8192
EOT_ID = 0

PRESETS = {
    # Target: ~15.7M parameters (tied), ~63 MB in F32, larger than a 32 MB L3.
    "target": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, num_key_value_heads=2,
                   intermediate_size=1024),
    # Draft: same tokenizer and head size, a fraction of the compute per token.
    "draft": dict(hidden_size=192, num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1,
                  intermediate_size=512),
}


def make_config(preset: str, **overrides) -> LlamaConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    fields = dict(
        vocab_size=VOCAB,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
        bos_token_id=EOT_ID,
        eos_token_id=EOT_ID,
        pad_token_id=None,
    )
    fields.update(PRESETS[preset])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return LlamaConfig(**fields)


def build_model(config: LlamaConfig, attn: str = "sdpa") -> LlamaForCausalLM:
    model = LlamaForCausalLM._from_config(config, attn_implementation=attn, dtype=torch.float32)
    return model


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied tensors are counted once


def config_summary(config: LlamaConfig) -> dict:
    keys = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"]
    out = {k: getattr(config, k) for k in keys}
    out["rope_theta"] = rope_theta(config)
    return out


def rope_theta(config: LlamaConfig) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def config_from_summary(summary: dict) -> LlamaConfig:
    fields = dict(summary)
    return LlamaConfig(**fields, hidden_act="silu", attention_bias=False, mlp_bias=False,
                       bos_token_id=EOT_ID, eos_token_id=EOT_ID, pad_token_id=None)


def load_checkpoint_model(path: str, attn: str = "sdpa") -> LlamaForCausalLM:
    """Rebuild the model stored in a train_lm.py checkpoint (weights only)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(config_from_summary(state["model_config"]), attn=attn)
    model.load_state_dict(state["model"])
    return model
