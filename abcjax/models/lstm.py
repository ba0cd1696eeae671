"""Character LSTM: embedding, stacked LSTM layers, LayerNorm, head tied to the embedding.

Each layer is PyTorch-style (W_ih, W_hh, b_ih, b_hh; gate order i, f, g, o), which reproduces the
published table-A counts exactly. For speed the input projection x @ W_ih + b_ih + b_hh of all time
steps is one matmul outside the time loop; the `nn.scan` body holds only h @ W_hh and the gates.
The first layer projects the embedding table once, (wte @ W_ih)[tokens], instead of every token's
embedding: the same numbers from a [V, 4D] matmul in place of a [B*L, 4D] one, when V < B*L.
Activations run time-major (L, B, D) inside the stack so the scan slices contiguous memory.
With the config's `cpu_backward` the recurrence has a hand-written backward pass (`nn.custom_vjp`;
the same function, measured faster on one CPU device): the forward scan keeps the gate activations,
the reverse scan carries only dh and dc, and the W_hh gradient is one [D, L*B] x [L*B, 4D] matmul
after it, in place of L small accumulating ones inside the loop.
Decoding carries (c, h) per layer: one scan step per token, no limit on length.
"""

from __future__ import annotations

import math
import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from abcjax.models import registry
from abcjax.models.configs import CpuPreset, RecurrentConfig
from abcjax.models.layers import dense_dot_general, embed

Params = Any
DecodeState = dict[str, Any]


def _shape(n_layer: int, d_model: int) -> dict[str, int]:
  return {"n_layer": n_layer, "d_model": d_model}


# Table A (exact) and table B (large published, the others chosen: configs.TABLE_B_CHOICES).
RECURRENT_SIZES = {
    "A": {"tiny": _shape(1, 128), "small": _shape(2, 256), "medium": _shape(2, 384),
          "large": _shape(3, 512)},
    "B": {"tiny": _shape(2, 288), "small": _shape(3, 416), "medium": _shape(4, 640),
          "large": _shape(5, 1024)},
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSTMConfig(RecurrentConfig):
  """A stack of LSTM layers.

  Parameterisation: token embedding V*d (tied head, no output bias); per layer PyTorch-style
  W_ih 4d^2, W_hh 4d^2 and two bias vectors b_ih, b_hh (8d); final LayerNorm 2d.
  N = V*d + L*(8d^2 + 8d) + 2d, which equals every published table-A count exactly.
  """

  arch: ClassVar[str] = "lstm"
  GATES: ClassVar[int] = 4
  SIZES: ClassVar[dict[str, dict[str, dict[str, int]]]] = RECURRENT_SIZES
  PUBLISHED_PARAMS: ClassVar[dict[str, dict[str, float]]] = {
      "A": {"tiny": 145_024, "small": 1_078_528, "medium": 2_404_224, "large": 6_355_456},
      "B": {"large": 42.2e6},
  }
  # The LSTM table is 4-16x smaller than the GPT table to begin with, so its widths shrink less.
  # Rates from experiments.lr_search (BUILD_NOTES.md).
  # The best model trains on windows of 512 characters (batch 32, the same 16K tokens a step): an
  # LSTM costs the same per token at any window length, and 512 holds a whole tune from its header
  # (95% of tunes are shorter than 531 characters) as sampling does.
  CPU: ClassVar[CpuPreset] = CpuPreset(
      width_scale=0.25,
      lr={"tiny": 4.8e-2, "small": 4e-2, "medium": 1.6e-2, "large": 1.2e-2},
      best_model={"data.tokens": 4_000_000, "data.epochs": 8.0, "model.block_size": 512,
                  "data.batch_size": 32, "eval.every": 100, "run.checkpoint_every": 100,
                  "run.log_every": 20},
      best_lr={"large": 4e-3})


class LSTMRecurrence(nn.Module):
  """One time step: gates = xproj_t + h @ W_hh. Scanned over time with the kernel broadcast."""

  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, carry, xproj_BxG: jax.Array):
    """(c, h), xproj_t -> (c', h'), (h', activated gates [i f g o], c'): the last two for the backward."""
    c_BxD, h_BxD = carry
    w_hh = self.param("kernel", nn.initializers.orthogonal(), (self.hidden, 4 * self.hidden))
    gates = xproj_BxG + h_BxD @ w_hh.astype(self.dtype)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    i, g, o = jax.nn.sigmoid(i), jnp.tanh(g), jax.nn.sigmoid(o)
    # The forget gate and the cell state stay float32 whatever the compute dtype.
    f = jax.nn.sigmoid(f.astype(jnp.float32))
    c_BxD = f * c_BxD + (i * g).astype(jnp.float32)
    h_BxD = (o * jnp.tanh(c_BxD).astype(self.dtype)).astype(self.dtype)
    acts = jnp.concatenate([i, f.astype(self.dtype), g, o], axis=-1)
    return (c_BxD, h_BxD), (h_BxD, acts, c_BxD)


