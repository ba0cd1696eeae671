"""Batched sampling for any LanguageModel: one jit-compiled loop of single-token decode steps.

Ragged prompts: all rows step together from position 0; while a row is still inside its prompt,
its next input is forced to the prompt token instead of the sample. Rows that stopped keep running
masked, and the loop exits once every row has stopped. Sampling at step t uses the key
`fold_in(PRNGKey(seed), t)`, so a seed gives the same samples on every call.

`use_cache=False` is the slow reference: at every step a full forward pass over the sequence so
far, cropped to the last block_size tokens (positions restart at 0, as nanoGPT samples). With the
cache, the GPT instead re-prefills from the last block_size/2 tokens when its cache fills (see
gpt.py), so past block_size the two paths see different contexts; below it they agree.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from abcjax.models.model import LanguageModel

Params = Any
_MIN_BUFFER_BUCKET = 16


def sample_logits(logits_BxV: jax.Array, key: jax.Array, temperature: jax.Array,
                  top_k: jax.Array, top_p: jax.Array) -> jax.Array:
  """Samples one token per row. temperature 0 -> greedy; top_k 0 and top_p 1.0 -> off."""
  logits_BxV = logits_BxV.astype(jnp.float32)
  vocab = logits_BxV.shape[-1]
  greedy_B = jnp.argmax(logits_BxV, axis=-1)
  x_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)
  sorted_BxV = -jnp.sort(-x_BxV, axis=-1)
  # Top-k: keep values >= the k-th largest.
  k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)
  kth_Bx1 = jax.lax.dynamic_slice_in_dim(sorted_BxV, k - 1, 1, axis=-1)
  x_BxV = jnp.where(x_BxV < kth_Bx1, -jnp.inf, x_BxV)
  # Top-p over what top-k kept: the smallest prefix whose probability mass reaches top_p.
  ranks = jnp.arange(vocab)
  sorted_BxV = jnp.where(ranks < k, sorted_BxV, -jnp.inf)
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
  keep_BxV = (mass_before_BxV < top_p) | (ranks == 0) | (top_p >= 1.0)
  n_keep_B = jnp.sum(keep_BxV & (ranks < k), axis=-1)
  cutoff_Bx1 = jnp.take_along_axis(sorted_BxV, (n_keep_B - 1)[:, None], axis=-1)
  x_BxV = jnp.where(x_BxV < cutoff_Bx1, -jnp.inf, x_BxV)
  sampled_B = jax.random.categorical(key, x_BxV, axis=-1)
  return jnp.where(temperature <= 0.0, greedy_B, sampled_B).astype(jnp.int32)


def _next_logits_uncached(model: LanguageModel, params: Params, buf_BxS: jax.Array,
                          t: jax.Array) -> jax.Array:
  """Full forward over the window of at most block_size tokens ending at position t."""
  total = buf_BxS.shape[1]
  window = min(model.config.block_size, total)
  start = jnp.clip(t + 1 - window, 0, total - window)
  window_BxW = jax.lax.dynamic_slice_in_dim(buf_BxS, start, window, axis=1)
  logits_BxWxV = model.apply(params, window_BxW)
  return jax.lax.dynamic_index_in_dim(logits_BxWxV, t - start, axis=1, keepdims=False)


def _generate_loop(model: LanguageModel, use_cache: bool, params: Params, buf_BxS: jax.Array,
                   lens_B: jax.Array, max_new_tokens: jax.Array, temperature: jax.Array,
                   top_k: jax.Array, top_p: jax.Array, seed: jax.Array, stop_token: jax.Array):
  batch, total = buf_BxS.shape
  base_key = jax.random.PRNGKey(seed)

  def cond(carry):
    t, _, _, _, done_B = carry
    return (t < total - 1) & ~jnp.all(done_B)

  def body(carry):
    t, state, buf_BxS, n_out_B, done_B = carry
    token_B = jax.lax.dynamic_index_in_dim(buf_BxS, t, axis=1, keepdims=False)
    if use_cache:
      logits_BxV, state = model.decode_step(params, state, token_B)
    else:
      logits_BxV = _next_logits_uncached(model, params, buf_BxS, t)
    sampled_B = sample_logits(logits_BxV, jax.random.fold_in(base_key, t), temperature, top_k,
                              top_p)
    in_prompt_B = t + 1 < lens_B
    generating_B = ~in_prompt_B & ~done_B
    prompt_next_B = jax.lax.dynamic_index_in_dim(buf_BxS, t + 1, axis=1, keepdims=False)
    next_B = jnp.where(in_prompt_B, prompt_next_B, sampled_B)
    buf_BxS = jax.lax.dynamic_update_index_in_dim(buf_BxS, next_B, t + 1, axis=1)
    stopped_B = generating_B & (sampled_B == stop_token)
    n_out_B = n_out_B + (generating_B & ~stopped_B)
    done_B = done_B | stopped_B | (n_out_B >= max_new_tokens)
    return t + 1, state, buf_BxS, n_out_B, done_B

  state = model.init_decode_state(batch, total) if use_cache else ()
  carry = (jnp.zeros((), jnp.int32), state, buf_BxS, jnp.zeros((batch,), jnp.int32),
           jnp.zeros((batch,), bool) | (max_new_tokens <= 0))
  _, _, buf_BxS, n_out_B, _ = jax.lax.while_loop(cond, body, carry)
  return buf_BxS, n_out_B


@functools.lru_cache(maxsize=64)
def _compiled_loop(model: LanguageModel, use_cache: bool):
  # One jitted function per (model config, path); jax.jit compiles once per buffer shape.
  return jax.jit(functools.partial(_generate_loop, model, use_cache))


def _bucket(n: int) -> int:
  """Buffers are padded to a power of two so that nearby lengths share a compile."""
  return max(_MIN_BUFFER_BUCKET, 1 << (n - 1).bit_length())


# What generate's sampling knobs allow, and how to say it (sample_eval checks its flags with these).
KNOB_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (lambda v: 0 <= v < math.inf, "finite and >= 0 (0: greedy)"),
    "top_k": (lambda v: v >= 0, ">= 0 (0: off)"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1] (1: off)"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
}
_INTEGER_KNOBS = ("top_k", "seed")


def _checked(name: str, value, ok: Callable[[Any], bool], allowed: str, integer: bool):
  """value as an int (no floats such as 2.5 or 3.0) or a float, if ok(value) holds (NaN fails
  every comparison); else a ValueError naming the argument and what it allows."""
  try:
    number = operator.index(value) if integer else float(value)
  except (TypeError, ValueError):
    number = None
  if number is None or not ok(number):
    raise ValueError(f"{name} must be {'an integer ' if integer else 'a number '}{allowed}, "
                     f"got {value!r}")
  return number


def _knob(name: str, value):
  return _checked(name, value, *KNOB_RANGES[name], integer=name in _INTEGER_KNOBS)


def _check_prompts(prompts, vocab: int) -> list[np.ndarray]:
  """The prompts as int32 arrays, each checked to be a non-empty 1-D array of ids in [0, vocab)."""
  one_prompt = ValueError("prompts must be a list of prompts, each a 1-D array of token ids (or "
                          "a 2-D array, one prompt per row): for a single prompt ids, pass [ids]")
  # A ragged object array holds one prompt per element, like a list.
  if isinstance(prompts, np.ndarray) and prompts.dtype != object and prompts.ndim != 2:
    raise one_prompt
  prompts = list(prompts)
  if any(np.ndim(p) == 0 for p in prompts):
    raise one_prompt
  checked = []
  for p in map(np.asarray, prompts):
    if p.ndim != 1:
      raise ValueError(f"each prompt must be a 1-D array of token ids, got shape {p.shape}")
    if p.size == 0:
      raise ValueError("every prompt needs at least one token (pass [eot_id] for no prompt)")
    if not np.issubdtype(p.dtype, np.integer):
      raise ValueError(f"prompt tokens must be integer ids, got dtype {p.dtype}")
    if p.min() < 0 or p.max() >= vocab:
      raise ValueError(f"prompt tokens must be in [0, {vocab})")
    checked.append(p.astype(np.int32))
  return checked


def generate(model: LanguageModel, params: Params, prompts: Sequence[np.ndarray], *,
             max_new_tokens: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int = 0, stop_token: int | None = None, use_cache: bool = True) -> list[np.ndarray]:
  """Samples a continuation of every prompt (a list of 1-D int arrays, ragged, each >= 1 token).

  Knobs, each checked up front: max_new_tokens >= 0; temperature >= 0 and finite (0 = greedy);
  top_k >= 0 (0 = off); 0 < top_p <= 1 (1 = off); seed in [0, 2**32); stop_token None or an id in
  [0, vocab). Returns per row the generated tokens only, cut just before the first stop_token
  (which is not included) or at max_new_tokens. Cost: O(prompt + max_new_tokens) single-token steps
  with the cache; the uncached reference runs a full forward pass per step. Prompt length plus
  max_new_tokens is bucketed to a power of two, so calls within a bucket share one compile.
  """
  vocab = model.config.vocab_size
  prompts = _check_prompts(prompts, vocab)
  max_new_tokens = _checked("max_new_tokens", max_new_tokens, lambda v: v >= 0, ">= 0", True)
  temperature, top_k, top_p, seed = (_knob(name, value) for name, value in (
      ("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("seed", seed)))
  if stop_token is not None:
    stop_token = _checked("stop_token", stop_token, lambda v: 0 <= v < vocab, f"in [0, {vocab})",
                          True)
  if not prompts:
    return []
  lens = np.array([len(p) for p in prompts], np.int32)
  # The stop condition reads max_new_tokens as a traced value, so only the buffer's shape matters.
  buf = np.zeros((len(prompts), _bucket(int(lens.max()) + max_new_tokens)), np.int32)
  for row, p in enumerate(prompts):
    buf[row, :len(p)] = p
  loop = _compiled_loop(model, use_cache)
  out_buf, n_out = loop(params, jnp.asarray(buf), jnp.asarray(lens), jnp.int32(max_new_tokens),
                        jnp.float32(temperature), jnp.int32(min(top_k, vocab)), jnp.float32(top_p),
                        jnp.uint32(seed), jnp.int32(-1 if stop_token is None else stop_token))
  out_buf, n_out = np.asarray(out_buf), np.asarray(n_out)
  return [out_buf[row, lens[row]:lens[row] + n_out[row]].copy() for row in range(len(prompts))]
