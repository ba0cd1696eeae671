"""The model families: each registers its config class and its Flax module here, once.

Training, evaluation, sampling and the experiments look a family up by name and never branch on
it. A new family is its module (config class, Flax module, decoding functions) and one `register`
call, imported from abcjax/models/__init__.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from abcjax.models.configs import ModelConfig


@dataclasses.dataclass(frozen=True)
class Family:
  """A model family: `module_cls(config)` is a Flax module whose `__call__(tokens_BxL, train)`
  returns logits_BxLxV; `init_decode_state(config, batch, max_len)` and
  `decode_step(module, params, state, token_B) -> (logits_BxV, state)` decode one token at a time."""

  name: str
  config_cls: type[ModelConfig]
  module_cls: type
  init_decode_state: Callable[..., Any]
  decode_step: Callable[..., Any]


_FAMILIES: dict[str, Family] = {}


def register(config_cls: type[ModelConfig], module_cls: type, *,
             init_decode_state: Callable[..., Any], decode_step: Callable[..., Any]) -> Family:
  name = config_cls.arch
  if name in _FAMILIES and _FAMILIES[name].config_cls is not config_cls:
    raise ValueError(f"model family {name!r} is registered already")
  _FAMILIES[name] = Family(name, config_cls, module_cls, init_decode_state, decode_step)
  return _FAMILIES[name]


def names() -> tuple[str, ...]:
  """Registered family names, in registration order."""
  return tuple(_FAMILIES)


def family(name: str) -> Family:
  if name not in _FAMILIES:
    raise ValueError(f"unknown model family (arch) {name!r}; registered: {list(_FAMILIES)}")
  return _FAMILIES[name]


def config_class(name: str) -> type[ModelConfig]:
  return family(name).config_cls


def get_config(arch: str, size: str, *, table: str = "A", **fields: Any) -> ModelConfig:
  """The config of a named size (or "custom" with its shape in `fields`) of a family."""
  return config_class(arch).from_size(size, table, **fields)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
  """Inverse of `ModelConfig.to_dict`: the family from "arch", the other keys as fields."""
  d = dict(d)
  if "arch" not in d:
    raise ValueError(f"a model config record needs its 'arch'; got keys {sorted(d)}")
  cls = config_class(d.pop("arch"))
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - known)
  if unknown:
    raise ValueError(f"{cls.arch} configs have no fields {unknown}; valid: {sorted(known)}")
  return cls(**d)