def _recurrence_backward(residuals, cotangents):
  """Reverse scan over the saved gates; returns (d params, d carry_in, d xproj)."""
  w_hh, (c0, h0), hs_LxBxD, acts_LxBxG, cs_LxBxD, xproj_dtype_token = residuals
  (dc_last, dh_last), dhs_LxBxD = cotangents
  f32 = jnp.float32
  cs_prev = jnp.concatenate([c0[None], cs_LxBxD[:-1]], axis=0)
  w_hh_t = w_hh.T.astype(f32)

  def step(carry, inputs):
    dh_next, dc_next = carry
    dh_out, acts, c, c_prev = inputs
    i, f, g, o = jnp.split(acts.astype(f32), 4, axis=-1)
    dh = dh_out.astype(f32) + dh_next
    tanh_c = jnp.tanh(c)
    dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
    dgates = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                              dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], axis=-1)
    return (dgates @ w_hh_t, dc * f), dgates

  (dh0, dc0), dgates_LxBxG = jax.lax.scan(
      step, (dh_last.astype(f32), dc_last.astype(f32)), (dhs_LxBxD, acts_LxBxG, cs_LxBxD, cs_prev),
      reverse=True)
  hs_prev = jnp.concatenate([h0[None], hs_LxBxD[:-1]], axis=0)
  d_w_hh = jnp.matmul(hs_prev.reshape(-1, hs_prev.shape[-1]).T.astype(f32),
                      dgates_LxBxG.reshape(-1, dgates_LxBxG.shape[-1]))
  xproj_dtype = xproj_dtype_token.dtype
  return ({"params": {"kernel": d_w_hh.astype(w_hh.dtype)}},
          (dc0.astype(c0.dtype), dh0.astype(h0.dtype)), dgates_LxBxG.astype(xproj_dtype))


def _run_recurrence(scan_module, carry, xproj_LxBxG):
  carry, (hs, _, _) = scan_module(carry, xproj_LxBxG)
  return carry, hs


def _run_recurrence_keeping_gates(scan_module, carry, xproj_LxBxG):
  carry_out, (hs, acts, cs) = scan_module(carry, xproj_LxBxG)
  w_hh = scan_module.variables["params"]["kernel"]
  # An empty array carries xproj's dtype to the backward pass, which returns its cotangent.
  return (carry_out, hs), (w_hh, carry, hs, acts, cs, jnp.zeros((0,), xproj_LxBxG.dtype))


_recurrence_with_manual_backward = nn.custom_vjp(
    _run_recurrence, forward_fn=_run_recurrence_keeping_gates, backward_fn=_recurrence_backward)


def _hh_bias_init(key, shape, dtype=jnp.float32):
  del key
  hidden = shape[0] // 4
  # Forget-gate bias 1 (gate order i, f, g, o), a standard LSTM initialisation.
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


class LSTMLayer(nn.Module):
  config: LSTMConfig

  def setup(self):
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    d = cfg.d_model
    self.ih = nn.Dense(4 * d, dtype=dtype, kernel_init=nn.initializers.lecun_normal(),
                       dot_general=dense_dot_general(cfg.cpu_backward))
    self.hh_bias = self.param("hh_bias", _hh_bias_init, (4 * d,))
    scan = nn.scan(LSTMRecurrence, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0, unroll=cfg.unroll)
    self.hh = scan(hidden=d, dtype=dtype)

  def project(self, x: jax.Array) -> jax.Array:
    """x @ W_ih + b_ih + b_hh for any leading shape: every step's input in one matmul."""
    return self.ih(x) + self.hh_bias.astype(jnp.dtype(self.config.dtype))

  def __call__(self, xproj_LxBxG: jax.Array, carry) -> tuple[Any, jax.Array]:
    """Runs the recurrence over projected inputs; only h @ W_hh and the gates are in the loop."""
    if self.config.cpu_backward and not self.is_initializing():
      return _recurrence_with_manual_backward(self.hh, carry, xproj_LxBxG)
    return _run_recurrence(self.hh, carry, xproj_LxBxG)


