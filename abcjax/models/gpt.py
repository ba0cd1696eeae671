"""Decoder-only Transformer (GPT): pre-LayerNorm blocks, causal attention, GELU MLP, tied head.

Shapes: B batch, L sequence, D width, H heads, K head width, V vocabulary, T cache length,
W tokens kept when the cache is re-prefilled.
Decoding keeps a key/value cache of T = min(max_len, block_size) positions. When it is full, the
next `decode_step` re-prefills it from the last T//2 tokens in one forward pass (positions restart
at 0) and goes on: samples can be longer than the learned positions, at O(1) amortised cost per
token (one (T//2)-token forward every T//2 steps).
"""

from __future__ import annotations

import math
import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from abcjax import checks
from abcjax.models import registry
from abcjax.models.configs import CpuPreset, ModelConfig
from abcjax.models.layers import dense_dot_general, embed

Params = Any
DecodeState = dict[str, Any]

# Attention kernels, all the same function: "xla" (einsum + mask over the whole L x L square, any
# device and dtype), "blocked" (einsums over the lower staircase of tiles only: a quarter less
# attention work at L = 256; the CPU default), "cudnn" (fused flash attention: NVIDIA GPUs,
# bfloat16, head width up to 128), "auto" (cudnn on NVIDIA GPUs in bfloat16, blocked on CPU, else
# xla).
ATTENTION_IMPLS = ("auto", "xla", "blocked", "cudnn")


def _shape(n_layer: int, n_head: int, d_model: int) -> dict[str, int]:
  return {"n_layer": n_layer, "n_head": n_head, "d_model": d_model}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPTConfig(ModelConfig):
  """A decoder-only Transformer.

  Parameterisation (it reproduces table A's published counts for a 99-character vocabulary):
  token embedding V*d (tied with the output head, no output bias), learned positions block*d;
  per block: LayerNorm 2d, fused qkv 3d^2 and output projection d^2 (no attention biases),
  LayerNorm 2d, MLP d->4d->d with biases (8d^2 + 5d); final LayerNorm 2d.
  N = V*d + block*d + L*(12d^2 + 9d) + 2d, e.g. table A xl 100,067,136 (published 100.07M).
  """

  arch: ClassVar[str] = "gpt"
  SIZES: ClassVar[dict[str, dict[str, dict[str, int]]]] = {
      "A": {"tiny": _shape(2, 6, 192), "small": _shape(6, 8, 256), "medium": _shape(8, 8, 448),
            "large": _shape(10, 8, 640), "xl": _shape(12, 8, 832)},
      "B": {"tiny": _shape(3, 3, 192),     # published: 3 layers, 3 heads, ~1.4M
            "small": _shape(6, 4, 256),    # chosen: 4.82M (TABLE_B_CHOICES)
            "medium": _shape(6, 7, 448),   # chosen: 14.63M
            "large": _shape(8, 12, 720),   # published: 8 layers, 12 heads, ~50M
            "xl": _shape(12, 12, 864)},    # published: 12 layers, 12 heads, ~107M
  }
  PUBLISHED_PARAMS: ClassVar[dict[str, dict[str, float]]] = {
      "A": {"tiny": 0.96e6, "small": 4.82e6, "medium": 19.46e6, "large": 49.44e6, "xl": 100.07e6},
      "B": {"tiny": 1.4e6, "large": 50e6, "xl": 107e6},
  }
  # Laptop shapes (abcjax.train.presets, the cpu preset; both tables): depth grows slowly with
  # width and heads stay 16 wide, so each step of the ladder is ~2-3x the parameters (30K to 1.2M)
  # at shapes a CPU runs efficiently. Rates from experiments.lr_search (BUILD_NOTES.md).
  CPU: ClassVar[CpuPreset] = CpuPreset(
      sizes={"tiny": _shape(2, 2, 32), "small": _shape(3, 3, 48), "medium": _shape(4, 4, 64),
             "large": _shape(5, 6, 96), "xl": _shape(6, 8, 128)},
      lr={"tiny": 1.6e-2, "small": 1.2e-2, "medium": 8e-3, "large": 6e-3, "xl": 4e-3},
      best_model={"data.tokens": 1_600_000, "data.epochs": 3.0, "eval.every": 200,
                  "run.checkpoint_every": 200, "run.log_every": 20})

  n_head: int = 1            # attention heads; they divide d_model
  attention: str = "auto"    # attention kernel, one of ATTENTION_IMPLS (the same function)

  def validate(self) -> None:
    super().validate()
    checks.require([
        ("n_head", self.n_head > 0 and self.d_model % self.n_head == 0,
         f"a positive divisor of d_model={self.d_model}", self.n_head),
        ("attention", self.attention in ATTENTION_IMPLS, f"one of {list(ATTENTION_IMPLS)}",
         self.attention),
    ], prefix="model.")

  def width_unit(self) -> int:
    return self.n_head  # widths stay divisible by the head count

  def num_embedding_params(self) -> int:
    return (self.vocab_size + self.block_size) * self.d_model

  def num_non_embedding_params(self) -> int:
    d = self.d_model
    per_block = 12 * d * d + 9 * d  # qkv 3d^2 + proj d^2 + mlp 8d^2 + mlp biases 5d + 2 LN 4d
    return self.n_layer * per_block + 2 * d

  def flops_per_token(self) -> float:
    """The base count plus attention: 2 * n_layer * block * d forward (QK^T and AV averaged over
    causal positions: Kaplan's 2*n_layer*n_ctx*d_attn; PaLM's 12*L*d*T training term counts the
    full square instead), times 3 for training."""
    return super().flops_per_token() + float(3 * 2 * self.n_layer * self.block_size * self.d_model)


