"""A minimal Qwen3ForCausalLM in plain PyTorch, numerically the same as transformers' modeling_qwen3.py.

Used when `transformers` cannot be imported (as on the CPU build machine); `load_qwen3` picks
transformers' own Qwen3ForCausalLM (eager attention) whenever it can be imported, so the reference
is the real thing on a GPU box. The module tree mirrors transformers':

    model.model.embed_tokens                    nn.Embedding-like (weight [V, d])
    model.model.layers[i].input_layernorm       RMSNorm(d)
    model.model.layers[i].self_attn.{q,k,v,o}_proj, .q_norm, .k_norm
    model.model.layers[i].post_attention_layernorm
    model.model.layers[i].mlp.{gate,up,down}_proj
    model.model.norm, model.lm_head

so forward hooks written for one work on the other. A decoder layer returns a tensor (recent
transformers) -- hook code should accept a tuple too (older transformers), see `layer_output`.

Semantics (CONTRACT.md section 1), following transformers exactly:
- RMSNorm: h = x.to(float32); var = h.pow(2).mean(-1, keepdim); h = h * rsqrt(var + eps);
  weight * h.to(input dtype).
- q_norm / k_norm: RMSNorm over head_dim, per head, before RoPE.
- RoPE (rotate-half): inv_freq = 1 / theta ** (arange(0, hd, 2).float() / hd) in float32;
  angle = position * inv_freq in float32; cos / sin in float32, then cast to the model dtype.
- Attention: GQA via repeat_kv; scores = q k^T * head_dim^-0.5 + causal mask (finfo(dtype).min above
  the diagonal); softmax in float32, cast back; o_proj.
- MLP: down(silu(gate(x)) * up(x)).
- lm_head.weight when the checkpoint has it, else model.embed_tokens.weight (tied).

One deliberate difference: with dtype float64 the "float32" upcasts of RMSNorm and softmax are done in
float64 instead (transformers would round them through float32), so a float64 run is float64
throughout except the RoPE tables, which stay float32 as in transformers.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import checkpoint_files, iter_checkpoint_tensors  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ConfigError(ValueError):
    pass


def _upcast(dtype: torch.dtype) -> torch.dtype:
    """The dtype transformers upcasts to (float32), or float64 when computing in float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class Qwen3Config:
    """The config.json fields a Qwen3 forward needs, validated."""

    def __init__(self, raw: dict, source: str = "config.json"):
        self.raw = raw

        def need(key, default=None):
            v = raw.get(key, default)
            if v is None:
                raise ConfigError(f'{source}: missing "{key}"')
            return v

        mt = raw.get("model_type")
        if mt is not None and mt != "qwen3":
            raise ConfigError(f'{source}: model_type "{mt}" is not "qwen3"')
        self.hidden_size = int(need("hidden_size"))
        self.intermediate_size = int(need("intermediate_size"))
        self.num_hidden_layers = int(need("num_hidden_layers"))
        self.num_attention_heads = int(need("num_attention_heads"))
        self.num_key_value_heads = int(raw.get("num_key_value_heads") or self.num_attention_heads)
        hd = raw.get("head_dim")
        self.head_dim = int(hd) if hd is not None else self.hidden_size // self.num_attention_heads
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-6))
        rope_params = raw.get("rope_parameters") or {}
        self.rope_theta = float(raw.get("rope_theta", rope_params.get("rope_theta", 1000000.0)))
        self.vocab_size = int(need("vocab_size"))
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        if raw.get("hidden_act", "silu") != "silu":
            raise ConfigError(f'{source}: hidden_act {raw.get("hidden_act")!r} is not supported (Qwen3 uses silu)')
        if raw.get("attention_bias", False):
            raise ConfigError(f"{source}: attention_bias true is not supported")
        scaling = raw.get("rope_scaling")
        rope_type = rope_params.get("rope_type", "default") if rope_params else "default"
        if scaling not in (None, {}) or rope_type != "default":
            raise ConfigError(f"{source}: rope scaling {scaling or rope_params!r} is not supported by the minimal model")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"{source}: num_attention_heads is not a multiple of num_key_value_heads")
        if self.head_dim % 2:
            raise ConfigError(f"{source}: head_dim {self.head_dim} must be even")


def load_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e


# ------------------------------------------------------------------------------------------------
# modules


