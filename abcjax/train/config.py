"""The configuration of one training run: every knob, written next to its results."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

from abcjax import atomic
from abcjax.models.configs import ATTENTION_IMPLS, CUSTOM_SIZE, DTYPES, size_names


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """All hyperparameters of a run; the study's recipe is the default."""

  # Model: architecture, size name and size table (see abcjax.models.configs).
  arch: str = "gpt"
  size: str = "tiny"
  table: str = "A"
  # Per-run overrides of the size table's shape (0 = the table's value); size "custom" takes its
  # whole shape from them (n_layer and d_model, and n_head for the GPT). The CPU preset uses
  # width_scale to shrink every size by the same factor while keeping layers and heads; a d_model
  # given here is not scaled.
  n_layer: int = 0
  d_model: int = 0
  n_head: int = 0
  width_scale: float = 1.0
  dropout: float = 0.0
  # Compute dtype of activations and matmuls; parameters, softmax and loss stay float32.
  dtype: str = "float32"
  # GPT attention kernel: "auto" (cuDNN flash attention on NVIDIA GPUs in bfloat16, the blocked
  # kernel on CPU, else XLA), "xla", "blocked" or "cudnn". The same function whichever kernel runs,
  # so a run may resume with another.
  attention: str = "auto"
  # Hand-written backward passes of the Dense weight gradient and the LSTM recurrence, measured
  # faster on one CPU device (abcjax.cpu_tuning); the same function, so a run may resume either way.
  cpu_backward: bool = False

  # Data: the prepared corpus folder (None: the embedded music21 corpus, built once and cached).
  data_dir: str | None = None
  block_size: int = 256
  batch_size: int = 64  # global batch, the same on any number of devices
  # Training length: a fixed token budget per run, times epochs (the best model trains several).
  tokens: int = 100_000_000
  epochs: float = 1.0

  # Optimizer: AdamW, linear warmup then cosine (or linear) decay to lr * min_lr_ratio.
  lr: float = 3e-4
  min_lr_ratio: float = 0.1
  warmup_frac: float = 0.05
  schedule: str = "cosine"  # "cosine" | "linear"
  weight_decay: float = 0.1  # applied to matrices only (ndim >= 2)
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  grad_clip: float = 1.0

  seed: int = 0

  # Evaluation: whole split every eval_every steps (0: only at the end); eval_max_tokens caps it
  # for corpora whose validation split is too large to walk at every interval (0: whole split).
  eval_every: int = 500
  eval_batch_size: int = 64
  eval_max_tokens: int = 0

  # Logging and checkpoints.
  log_every: int = 50
  checkpoint_every: int = 1000
  progress: bool = True

  @property
  def total_tokens(self) -> int:
    return int(self.tokens * self.epochs)

  @property
  def tokens_per_step(self) -> int:
    return self.batch_size * self.block_size

  @property
  def total_steps(self) -> int:
    return max(1, self.total_tokens // self.tokens_per_step)

  def replace(self, **changes: Any) -> "TrainConfig":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known fields: {sorted(known)}")
    return cls(**d)

  def validate(self) -> None:
    """Raises ValueError naming the first field whose value makes no sense (flag: --set FIELD=)."""
    size_names(self.arch, self.table)  # Known arch and table.
    if self.size != CUSTOM_SIZE and self.size not in size_names(self.arch, self.table):
      raise ValueError(f"size {self.size!r} is not a {self.arch} size of table {self.table}; "
                       f"valid: {size_names(self.arch, self.table) + [CUSTOM_SIZE]}")
    if self.arch == "lstm" and self.n_head:
      raise ValueError(f"n_head applies to the GPT only; got n_head={self.n_head} for an LSTM")
    checks = [
        ("block_size", self.block_size > 0, "a positive integer"),
        ("batch_size", self.batch_size > 0, "a positive integer"),
        ("eval_batch_size", self.eval_batch_size > 0, "a positive integer"),
        ("tokens", self.tokens > 0, "a positive integer"),
        ("epochs", math.isfinite(self.epochs) and self.epochs > 0, "a positive number"),
        ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
        ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]"),
        ("warmup_frac", 0.0 <= self.warmup_frac < 1.0, "in [0, 1)"),
        ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, "0 or more"),
        ("b1", 0.0 <= self.b1 < 1.0, "in [0, 1)"),
        ("b2", 0.0 <= self.b2 < 1.0, "in [0, 1)"),
        ("eps", math.isfinite(self.eps) and self.eps > 0, "a positive number"),
        ("grad_clip", math.isfinite(self.grad_clip) and self.grad_clip > 0, "a positive number"),
        ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
        ("width_scale", math.isfinite(self.width_scale) and self.width_scale > 0,
         "a positive number"),
        ("seed", 0 <= self.seed < 2**63, "an integer in [0, 2**63)"),
        ("eval_every", self.eval_every >= 0, "0 (only at the end) or more"),
        ("eval_max_tokens", self.eval_max_tokens >= 0, "0 (the whole split) or more"),
        ("checkpoint_every", self.checkpoint_every >= 0, "0 (only at the end) or more"),
        ("log_every", self.log_every > 0, "a positive integer"),
        ("n_layer", self.n_layer >= 0, "0 (the size table's) or more"),
        ("d_model", self.d_model >= 0, "0 (the size table's) or more"),
        ("n_head", self.n_head >= 0, "0 (the size table's) or more"),
        ("schedule", self.schedule in ("cosine", "linear"), "'cosine' or 'linear'"),
        ("dtype", self.dtype in DTYPES, f"one of {list(DTYPES)}"),
        ("attention", self.attention in ATTENTION_IMPLS, f"one of {list(ATTENTION_IMPLS)}"),
        ("cpu_backward", isinstance(self.cpu_backward, bool), "true or false"),
    ]
    for name, ok, allowed in checks:
      if not ok:
        raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

  def shape_overrides(self) -> dict[str, int]:
    """The size table's shape fields this config sets (the nonzero n_layer, d_model, n_head)."""
    return {k: getattr(self, k) for k in ("n_layer", "d_model", "n_head") if getattr(self, k)}