def cudnn_attention_applies(dtype: str, head_dim: int) -> bool:
  """Whether cuDNN's fused attention can run here: an NVIDIA GPU, 16-bit inputs, head width <= 128.

  cuDNN wants head widths in multiples of 8; `causal_attention` pads others (table B large: 60).
  """
  return jax.default_backend() == "gpu" and dtype in ("bfloat16", "float16") and head_dim <= 128


def attention_impl(config: GPTConfig) -> str:
  """The kernel `config.attention` resolves to on this backend: "xla", "blocked" or "cudnn"."""
  head_dim = config.d_model // max(config.n_head, 1)
  if config.attention == "auto":
    if cudnn_attention_applies(config.dtype, head_dim):
      return "cudnn"
    return "blocked" if jax.default_backend() == "cpu" else "xla"
  if config.attention == "cudnn" and not cudnn_attention_applies(config.dtype, head_dim):
    raise ValueError(f"attention='cudnn' needs an NVIDIA GPU, bfloat16 and a head width up to "
                     f"128; got backend {jax.default_backend()!r}, dtype "
                     f"{config.dtype!r}, head width {head_dim}. Use attention='auto' or 'xla'.")
  return config.attention


def causal_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array,
                     impl: str = "xla", head_multiple: int | None = None) -> jax.Array:
  """Causal softmax attention; logits and softmax in float32 whatever the input dtype.

  impl "xla": jax.nn.dot_product_attention's XLA path (einsum, fp32 softmax, causal mask), measured
  on 2 CPU cores against a hand-written einsum+mask: equal within noise for the training step.
  impl "blocked": `blocked_causal_attention`, the CPU default.
  impl "cudnn": cuDNN's fused (flash) attention on NVIDIA GPUs; never materialises the L x L logits.
  Head widths are zero-padded to a multiple of `head_multiple` (default: 8 for cuDNN, which needs
  it, else 1): zeros add nothing to q.k or to the output, the scale keeps the true width, and the
  output is sliced back.
  """
  if impl == "blocked":
    return blocked_causal_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK)
  if head_multiple is None:
    head_multiple = 8 if impl == "cudnn" else 1
  head_dim = q_BxLxHxK.shape[-1]
  pad = -head_dim % head_multiple
  if pad:
    widths = [(0, 0)] * (q_BxLxHxK.ndim - 1) + [(0, pad)]
    q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (jnp.pad(a, widths) for a in (q_BxLxHxK, k_BxLxHxK, v_BxLxHxK))
  y = jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True,
                                   scale=1.0 / math.sqrt(head_dim),
                                   implementation=None if impl == "xla" else impl)
  return y[..., :head_dim]


