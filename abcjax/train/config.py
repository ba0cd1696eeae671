"""The configuration of one training run: every knob, written next to its results."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from abcjax.models.configs import ATTENTION_IMPLS


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """All hyperparameters of a run; the study's recipe is the default."""

  # Model: architecture, size name and size table (see abcjax.models.configs).
  arch: str = "gpt"
  size: str = "tiny"
  table: str = "A"
  # Per-run overrides of the size table's shape (0 = the table's value). The CPU preset uses
  # width_scale to shrink every size by the same factor while keeping layers and heads.
  width_scale: float = 1.0
  dropout: float = 0.0
  # Compute dtype of activations and matmuls; parameters, softmax and loss stay float32.
  dtype: str = "float32"
  # GPT attention kernel: "auto" (cuDNN flash attention on NVIDIA GPUs in bfloat16, the blocked
  # kernel on CPU, else XLA), "xla", "blocked" or "cudnn". The same function whichever kernel runs,
  # so a run may resume with another.
  attention: str = "auto"

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
    if self.batch_size <= 0 or self.block_size <= 0:
      raise ValueError("batch_size and block_size must be positive")
    if self.schedule not in ("cosine", "linear"):
      raise ValueError(f"schedule must be 'cosine' or 'linear', got {self.schedule!r}")
    if not 0.0 <= self.warmup_frac < 1.0:
      raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
    if self.attention not in ATTENTION_IMPLS:
      raise ValueError(f"attention must be one of {list(ATTENTION_IMPLS)}, got {self.attention!r}")
    if self.width_scale <= 0:
      raise ValueError(f"width_scale must be positive, got {self.width_scale}")


# Fields that change how a run is watched, not what it computes: a run may resume with new values.
RUNTIME_FIELDS = frozenset({"log_every", "checkpoint_every", "progress", "eval_every",
                            "eval_batch_size", "data_dir", "attention"})


def config_mismatch(saved: dict[str, Any], current: TrainConfig) -> dict[str, tuple[Any, Any]]:
  """Fields whose saved value differs from the current config, ignoring runtime-only fields."""
  now = current.to_dict()
  keys = (set(saved) | set(now)) - RUNTIME_FIELDS
  return {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}


def write_json(path: str | pathlib.Path, obj: Any) -> None:
  path = pathlib.Path(path)
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
  tmp.replace(path)


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
