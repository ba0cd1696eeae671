"""The configuration of one training run: every knob, nested by concern, written next to its results.

    Config(model=GPTConfig.from_size("tiny"), opt=OptimizerConfig(lr=1e-3), data=DataConfig(...))

`model` is the family's own config class (abcjax.models.registry); `opt`, `data`, `eval` and `run`
are shared by every family. Any field is reachable by its path ("opt.lr", "model.d_model"):
`override(cfg, {"opt.lr": 1e-3})`, and from the command line `--config.opt.lr=1e-3`
(abcjax.train.config_flags). Presets (abcjax.train.presets) build whole configs by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import typing
from typing import Any

from abcjax import atomic, checks
from abcjax.models import registry
from abcjax.models.configs import ModelConfig


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW on matrices' weight decay, linear warmup then cosine (or linear) decay to lr*min_lr_ratio."""

  lr: float = 3e-4             # peak learning rate
  min_lr_ratio: float = 0.1    # the schedule ends at lr * min_lr_ratio
  warmup_frac: float = 0.05    # share of the steps spent warming up from 0
  schedule: str = "cosine"     # "cosine" | "linear" decay after the warmup
  weight_decay: float = 0.1    # decoupled, on matrices only (ndim >= 2)
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  grad_clip: float = 1.0       # clip by global norm

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    finite = math.isfinite
    checks.require([
        ("lr", finite(self.lr) and self.lr > 0, "a positive number", self.lr),
        ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]", self.min_lr_ratio),
        ("warmup_frac", 0.0 <= self.warmup_frac < 1.0, "in [0, 1)", self.warmup_frac),
        ("schedule", self.schedule in ("cosine", "linear"), "'cosine' or 'linear'", self.schedule),
        ("weight_decay", finite(self.weight_decay) and self.weight_decay >= 0, "0 or more",
         self.weight_decay),
        ("b1", 0.0 <= self.b1 < 1.0, "in [0, 1)", self.b1),
        ("b2", 0.0 <= self.b2 < 1.0, "in [0, 1)", self.b2),
        ("eps", finite(self.eps) and self.eps > 0, "a positive number", self.eps),
        ("grad_clip", finite(self.grad_clip) and self.grad_clip > 0, "a positive number",
         self.grad_clip),
    ], prefix="opt.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which corpus, and how much of it a run reads."""

  data_dir: str | None = None  # prepared corpus folder (None: the embedded music21 corpus, cached)
  batch_size: int = 64         # global batch, the same on any number of devices
  tokens: int = 100_000_000    # token budget of one epoch
  epochs: float = 1.0          # passes over the budget (the best model trains several)

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    checks.require([
        ("batch_size", self.batch_size > 0, "a positive integer", self.batch_size),
        ("tokens", self.tokens > 0, "a positive integer", self.tokens),
        ("epochs", math.isfinite(self.epochs) and self.epochs > 0, "a positive number",
         self.epochs),
    ], prefix="data.")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Validation during training: the whole split every `every` steps and at the end."""

  every: int = 500             # steps between evaluations (0: only at the end)
  batch_size: int = 64         # windows per evaluation batch
  max_tokens: int = 0          # evaluate the first max_tokens of a split (0: the whole split)

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    checks.require([
        ("every", self.every >= 0, "0 (only at the end) or more", self.every),
        ("batch_size", self.batch_size > 0, "a positive integer", self.batch_size),
        ("max_tokens", self.max_tokens >= 0, "0 (the whole split) or more", self.max_tokens),
    ], prefix="eval.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Seed, logging and checkpoints, and the preset the config was built from."""

  seed: int = 0                # initialisation, data order and dropout
  log_every: int = 50          # steps between metric records
  checkpoint_every: int = 1000  # steps between checkpoints (0: only at the end)
  progress: bool = True        # a progress bar on the console
  preset: str = "custom"       # the preset that built this config (a record; presets.make)

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    checks.require([
        ("seed", 0 <= self.seed < 2**63, "an integer in [0, 2**63)", self.seed),
        ("log_every", self.log_every > 0, "a positive integer", self.log_every),
        ("checkpoint_every", self.checkpoint_every >= 0, "0 (only at the end) or more",
         self.checkpoint_every),
    ], prefix="run.")


