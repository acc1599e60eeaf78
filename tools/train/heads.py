"""Speculation modules trained on top of the frozen target: Medusa heads and an MTP module.

Both read the target's final hidden state *after* the final norm (what
`LlamaModel(...).last_hidden_state` returns, and what transformers puts in
`hidden_states[-1]` of the model output) and share the target's embedding and
lm_head, which stay frozen and are not part of these modules.

Medusa (layout v2, DESIGN §3): head h is one ResBlock `x + SiLU(W x + b)` followed
by the target's lm_head; at position i it predicts token i + 2 + h (head 0 predicts
the token after the one the lm_head predicts). `state_dict()` names are exactly the
file's: `{h}.{l}.linear.weight` / `{h}.{l}.linear.bias`.

MTP (DeepSeek-V3 layout): at position i, with h_i the target's post-norm hidden state
and t_{i+1} the next token,
    x_i      = eh_proj(concat(enorm(embed(t_{i+1})), hnorm(h_i)))      embedding first
    y_i      = block(x_i)        one LLaMA block, causal, RoPE position i
    h'_i     = shared_head.norm(y_i)
    logits_i = lm_head(h'_i)     predicts t_{i+2}
Drafting further reuses the module with h'_i in place of the target's hidden state and
the drafted token, at position i + 1. `state_dict()` names are the checkpoint's after the
prefix `model.layers.<num_hidden_layers>.`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- Medusa

class ResBlock(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden, bias=True)
        # Zero init: an untrained head is the identity, so it starts as the lm_head's own prediction.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        return x + F.silu(self.linear(x))


class MedusaHeads(nn.ModuleList):
    """`heads` heads of `layers` ResBlocks each; returns the pre-lm_head states [heads, ..., H]."""

    def __init__(self, hidden, heads=4, layers=1):
        super().__init__([nn.Sequential(*[ResBlock(hidden) for _ in range(layers)]) for _ in range(heads)])
        self.num_heads, self.num_layers = heads, layers

    def forward(self, h):
        return torch.stack([head(h) for head in self])


# ----------------------------------------------------------------------------- MTP

class RMSNorm(nn.Module):
    """Same arithmetic as transformers' LlamaRMSNorm."""

    def __init__(self, hidden, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_tables(positions, head_dim, theta, dtype=torch.float32):
    """cos/sin [..., head_dim] for integer positions, transformers' Llama convention (halves, not pairs)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x: [B, heads, T, D]; cos/sin: [B, T, D]."""
    cos, sin = cos[:, None], sin[:, None]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or h // self.n_heads
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)

    def qkv(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def attend(self, q, k, v, mask):
        """q [B, Hq, T, D], k/v [B, Hkv, S, D], mask bool [T, S] or [B, 1, T, S] (True = visible)."""
        rep = self.n_heads // self.n_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, t, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SharedHead(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.norm = RMSNorm(hidden, eps)


class MTPModule(nn.Module):
    """One DeepSeek-V3-style MTP module on a LLaMA target (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__()
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.enorm = RMSNorm(h, eps)
        self.hnorm = RMSNorm(h, eps)
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        self.input_layernorm = RMSNorm(h, eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.mlp = MLP(cfg)
        self.shared_head = SharedHead(h, eps)
        params = getattr(cfg, "rope_parameters", None) or {}
        self.theta = float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
        std = getattr(cfg, "initializer_range", 0.02)
        for lin in [self.eh_proj, self.self_attn.q_proj, self.self_attn.k_proj, self.self_attn.v_proj,
                    self.self_attn.o_proj, self.mlp.gate_proj, self.mlp.up_proj, self.mlp.down_proj]:
            nn.init.normal_(lin.weight, std=std)

    @classmethod
    def init_from_target(cls, target):
        """A module whose block starts as a copy of the target's last layer (a better start than random)."""
        m = cls(target.config)
        last = target.model.layers[-1].state_dict()
        own = m.state_dict()
        for name, t in last.items():
            if name in own and own[name].shape == t.shape:
                own[name].copy_(t)
        m.shared_head.norm.weight.data.copy_(target.model.norm.weight.data)
        return m

    def inputs(self, embed, hidden, tokens):
        """x = eh_proj(concat(enorm(embed(tokens)), hnorm(hidden)))."""
        e = embed(tokens)
        return self.eh_proj(torch.cat([self.enorm(e), self.hnorm(hidden)], dim=-1))

    def block(self, x, positions, past=None, mask=None):
        """One LLaMA block. positions [B, T] (RoPE); past = (k, v) of earlier entries the rows may see, and
        mask [B or 1, 1, T, S_past + T] (True = visible); without both, plain causal attention over x.
        Returns (output, (k, v) of these rows)."""
        a = self.input_layernorm(x)
        cos, sin = rope_tables(positions, self.self_attn.head_dim, self.theta, a.dtype)
        q, k, v = self.self_attn.qkv(a, cos, sin)
        if past is None:
            t = x.shape[1]
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril() if mask is None else mask
            attn = self.self_attn.attend(q, k, v, mask)
        else:
            attn = self.self_attn.attend(q, torch.cat([past[0], k], 2), torch.cat([past[1], v], 2), mask)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, (k, v)

    def step_train(self, embed, hidden, tokens, steps=2):
        """Teacher-forced unroll over whole sequences.

        hidden [B, T, H]: the target's post-norm states h_0..h_{T-1}; tokens [B, T]: t_1..t_T (tokens[:, i] is
        the token after position i). Step 1 runs on rows i = 0..T-1 at RoPE position i. Step s > 1 runs row i at
        position i + s - 1 with the previous step's h' of row i and the token tokens[:, i + s - 1]; it sees step 1's
        entries at positions <= i (the context the engine's cache holds when the chain starts at i) and the
        entries of steps 2..s of its own row (the chain drafted so far). Returns the list of h' per step ([B, T - s + 1, H]).
        """
        b, t, _ = hidden.shape
        pos = torch.arange(t, device=hidden.device)[None].expand(b, t)
        x = self.inputs(embed, hidden, tokens)
        y, kv1 = self.block(x, pos)
        outs = [self.shared_head.norm(y)]
        chain_k, chain_v = [], []
        for s in range(2, steps + 1):
            n = t - s + 1                                      # rows that still have a next token
            h_prev = outs[-1][:, :n]
            x = self.inputs(embed, h_prev, tokens[:, s - 1:s - 1 + n])
            p = pos[:, :n] + s - 1
            a = self.input_layernorm(x)
            cos, sin = rope_tables(p, self.self_attn.head_dim, self.theta, a.dtype)
            q, k, v = self.self_attn.qkv(a, cos, sin)
            chain_k.append(k)
            chain_v.append(v)
            # keys: step-1 entries (positions 0..t-1), then the chain entries of steps 2..s (row-aligned)
            keys = torch.cat([kv1[0]] + [c[:, :, :n] for c in chain_k], 2)
            vals = torch.cat([kv1[1]] + [c[:, :, :n] for c in chain_v], 2)
            rows = torch.arange(n, device=x.device)[:, None]
            cols = torch.arange(t, device=x.device)[None]
            visible = [cols <= rows]                   # the context committed before the chain
            for _ in chain_k:                                  # own row's entry in each chain step
                visible.append(torch.eye(n, dtype=torch.bool, device=x.device))
            mask = torch.cat(visible, 1)
            attn = self.self_attn.attend(q, keys, vals, mask)
            y = x + attn
            y = y + self.mlp(self.post_attention_layernorm(y))
            outs.append(self.shared_head.norm(y))
        return outs


class MTPCache:
    """Incremental MTP decoding (one module), for evaluation: a KV cache per batch row, filled in order."""

    def __init__(self, module):
        self.m = module
        self.k = self.v = None

    def run(self, embed, hidden, tokens, positions):
        """Appends rows (hidden [B, T, H], tokens [B, T], positions [B, T]) after the cached ones; every row sees
        the whole cache and the earlier new rows. Returns h' [B, T, H]."""
        x = self.m.inputs(embed, hidden, tokens)
        b, t, _ = x.shape
        past = 0 if self.k is None else self.k.shape[2]
        mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
        if self.k is None:
            y, (k, v) = self.m.block(x, positions, mask=mask)
            self.k, self.v = k, v
        else:
            y, (k, v) = self.m.block(x, positions, past=(self.k, self.v), mask=mask)
            self.k, self.v = torch.cat([self.k, k], 2), torch.cat([self.v, v], 2)
        return self.m.shared_head.norm(y)


# ----------------------------------------------------------------------------- target helpers

@torch.no_grad()
def target_states(target, ids):
    """Post-norm final hidden states [B, T, H] and logits [B, T, V] of the frozen target."""
    hidden = target.model(input_ids=ids).last_hidden_state
    return hidden, target.lm_head(hidden)


@torch.no_grad()
def greedy_continue(model, prefix, steps):
    """Greedy continuation of `steps` tokens from prefix [B, P] with a KV cache.

    Returns tokens [B, steps] (g_P .. g_{P+steps-1}), and the post-norm hidden states and logits
    [B, steps, ...] of the rows that produced them (positions P-1 .. P+steps-2)."""
    out = model.model(input_ids=prefix, use_cache=True)
    cache = out.past_key_values
    h = out.last_hidden_state[:, -1:]
    hiddens, logits, tokens = [], [], []
    for s in range(steps):
        lg = model.lm_head(h)
        tok = lg[:, -1].argmax(-1)
        hiddens.append(h)
        logits.append(lg)
        tokens.append(tok)
        if s + 1 < steps:
            out = model.model(input_ids=tok[:, None], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            h = out.last_hidden_state
    return torch.stack(tokens, 1), torch.cat(hiddens, 1), torch.cat(logits, 1)


def soft_ce(logits, target_logits):
    """Cross-entropy against the softmax of target_logits (= KL(target || model) + the target's entropy),
    averaged over rows; computed in float32."""
    p = F.softmax(target_logits.float(), -1)
    return -(p * F.log_softmax(logits.float(), -1)).sum(-1).mean()


def kl(target_logits, logits):
    p_log = F.log_softmax(target_logits.float(), -1)
    return (p_log.exp() * (p_log - F.log_softmax(logits.float(), -1))).sum(-1).mean()


def param_count(module):
    return sum(p.numel() for p in module.parameters())