# Fields that change how a run is watched, not what it computes: a run may resume with new values.
RUNTIME_FIELDS = frozenset({"log_every", "checkpoint_every", "progress", "eval_every",
                            "eval_batch_size", "data_dir", "attention", "cpu_backward"})


def config_mismatch(saved: dict[str, Any], current: TrainConfig) -> dict[str, tuple[Any, Any]]:
  """Fields whose saved value differs from the current config, ignoring runtime-only fields.

  A field that a saved config lacks (written before the field existed) counts as its default.
  """
  defaults = TrainConfig().to_dict()
  saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
  now = current.to_dict()
  keys = (set(saved) | set(now)) - RUNTIME_FIELDS
  return {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}


def write_json(path: str | pathlib.Path, obj: Any) -> None:
  atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def apply_overrides(cfg: TrainConfig, overrides: list[str] | None) -> TrainConfig:
  """Applies 'field=value' strings (from --set) to a config, parsing each value as its field's type."""
  if not overrides:
    return cfg
  fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
  changes = {}
  for item in overrides:
    name, sep, raw = item.partition("=")
    name = name.strip()
    if not sep or name not in fields:
      raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
    current = getattr(cfg, name)
    try:
      if raw.lower() in ("none", "null") and fields[name].type in ("str | None",):
        value = None
      elif isinstance(current, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
          raise ValueError("expected true or false")
        value = raw.lower() in ("true", "1")
      elif isinstance(current, int):
        value = int(float(raw)) if "e" in raw.lower() else int(raw)
      elif isinstance(current, float):
        value = float(raw)
      else:
        value = raw
    except ValueError as e:
      raise ValueError(f"--set {item!r}: cannot parse {raw!r} for field {name}: {e}") from None
    changes[name] = value
  return cfg.replace(**changes)