class Qwen3RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, dtype=None, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, dtype=dtype, device=device))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(_upcast(input_dtype))
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def _linear(n_in: int, n_out: int, dtype, device) -> nn.Linear:
    return nn.Linear(n_in, n_out, bias=False, dtype=dtype, device=device)


class Qwen3MLP(nn.Module):
    def __init__(self, cfg: Qwen3Config, dtype, device):
        super().__init__()
        self.gate_proj = _linear(cfg.hidden_size, cfg.intermediate_size, dtype, device)
        self.up_proj = _linear(cfg.hidden_size, cfg.intermediate_size, dtype, device)
        self.down_proj = _linear(cfg.intermediate_size, cfg.hidden_size, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, kv_heads, T, hd] -> [B, kv_heads * n_rep, T, hd]; head h uses kv head h // n_rep."""
    batch, kv_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, kv_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, kv_heads * n_rep, slen, head_dim)


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """transformers' default inv_freq, float32 on the CPU."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype=torch.float) / head_dim))


def rope_cos_sin(inv_freq: torch.Tensor, position_ids: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, T, head_dim] computed in float32 as Qwen3RotaryEmbedding.forward, cast to dtype."""
    inv = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1).to(position_ids.device)
    pos = position_ids[:, None, :].float()
    freqs = (inv @ pos).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Qwen3Attention(nn.Module):
    def __init__(self, cfg: Qwen3Config, dtype, device):
        super().__init__()
        self.head_dim = cfg.head_dim
        self.num_key_value_groups = cfg.num_attention_heads // cfg.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        d = cfg.hidden_size
        self.q_proj = _linear(d, cfg.num_attention_heads * self.head_dim, dtype, device)
        self.k_proj = _linear(d, cfg.num_key_value_heads * self.head_dim, dtype, device)
        self.v_proj = _linear(d, cfg.num_key_value_heads * self.head_dim, dtype, device)
        self.o_proj = _linear(cfg.num_attention_heads * self.head_dim, d, dtype, device)
        self.q_norm = Qwen3RMSNorm(self.head_dim, cfg.rms_norm_eps, dtype, device)
        self.k_norm = Qwen3RMSNorm(self.head_dim, cfg.rms_norm_eps, dtype, device)

    def forward(self, hidden_states, cos, sin, mask):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        q = self.q_norm(self.q_proj(hidden_states).view(hidden_shape)).transpose(1, 2)
        k = self.k_norm(self.k_proj(hidden_states).view(hidden_shape)).transpose(1, 2)
        v = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * c) + (rotate_half(q) * s)
        k = (k * c) + (rotate_half(k) * s)
        k = repeat_kv(k, self.num_key_value_groups)
        v = repeat_kv(v, self.num_key_value_groups)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        w = w + mask
        w = F.softmax(w, dim=-1, dtype=_upcast(q.dtype)).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous()
        out = out.reshape(*input_shape, -1).contiguous()
        return self.o_proj(out)


class Qwen3DecoderLayer(nn.Module):
    def __init__(self, cfg: Qwen3Config, dtype, device):
        super().__init__()
        self.self_attn = Qwen3Attention(cfg, dtype, device)
        self.mlp = Qwen3MLP(cfg, dtype, device)
        self.input_layernorm = Qwen3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype, device)
        self.post_attention_layernorm = Qwen3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype, device)

    def forward(self, hidden_states, cos, sin, mask):
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states), cos, sin, mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + hidden_states


class Qwen3Embedding(nn.Module):
    def __init__(self, vocab: int, d: int, dtype, device):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab, d, dtype=dtype, device=device))

    def forward(self, input_ids):
        return F.embedding(input_ids, self.weight)


