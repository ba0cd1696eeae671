"""Character GRU: embedding, stacked GRU layers, LayerNorm, head tied to the embedding.

Not in the study: a third family that shows what adding one costs (this module and its
`registry.register` call). Each layer is PyTorch-style (W_ih, W_hh, b_ih, b_hh; gate order r, z,
n): r = σ(x W_ir + b_ir + h W_hr + b_hr), z likewise, n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)),
h' = (1 - z) ⊙ n + z ⊙ h. The input projection of every time step is one matmul outside the time
loop; the `nn.scan` body holds only h @ W_hh and the gates. Activations run time-major (L, B, D).
Decoding carries h per layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from abcjax.models import registry
from abcjax.models.configs import CpuPreset, RecurrentConfig
from abcjax.models.layers import dense_dot_general, embed
from abcjax.models.lstm import RECURRENT_SIZES, LSTMConfig

Params = Any
DecodeState = dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GRUConfig(RecurrentConfig):
  """A stack of GRU layers, on the LSTM's size tables.

  Parameterisation: token embedding V*d (tied head, no output bias); per layer W_ih 3d^2,
  W_hh 3d^2, b_ih and b_hh (6d); final LayerNorm 2d. N = V*d + L*(6d^2 + 6d) + 2d.
  """

  arch: ClassVar[str] = "gru"
  GATES: ClassVar[int] = 3
  SIZES: ClassVar[dict[str, dict[str, dict[str, int]]]] = RECURRENT_SIZES
  # The LSTM's laptop widths and its searched rates (not searched for the GRU itself).
  CPU: ClassVar[CpuPreset] = CpuPreset(width_scale=0.25, lr=LSTMConfig.CPU.lr)


class GRURecurrence(nn.Module):
  """One time step from the projected input x W_ih + b_ih; scanned over time."""

  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, h_BxD: jax.Array, xproj_BxG: jax.Array):
    d = self.hidden
    w_hh = self.param("kernel", nn.initializers.orthogonal(), (d, 3 * d))
    b_hh = self.param("bias", nn.initializers.zeros, (3 * d,))
    hproj_BxG = h_BxD @ w_hh.astype(self.dtype) + b_hh.astype(self.dtype)
    r = jax.nn.sigmoid(xproj_BxG[:, :d] + hproj_BxG[:, :d])
    # The update gate and the carried state stay float32 whatever the compute dtype.
    z = jax.nn.sigmoid((xproj_BxG[:, d:2 * d] + hproj_BxG[:, d:2 * d]).astype(jnp.float32))
    n = jnp.tanh(xproj_BxG[:, 2 * d:] + r * hproj_BxG[:, 2 * d:]).astype(jnp.float32)
    h_BxD = (1.0 - z) * n + z * h_BxD.astype(jnp.float32)
    return h_BxD, h_BxD.astype(self.dtype)


class GRU(nn.Module):
  config: GRUConfig

  def setup(self):
    cfg = self.config
    self.dtype = jnp.dtype(cfg.dtype)
    d = cfg.d_model
    # Scale 1/sqrt(d) so the tied head starts with unit-scale logits after the final LayerNorm.
    self.wte = self.param("wte", nn.initializers.normal(1.0 / math.sqrt(d)), (cfg.vocab_size, d))
    self.ih = [nn.Dense(3 * d, dtype=self.dtype, kernel_init=nn.initializers.lecun_normal(),
                        dot_general=dense_dot_general(cfg.cpu_backward), name=f"ih_{i}")
               for i in range(cfg.n_layer)]
    scan = nn.scan(GRURecurrence, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=0, out_axes=0, unroll=cfg.unroll)
    self.hh = [scan(hidden=d, dtype=self.dtype, name=f"hh_{i}") for i in range(cfg.n_layer)]
    self.ln_f = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, force_float32_reductions=True)
    self.drop = nn.Dropout(cfg.dropout)

  def _stack(self, tokens: jax.Array, hs: tuple, train: bool):
    """tokens (L, B) -> top layer's outputs (L, B, D) and every layer's final h."""
    x_LxBxD = embed(self.wte, tokens).astype(self.dtype)
    new_hs = []
    for i, (ih, hh, h) in enumerate(zip(self.ih, self.hh, hs)):
      h, x_LxBxD = hh(h, ih(x_LxBxD))
      new_hs.append(h)
      if i + 1 < len(self.hh):  # dropout between layers, as PyTorch nn.GRU
        x_LxBxD = self.drop(x_LxBxD, deterministic=not train)
    return x_LxBxD, tuple(new_hs)

  def _head(self, x: jax.Array, spec: str) -> jax.Array:
    # Tied output head; logits in float32 even when the matmul inputs are bfloat16.
    return jnp.einsum(spec, self.ln_f(x).astype(self.dtype), self.wte.astype(self.dtype),
                      preferred_element_type=jnp.float32)

  def __call__(self, tokens_BxL: jax.Array, train: bool = False) -> jax.Array:
    hs = init_decode_state(self.config, tokens_BxL.shape[0], 0)["h"]
    x_LxBxD, _ = self._stack(tokens_BxL.T, hs, train)
    return self._head(x_LxBxD, "lbd,vd->blv")

  def decode(self, token_B: jax.Array, hs: tuple):
    x_1xBxD, hs = self._stack(token_B[None], hs, False)
    return self._head(x_1xBxD[0], "bd,vd->bv"), hs


def init_decode_state(config: GRUConfig, batch_size: int, max_len: int) -> DecodeState:
  del max_len  # the carried state has no length limit
  return {"h": tuple(jnp.zeros((batch_size, config.d_model), jnp.float32)
                     for _ in range(config.n_layer))}


def decode_step(module: GRU, params: Params, state: DecodeState,
                token_B: jax.Array) -> tuple[jax.Array, DecodeState]:
  logits_BxV, hs = module.apply({"params": params}, token_B.astype(jnp.int32), state["h"],
                                method=GRU.decode)
  return logits_BxV, {"h": hs}


registry.register(GRUConfig, GRU, init_decode_state=init_decode_state, decode_step=decode_step)
