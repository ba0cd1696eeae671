"""Pieces both model families share."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def embed(table_VxD: jax.Array, tokens: jax.Array, one_hot: bool | None = None) -> jax.Array:
  """Rows of the embedding table for `tokens` (any shape) -> tokens.shape + (D,).

  On accelerators the gather's backward pass is a scatter-add of every token's gradient into the
  table's V rows; with a character vocabulary (V ~ 100) and 16K tokens a step, those updates collide
  on a few rows and serialise. A one-hot matmul has the same value (exact: HIGHEST precision, one
  non-zero term per sum) and its backward is a plain matmul. CPUs keep the gather, which is cheaper.
  `one_hot` forces either form (None: by backend).
  """
  if one_hot is None:
    one_hot = jax.default_backend() != "cpu"
  if not one_hot:
    return table_VxD[tokens]
  onehot = jax.nn.one_hot(tokens, table_VxD.shape[0], dtype=table_VxD.dtype)
  return jnp.einsum("...v,vd->...d", onehot, table_VxD, precision=jax.lax.Precision.HIGHEST)
