"""The one interface training, evaluation and sampling use, whatever the architecture."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from abcjax.models import registry
from abcjax.models.configs import ModelConfig

Params = Any
DecodeState = Any


class LanguageModel:
  """A character language model: `apply(params, tokens_BxL) -> logits_BxLxV` plus decoding.

  Pure functions of (params, inputs); the object only holds the config and the Flax module.
  Equal configs give equal (and equally hashed) models, so jitted callers can treat it as static.
  """

  def __init__(self, config: ModelConfig):
    if config.vocab_size < 1:
      raise ValueError(f"a model needs its vocabulary size (vocab_size={config.vocab_size}): "
                       "set it from the corpus, config.replace(vocab_size=len(vocab))")
    self.config = config
    family = registry.family(config.arch)
    self._init_decode_state, self._decode_step = family.init_decode_state, family.decode_step
    self.module = family.module_cls(config)
    self._jit_init = jax.jit(self._init)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, LanguageModel) and other.config == self.config

  def __hash__(self) -> int:
    return hash(self.config)

  def __repr__(self) -> str:
    return f"LanguageModel({self.config!r})"

  def _init(self, rng: jax.Array) -> Params:
    tokens = jnp.zeros((1, min(8, self.config.block_size)), jnp.int32)
    return self.module.init({"params": rng}, tokens)["params"]

  def init(self, rng: jax.Array) -> Params:
    """Float32 parameters. `jax.eval_shape(model.init, rng)` gives shapes without allocating."""
    return self._jit_init(rng)

  def apply(self, params: Params, tokens_BxL: jax.Array, *, train: bool = False,
            dropout_rng: jax.Array | None = None) -> jax.Array:
    """Float32 logits for every position (causal). Dropout only when train and dropout > 0."""
    use_dropout = train and self.config.dropout > 0.0
    if use_dropout and dropout_rng is None:
      raise ValueError("train=True with dropout > 0 needs a dropout_rng")
    rngs = {"dropout": dropout_rng} if use_dropout else {}
    return self.module.apply({"params": params}, tokens_BxL, train=use_dropout, rngs=rngs)

  def init_decode_state(self, batch_size: int, max_len: int) -> DecodeState:
    """GPT: a key/value cache (re-prefilled when full); LSTM: the (c, h) carry. A pytree."""
    return self._init_decode_state(self.config, batch_size, max_len)

  def decode_step(self, params: Params, state: DecodeState,
                  token_B: jax.Array) -> tuple[jax.Array, DecodeState]:
    """Feed one token per row; float32 logits for the next token. The position lives in state."""
    return self._decode_step(self.module, params, state, token_B)


def build_model(config: ModelConfig) -> LanguageModel:
  return LanguageModel(config)


def count_params(params: Params) -> int:
  """Number of scalars in a params pytree (works on `jax.eval_shape` output too)."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