class Qwen3Model(nn.Module):
    def __init__(self, cfg: Qwen3Config, dtype, device):
        super().__init__()
        self.config = cfg
        self.embed_tokens = Qwen3Embedding(cfg.vocab_size, cfg.hidden_size, dtype, device)
        self.layers = nn.ModuleList([Qwen3DecoderLayer(cfg, dtype, device) for _ in range(cfg.num_hidden_layers)])
        self.norm = Qwen3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype, device)
        self.register_buffer("inv_freq", rope_inv_freq(cfg.head_dim, cfg.rope_theta), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed_tokens(input_ids)
        B, T = input_ids.shape
        position_ids = torch.arange(T, device=h.device).unsqueeze(0).expand(B, -1)
        cos, sin = rope_cos_sin(self.inv_freq.to(h.device), position_ids, h.dtype)
        allowed = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        mask = torch.zeros(T, T, dtype=h.dtype, device=h.device)
        mask = mask.masked_fill(~allowed, torch.finfo(h.dtype).min)[None, None]
        for layer in self.layers:
            h = layer_output(layer(h, cos, sin, mask))
        return self.norm(h)


class CausalLMOutput:
    def __init__(self, logits):
        self.logits = logits


class Qwen3ForCausalLM(nn.Module):
    """Minimal Qwen3ForCausalLM: `model(input_ids=ids).logits` as in transformers."""

    def __init__(self, cfg: Qwen3Config, dtype=torch.float32, device="cpu", tied: bool = True):
        super().__init__()
        self.config = cfg
        self.model = Qwen3Model(cfg, dtype, device)
        self.lm_head = _linear(cfg.hidden_size, cfg.vocab_size, dtype, device)
        if tied:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, **unused) -> CausalLMOutput:
        return CausalLMOutput(self.lm_head(self.model(input_ids)))

    @classmethod
    def from_pretrained(cls, model_dir: str, dtype: torch.dtype = torch.float32, device="cpu") -> "Qwen3ForCausalLM":
        raw = load_config(model_dir)
        cfg = Qwen3Config(raw, os.path.join(model_dir, "config.json"))
        names = set(checkpoint_files(model_dir))
        tied = "lm_head.weight" not in names
        # Build on the meta device (no memory, no random init), then allocate uninitialised storage.
        model = cls(cfg, dtype, "meta", tied=tied)
        model = model.to_empty(device=device)
        if tied:  # to_empty breaks the sharing; restore it
            model.lm_head.weight = model.model.embed_tokens.weight
        model.model.inv_freq = rope_inv_freq(cfg.head_dim, cfg.rope_theta).to(device)
        params = dict(model.named_parameters())  # a tied lm_head.weight is listed once, as embed_tokens
        loaded = set()
        for name, t in iter_checkpoint_tensors(model_dir):
            if name not in params:
                continue  # e.g. rotary inv_freq buffers some exports carry
            p = params[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ConfigError(f"{model_dir}: tensor {name} has shape {list(t.shape)}, expected {list(p.shape)}")
            with torch.no_grad():
                p.copy_(t.to(dtype))
            loaded.add(name)
        missing = sorted(set(params) - loaded)
        if missing:
            raise ConfigError(f"{model_dir}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        model.eval()
        model.requires_grad_(False)
        return model


# ------------------------------------------------------------------------------------------------
# loading either implementation


def transformers_available() -> bool:
    try:
        from transformers import Qwen3ForCausalLM  # noqa: F401
    except Exception:
        return False
    return True


def load_qwen3(model_dir: str, dtype: str = "float32", device: str = "cpu", impl: str = "auto"):
    """(model, implementation name). impl: "auto" (transformers when importable), "transformers", "minimal"."""
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    td = DTYPES[dtype]
    if impl not in ("auto", "transformers", "minimal"):
        raise ConfigError(f"--impl {impl}: expected auto, transformers or minimal")
    if impl == "transformers" or (impl == "auto" and transformers_available()):
        from transformers import Qwen3ForCausalLM as HFQwen3

        import importlib.util

        # eager attention: the fused SDPA / flash kernels have no double backward
        kwargs = {"torch_dtype": td, "attn_implementation": "eager"}
        if device != "cpu" and importlib.util.find_spec("accelerate") is not None:
            kwargs["device_map"] = device  # load straight onto the GPU
        model = HFQwen3.from_pretrained(model_dir, **kwargs)
        model = model.to(device)
        model.eval()
        model.requires_grad_(False)
        return model, "transformers"
    return Qwen3ForCausalLM.from_pretrained(model_dir, td, device), "minimal"


def decoder_layers(model) -> nn.ModuleList:
    return model.model.layers


def layer_output(output) -> torch.Tensor:
    """A decoder layer's hidden states, whether it returns a tensor or a tuple (older transformers)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def run_model(model, input_ids: torch.Tensor):
    """Full forward; returns logits [B, T, V]."""
    kwargs = {"use_cache": False} if not isinstance(model, Qwen3ForCausalLM) else {}
    return model(input_ids=input_ids, **kwargs).logits


def num_layers(model) -> int:
    return len(decoder_layers(model))


def hidden_size(model) -> int:
    return model.config.hidden_size


def vocab_size(model) -> int:
    return model.config.vocab_size
