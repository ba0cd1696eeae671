"""The one optimizer of the study, shared by both families: AdamW with warmup then decay."""

from __future__ import annotations

import jax
import optax

from abcjax.train.config import OptimizerConfig


def make_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to cfg.lr, then cosine (or linear) decay to cfg.lr * cfg.min_lr_ratio."""
  warmup = int(cfg.warmup_frac * total_steps)
  decay_steps = max(1, total_steps - warmup)
  floor = cfg.lr * cfg.min_lr_ratio
  if cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
  elif cfg.schedule == "linear":
    decay = optax.linear_schedule(cfg.lr, floor, decay_steps)
  else:
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'cosine' or 'linear'")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


def decay_mask(params):
  """Weight decay on matrices only (nanoGPT's rule): no decay for biases, norms' scales."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
  """Clip by global norm, then AdamW; the learning rate is readable from the state for logging."""

  def adamw(learning_rate):
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                    weight_decay=cfg.weight_decay, mask=decay_mask),
    )

  return optax.inject_hyperparams(adamw)(learning_rate=make_schedule(cfg, total_steps))