class LSTM(nn.Module):
  config: LSTMConfig

  def setup(self):
    cfg = self.config
    self.dtype = jnp.dtype(cfg.dtype)
    # Scale 1/sqrt(d) so the tied head starts with unit-scale logits after the final LayerNorm.
    self.wte = self.param("wte", nn.initializers.normal(1.0 / math.sqrt(cfg.d_model)),
                          (cfg.vocab_size, cfg.d_model))
    self.layers = [LSTMLayer(cfg, name=f"lstm_{i}") for i in range(cfg.n_layer)]
    self.ln_f = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, force_float32_reductions=True)
    self.drop = nn.Dropout(cfg.dropout)

  def _head(self, x: jax.Array, spec: str) -> jax.Array:
    # Tied output head; logits in float32 even when the matmul inputs are bfloat16.
    return jnp.einsum(spec, self.ln_f(x).astype(self.dtype), self.wte.astype(self.dtype),
                      preferred_element_type=jnp.float32)

  def _first_projection(self, tokens: jax.Array) -> jax.Array:
    """Layer 0's projected input for `tokens` (any shape) -> tokens.shape + (4D,)."""
    first = self.layers[0]
    if self.config.vocab_size < tokens.size:
      # Project the V table rows once and pick rows: (wte @ W_ih)[t] == wte[t] @ W_ih.
      return embed(first.project(self.wte.astype(self.dtype)), tokens)
    return first.project(embed(self.wte, tokens).astype(self.dtype))

  def _stack(self, tokens: jax.Array, carries, train: bool):
    """tokens (L, B) -> top layer's outputs (L, B, D) and every layer's final (c, h)."""
    new_carries = []
    xproj_LxBxG = self._first_projection(tokens)
    for i, (layer, carry) in enumerate(zip(self.layers, carries)):
      if i:
        xproj_LxBxG = layer.project(x_LxBxD)
      carry, x_LxBxD = layer(xproj_LxBxG, carry)
      new_carries.append(carry)
      if i + 1 < len(self.layers):  # dropout between layers, as PyTorch nn.LSTM
        x_LxBxD = self.drop(x_LxBxD, deterministic=not train)
    return x_LxBxD, tuple(new_carries)

  def __call__(self, tokens_BxL: jax.Array, train: bool = False) -> jax.Array:
    batch = tokens_BxL.shape[0]
    zero = zero_carry(self.config, batch)
    x_LxBxD, _ = self._stack(tokens_BxL.T, tuple(zip(zero["c"], zero["h"])), train)
    return self._head(x_LxBxD, "lbd,vd->blv")

  def decode(self, token_B: jax.Array, cs: tuple, hs: tuple):
    x_1xBxD, carries = self._stack(token_B[None], tuple(zip(cs, hs)), False)
    cs, hs = zip(*carries)
    return self._head(x_1xBxD[0], "bd,vd->bv"), tuple(cs), tuple(hs)


def zero_carry(config: LSTMConfig, batch_size: int) -> DecodeState:
  d, n = config.d_model, config.n_layer
  return {"c": tuple(jnp.zeros((batch_size, d), jnp.float32) for _ in range(n)),
          "h": tuple(jnp.zeros((batch_size, d), jnp.dtype(config.dtype)) for _ in range(n))}


def init_decode_state(config: LSTMConfig, batch_size: int, max_len: int) -> DecodeState:
  del max_len  # the carried state has no length limit
  return zero_carry(config, batch_size)


def decode_step(module: LSTM, params: Params, state: DecodeState,
                token_B: jax.Array) -> tuple[jax.Array, DecodeState]:
  logits_BxV, cs, hs = module.apply({"params": params}, token_B.astype(jnp.int32), state["c"],
                                    state["h"], method=LSTM.decode)
  return logits_BxV, {"c": cs, "h": hs}


registry.register(LSTMConfig, LSTM, init_decode_state=init_decode_state, decode_step=decode_step)
