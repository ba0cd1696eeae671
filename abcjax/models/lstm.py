"""Character LSTM: embedding, stacked LSTM layers, LayerNorm, head tied to the embedding.

Each layer is PyTorch-style (W_ih, W_hh, b_ih, b_hh; gate order i, f, g, o), which reproduces the
published table-A counts exactly. For speed the input projection x @ W_ih + b_ih + b_hh of all time
steps is one matmul outside the time loop; the `nn.scan` body holds only h @ W_hh and the gates.
Activations run time-major (L, B, D) inside the stack so the scan slices contiguous memory.
Decoding carries (c, h) per layer: one scan step per token, no limit on length.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from abcjax.models.configs import ModelConfig
from abcjax.models.layers import embed

Params = Any
DecodeState = dict[str, Any]


class LSTMRecurrence(nn.Module):
  """One time step: gates = xproj_t + h @ W_hh. Scanned over time with the kernel broadcast."""

  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, carry, xproj_BxG: jax.Array):
    c_BxD, h_BxD = carry
    w_hh = self.param("kernel", nn.initializers.orthogonal(), (self.hidden, 4 * self.hidden))
    gates = xproj_BxG + h_BxD @ w_hh.astype(self.dtype)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    # The cell state stays float32 whatever the compute dtype.
    c_BxD = jax.nn.sigmoid(f.astype(jnp.float32)) * c_BxD + (
        jax.nn.sigmoid(i) * jnp.tanh(g)).astype(jnp.float32)
    h_BxD = (jax.nn.sigmoid(o) * jnp.tanh(c_BxD).astype(self.dtype)).astype(self.dtype)
    return (c_BxD, h_BxD), h_BxD


def _hh_bias_init(key, shape, dtype=jnp.float32):
  del key
  hidden = shape[0] // 4
  # Forget-gate bias 1 (gate order i, f, g, o), a standard LSTM initialisation.
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


class LSTMLayer(nn.Module):
  config: ModelConfig

  def setup(self):
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    d = cfg.d_model
    self.ih = nn.Dense(4 * d, dtype=dtype, kernel_init=nn.initializers.lecun_normal())
    self.hh_bias = self.param("hh_bias", _hh_bias_init, (4 * d,))
    scan = nn.scan(LSTMRecurrence, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0, unroll=cfg.lstm_unroll)
    self.hh = scan(hidden=d, dtype=dtype)

  def __call__(self, x_LxBxD: jax.Array, carry) -> tuple[Any, jax.Array]:
    # Input projection for every step in one matmul; only h @ W_hh is left in the loop.
    xproj_LxBxG = self.ih(x_LxBxD) + self.hh_bias.astype(x_LxBxD.dtype)
    return self.hh(carry, xproj_LxBxG)


class LSTM(nn.Module):
  config: ModelConfig

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

  def _stack(self, x_LxBxD: jax.Array, carries, train: bool):
    new_carries = []
    for i, (layer, carry) in enumerate(zip(self.layers, carries)):
      carry, x_LxBxD = layer(x_LxBxD, carry)
      new_carries.append(carry)
      if i + 1 < len(self.layers):  # dropout between layers, as PyTorch nn.LSTM
        x_LxBxD = self.drop(x_LxBxD, deterministic=not train)
    return x_LxBxD, tuple(new_carries)

  def __call__(self, tokens_BxL: jax.Array, train: bool = False) -> jax.Array:
    batch = tokens_BxL.shape[0]
    x_LxBxD = embed(self.wte, tokens_BxL.T).astype(self.dtype)
    zero = zero_carry(self.config, batch)
    x_LxBxD, _ = self._stack(x_LxBxD, tuple(zip(zero["c"], zero["h"])), train)
    return self._head(x_LxBxD, "lbd,vd->blv")

  def decode(self, token_B: jax.Array, cs: tuple, hs: tuple):
    x_1xBxD = self.wte[token_B][None].astype(self.dtype)
    x_1xBxD, carries = self._stack(x_1xBxD, tuple(zip(cs, hs)), False)
    cs, hs = zip(*carries)
    return self._head(x_1xBxD[0], "bd,vd->bv"), tuple(cs), tuple(hs)


def zero_carry(config: ModelConfig, batch_size: int) -> DecodeState:
  d, n = config.d_model, config.n_layer
  return {"c": tuple(jnp.zeros((batch_size, d), jnp.float32) for _ in range(n)),
          "h": tuple(jnp.zeros((batch_size, d), jnp.dtype(config.dtype)) for _ in range(n))}


def init_decode_state(config: ModelConfig, batch_size: int, max_len: int) -> DecodeState:
  del max_len  # the carried state has no length limit
  return zero_carry(config, batch_size)


def decode_step(module: LSTM, params: Params, state: DecodeState,
                token_B: jax.Array) -> tuple[jax.Array, DecodeState]:
  logits_BxV, cs, hs = module.apply({"params": params}, token_B.astype(jnp.int32), state["c"],
                                    state["h"], method=LSTM.decode)
  return logits_BxV, {"c": cs, "h": hs}