SECTIONS = {"opt": OptimizerConfig, "data": DataConfig, "eval": EvalConfig, "run": RunConfig}

# Fields that change how a run is watched or computed, not what it computes: a run may resume with
# other values. model.vocab_size is the corpus's (checked against the run's own vocabulary).
RUNTIME_FIELDS = frozenset({
    "run.log_every", "run.checkpoint_every", "run.progress", "run.preset", "eval.every",
    "eval.batch_size", "data.data_dir", "model.attention", "model.cpu_backward", "model.vocab_size",
})


# Model fields an override may not set: a size name or table comes with its shape, and the
# vocabulary is the corpus's.
FIXED_MODEL_FIELDS = {
    "model.size": "a size name comes with its shape: build the config from it (presets.make, "
                  "ModelConfig.from_size; --sizes or --size), or give a shape of your own "
                  "(model.n_layer, model.d_model, ...), which is labelled custom",
    "model.table": "a table comes with its shapes: build the config from it (presets.make, "
                   "ModelConfig.from_size; --table)",
    "model.vocab_size": "the vocabulary size is the corpus's; the trainer sets it",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """One training run. `model` is any registered family's config; the study's recipe is the default
  of every other section."""

  model: ModelConfig
  opt: OptimizerConfig = OptimizerConfig()
  data: DataConfig = DataConfig()
  eval: EvalConfig = EvalConfig()
  run: RunConfig = RunConfig()

  @property
  def tokens_per_step(self) -> int:
    return self.data.batch_size * self.model.block_size

  @property
  def total_tokens(self) -> int:
    return int(self.data.tokens * self.data.epochs)

  @property
  def total_steps(self) -> int:
    return max(1, self.total_tokens // self.tokens_per_step)

  def validate(self) -> None:
    """Raises ValueError naming the first field (by its path) whose value makes no sense."""
    self.model.validate()
    for name in SECTIONS:
      getattr(self, name).validate()

  def replace(self, **sections: Any) -> "Config":
    return dataclasses.replace(self, **sections)

  def to_dict(self) -> dict[str, Any]:
    return {"model": self.model.to_dict(),
            **{name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    unknown = sorted(set(d) - {"model", *SECTIONS})
    if unknown:
      raise ValueError(f"unknown config sections {unknown}; known: {['model', *SECTIONS]}")
    sections = {}
    for name, section_cls in SECTIONS.items():
      values = d.get(name, {})
      known = {f.name for f in dataclasses.fields(section_cls)}
      bad = sorted(set(values) - known)
      if bad:
        raise ValueError(f"unknown fields {[f'{name}.{b}' for b in bad]}; {name} has {sorted(known)}")
      sections[name] = section_cls(**values)
    return cls(model=registry.config_from_dict(d["model"]), **sections)


# -- fields by path ---------------------------------------------------------------------------------


def field_types(section_cls: type) -> dict[str, Any]:
  """{field name: its type} of a config dataclass (annotations resolved)."""
  hints = typing.get_type_hints(section_cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def parse_value(path: str, raw: str, kind: Any) -> Any:
  """`raw` (command-line text) as a value of the field type `kind`; ValueError naming `path`."""
  text = raw.strip()
  optional = type(None) in typing.get_args(kind)
  if optional and text.lower() in ("none", "null", ""):
    return None
  base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
  try:
    if base is bool:
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError("expected true or false")
      return text.lower() in ("true", "1")
    if base is int:
      value = float(text) if any(c in text.lower() for c in ".e") else int(text)
      if value != int(value):
        raise ValueError("expected an integer")
      return int(value)
    if base is float:
      return float(text)
    return text
  except ValueError as e:
    raise ValueError(f"config.{path}={raw!r}: cannot read it as {getattr(base, '__name__', base)} "
                     f"({e})") from None


def override(cfg: Config, changes: dict[str, Any]) -> Config:
  """`cfg` with fields replaced by path: {"opt.lr": 1e-3, "model.d_model": 64}. Values may be
  strings (parsed as the field's type) or values of that type. Unknown paths are refused."""
  by_section: dict[str, dict[str, Any]] = {}
  for path, value in changes.items():
    section, _, name = path.partition(".")
    if section == "model":
      types = field_types(type(cfg.model))
    elif section in SECTIONS:
      types = field_types(SECTIONS[section])
    else:
      raise ValueError(f"config.{path}: no section {section!r}; sections: "
                       f"{['model', *SECTIONS]}")
    if path in FIXED_MODEL_FIELDS:
      raise ValueError(f"config.{path}: {FIXED_MODEL_FIELDS[path]}")
    if name not in types:
      raise ValueError(f"config.{path}: {section} has no field {name!r}"
                       + (f" for the {cfg.model.arch} family" if section == "model" else "")
                       + f"; fields: {sorted(types)}")
    if isinstance(value, str) and types[name] is not str:
      value = parse_value(path, value, types[name])
    by_section.setdefault(section, {})[name] = value
  # The model's own replace: a new shape relabels a named size "custom".
  return cfg.replace(**{s: (cfg.model.replace(**v) if s == "model" else
                            dataclasses.replace(getattr(cfg, s), **v))
                        for s, v in by_section.items()})


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"opt": {"lr": 1}} -> {"opt.lr": 1}."""
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_mismatch(saved: dict[str, Any], current: Config) -> dict[str, tuple[Any, Any]]:
  """Paths whose saved value differs from the current config, ignoring RUNTIME_FIELDS.

  A field that a saved config lacks (written before the field existed) counts as its default.
  """
  now = flatten(current.to_dict())
  was = flatten(saved)
  defaults = flatten(Config(model=type(current.model)()).to_dict())
  keys = (set(was) | set(now)) - RUNTIME_FIELDS
  get_was = lambda k: was.get(k, defaults.get(k))
  return {k: (get_was(k), now.get(k)) for k in sorted(keys) if get_was(k) != now.get(k)}


def write_json(path: str | pathlib.Path, obj: Any) -> None:
  atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def from_record(record: dict[str, Any]) -> Config:
  """The Config a run's config.json records; also reads the flat layout that runs written before
  the nested config used ({"train": {...}, "model": {...}})."""
  if "config" in record:
    return Config.from_dict(record["config"])
  if "train" not in record or "model" not in record:
    raise ValueError(f"not a run record: expected a 'config' entry, got keys {sorted(record)}")
  t, model = record["train"], dict(record["model"])
  if model.get("arch") != "gpt":
    model.pop("n_head", None)
  if "lstm_unroll" in model:
    unroll = model.pop("lstm_unroll")
    if model.get("arch") != "gpt":
      model["unroll"] = unroll
  if model.get("arch") != "gpt":
    model.pop("attention", None)
  sections = {
      "opt": {k: t[k] for k in ("lr", "min_lr_ratio", "warmup_frac", "schedule", "weight_decay",
                                "b1", "b2", "eps", "grad_clip") if k in t},
      "data": {k: t[k] for k in ("data_dir", "batch_size", "tokens", "epochs") if k in t},
      "eval": {new: t[old] for old, new in (("eval_every", "every"),
                                            ("eval_batch_size", "batch_size"),
                                            ("eval_max_tokens", "max_tokens")) if old in t},
      "run": {k: t[k] for k in ("seed", "log_every", "checkpoint_every", "progress") if k in t},
  }
  return Config.from_dict({"model": model, **sections})