def blocked_causal_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array,
                             block: int | None = None) -> jax.Array:
  """Causal attention computed tile row by tile row, skipping the tiles above the diagonal.

  Query rows [i*T, (i+1)*T) attend to keys [0, (i+1)*T) only, so with n tiles a side the logits,
  softmax and both matmuls cover n(n+1)/2 of the n^2 tiles (L = 256 in tiles of 128: 75%). Only
  the diagonal tile needs the mask; masked logits get the float32 minimum, whose softmax weight is
  exactly 0 as in the full-square kernel. Tile T: min(128, L // 2), 128 measured fastest on 2 CPU
  cores at L = 256 (fwd+bwd 547 ms against 564 for 64, 660 for 32 and 840 for the full square).
  Lengths that do not split into 2+ equal tiles fall back to the full square.
  """
  length, head_dim = q_BxLxHxK.shape[1], q_BxLxHxK.shape[-1]
  block = block or min(128, length // 2)
  if block < 1 or length % block or length // block < 2:
    return jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True)
  scale = 1.0 / math.sqrt(head_dim)
  outs = []
  for i in range(length // block):
    lo, hi = i * block, (i + 1) * block
    logits_BxHxTxS = jnp.einsum("bqhk,bshk->bhqs", q_BxLxHxK[:, lo:hi], k_BxLxHxK[:, :hi],
                                preferred_element_type=jnp.float32) * scale
    causal_TxS = jnp.arange(hi)[None, :] <= jnp.arange(lo, hi)[:, None]
    logits_BxHxTxS = jnp.where(causal_TxS, logits_BxHxTxS, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits_BxHxTxS, axis=-1).astype(v_BxLxHxK.dtype)
    outs.append(jnp.einsum("bhqs,bshk->bqhk", probs, v_BxLxHxK[:, :hi]))
  return jnp.concatenate(outs, axis=1)


class CausalSelfAttention(nn.Module):
  config: GPTConfig

  def setup(self):
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    std = 0.02
    # No biases on the attention projections (table A). One fused matmul for q, k and v.
    self.c_attn = nn.Dense(3 * cfg.d_model, use_bias=False, dtype=dtype,
                           kernel_init=nn.initializers.normal(std),
                           dot_general=dense_dot_general(cfg.cpu_backward))
    self.c_proj = nn.Dense(cfg.d_model, use_bias=False, dtype=dtype,
                           kernel_init=nn.initializers.normal(std / math.sqrt(2 * cfg.n_layer)),
                           dot_general=dense_dot_general(cfg.cpu_backward))
    self.resid_drop = nn.Dropout(cfg.dropout)

  def _qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    cfg = self.config
    head_dim = cfg.d_model // cfg.n_head
    qkv = self.c_attn(x).reshape(*x.shape[:-1], 3, cfg.n_head, head_dim)
    return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

  def __call__(self, x_BxLxD: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    q, k, v = self._qkv(x_BxLxD)
    y_BxLxHxK = causal_attention(q, k, v, attention_impl(self.config))
    y = self.c_proj(y_BxLxHxK.reshape(x_BxLxD.shape))
    return self.resid_drop(y, deterministic=not train), (k, v)

  def decode(self, x_BxD: jax.Array, k_BxHxTxK: jax.Array, v_BxHxTxK: jax.Array,
             pos: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One token at cache position `pos` (same for every row).

    The cache is head-major (B, H, T, K) so both attention matmuls are batched over (B, H)
    without transposing the cache at every step.
    """
    q_BxHxK, k_new, v_new = self._qkv(x_BxD)
    k_BxHxTxK = jax.lax.dynamic_update_slice(
        k_BxHxTxK, k_new[:, :, None].astype(k_BxHxTxK.dtype), (0, 0, pos, 0))
    v_BxHxTxK = jax.lax.dynamic_update_slice(
        v_BxHxTxK, v_new[:, :, None].astype(v_BxHxTxK.dtype), (0, 0, pos, 0))
    scale = 1.0 / math.sqrt(q_BxHxK.shape[-1])
    # Attention logits and softmax in float32.
    logits_BxHxT = jnp.einsum("bhk,bhtk->bht", q_BxHxK, k_BxHxTxK,
                              preferred_element_type=jnp.float32) * scale
    valid_T = jnp.arange(k_BxHxTxK.shape[2]) <= pos
    logits_BxHxT = jnp.where(valid_T, logits_BxHxT, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits_BxHxT, axis=-1).astype(v_BxHxTxK.dtype)
    y_BxHxK = jnp.einsum("bht,bhtk->bhk", probs, v_BxHxTxK)
    return self.c_proj(y_BxHxK.reshape(x_BxD.shape)), k_BxHxTxK, v_BxHxTxK


class MLP(nn.Module):
  config: GPTConfig

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    h = nn.Dense(4 * cfg.d_model, dtype=dtype, kernel_init=nn.initializers.normal(0.02),
                 dot_general=dense_dot_general(cfg.cpu_backward), name="c_fc")(x)
    h = jax.nn.gelu(h, approximate=True)
    h = nn.Dense(cfg.d_model, dtype=dtype, name="c_proj",
                 kernel_init=nn.initializers.normal(0.02 / math.sqrt(2 * cfg.n_layer)),
                 dot_general=dense_dot_general(cfg.cpu_backward))(h)
    return nn.Dropout(cfg.dropout)(h, deterministic=not train)


def _layer_norm(dtype: jnp.dtype, name: str) -> nn.LayerNorm:
  # Statistics in float32 (force_float32_reductions); output in the compute dtype.
  return nn.LayerNorm(epsilon=1e-5, dtype=dtype, force_float32_reductions=True, name=name)


class Block(nn.Module):
  config: GPTConfig

  def setup(self):
    dtype = jnp.dtype(self.config.dtype)
    self.ln_1 = _layer_norm(dtype, "ln_1")
    self.attn = CausalSelfAttention(self.config)
    self.ln_2 = _layer_norm(dtype, "ln_2")
    self.mlp = MLP(self.config)

  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    a, kv = self.attn(self.ln_1(x), train)
    x = x + a
    return x + self.mlp(self.ln_2(x), train), kv

  def decode(self, x_BxD, k, v, pos):
    a, k, v = self.attn.decode(self.ln_1(x_BxD), k, v, pos)
    x_BxD = x_BxD + a
    return x_BxD + self.mlp(self.ln_2(x_BxD), False), k, v


class GPT(nn.Module):
  config: GPTConfig

  def setup(self):
    cfg = self.config
    self.dtype = jnp.dtype(cfg.dtype)
    self.wte = self.param("wte", nn.initializers.normal(0.02), (cfg.vocab_size, cfg.d_model))
    self.wpe = self.param("wpe", nn.initializers.normal(0.02), (cfg.block_size, cfg.d_model))
    self.blocks = [Block(cfg, name=f"h_{i}") for i in range(cfg.n_layer)]
    self.ln_f = _layer_norm(self.dtype, "ln_f")
    self.drop = nn.Dropout(cfg.dropout)

  def _head(self, x: jax.Array) -> jax.Array:
    # Tied output head; logits in float32 even when the matmul inputs are bfloat16.
    return jnp.einsum("...d,vd->...v", self.ln_f(x).astype(self.dtype), self.wte.astype(self.dtype),
                      preferred_element_type=jnp.float32)

  def forward(self, tokens_BxL: jax.Array, train: bool = False):
    length = tokens_BxL.shape[1]
    if length > self.config.block_size:
      raise ValueError(f"sequence length {length} > block_size {self.config.block_size}")
    x = embed(self.wte, tokens_BxL) + self.wpe[:length]
    x = self.drop(x.astype(self.dtype), deterministic=not train)
    kvs = []
    for block in self.blocks:
      x, kv = block(x, train)
      kvs.append(kv)
    return x, kvs

  def __call__(self, tokens_BxL: jax.Array, train: bool = False) -> jax.Array:
    x, _ = self.forward(tokens_BxL, train)
    return self._head(x)

  def prefill_kv(self, tokens_BxL: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    return self.forward(tokens_BxL)[1]

  def decode(self, token_B: jax.Array, ks: tuple, vs: tuple, pos: jax.Array):
    x = (self.wte[token_B] + self.wpe[pos]).astype(self.dtype)
    new_ks, new_vs = [], []
    for block, k, v in zip(self.blocks, ks, vs):
      x, k, v = block.decode(x, k, v, pos)
      new_ks.append(k)
      new_vs.append(v)
    return self._head(x), tuple(new_ks), tuple(new_vs)


def init_decode_state(config: GPTConfig, batch_size: int, max_len: int) -> DecodeState:
  """Empty key/value cache of min(max_len, block_size) positions, plus the tokens it holds."""
  cache_len = min(max_len, config.block_size)
  head_dim = config.d_model // config.n_head
  shape = (batch_size, config.n_head, cache_len, head_dim)
  zeros = lambda: jnp.zeros(shape, jnp.dtype(config.dtype))
  return {
      "k": tuple(zeros() for _ in range(config.n_layer)),
      "v": tuple(zeros() for _ in range(config.n_layer)),
      "tokens": jnp.zeros((batch_size, cache_len), jnp.int32),
      "pos": jnp.zeros((), jnp.int32),
  }


def _refill(module: GPT, params: Params, state: DecodeState) -> DecodeState:
  """Full cache: keep the last T//2 tokens, recompute their keys/values at positions 0..T//2-1."""
  cache_len = state["tokens"].shape[1]
  keep = max(cache_len // 2, 1)
  window_BxW = state["tokens"][:, cache_len - keep:]
  kvs = module.apply({"params": params}, window_BxW, method=GPT.prefill_kv)
  place = lambda cache, new_BxWxHxK: jax.lax.dynamic_update_slice(
      jnp.zeros_like(cache), new_BxWxHxK.transpose(0, 2, 1, 3).astype(cache.dtype), (0, 0, 0, 0))
  return {
      "k": tuple(place(c, k) for c, (k, _) in zip(state["k"], kvs)),
      "v": tuple(place(c, v) for c, (_, v) in zip(state["v"], kvs)),
      "tokens": jax.lax.dynamic_update_slice(jnp.zeros_like(state["tokens"]), window_BxW, (0, 0)),
      "pos": jnp.asarray(keep, jnp.int32),
  }


def decode_step(module: GPT, params: Params, state: DecodeState,
                token_B: jax.Array) -> tuple[jax.Array, DecodeState]:
  cache_len = state["tokens"].shape[1]
  state = jax.lax.cond(state["pos"] >= cache_len, lambda s: _refill(module, params, s),
                       lambda s: s, state)
  pos = state["pos"]
  token_B = token_B.astype(jnp.int32)
  logits_BxV, ks, vs = module.apply({"params": params}, token_B, state["k"], state["v"], pos,
                                    method=GPT.decode)
  tokens = jax.lax.dynamic_update_slice(state["tokens"], token_B[:, None], (0, pos))
  return logits_BxV, {"k": ks, "v": vs, "tokens": tokens, "pos": pos + 1}


registry.register(GPTConfig, GPT, init_decode_state=init_decode_state, decode_step=decode_step)
