"""Command-line overrides of any config field by its path: `--config.opt.lr=1e-3`.

`define()` declares one absl flag per field of every section (`--config.data.tokens`, ...) and of
every registered family's model config (`--config.model.n_head`, ...), so `--helpfull` lists them
all and a misspelt field is an unknown flag. `overrides()` returns the ones given, as text, and
`apply(cfg, ...)` parses each as its field's type on top of a config that a preset built: a sweep
builds one config per size and applies the same overrides to each. ml_collections' config_flags
gives the same syntax for one fixed default config; here the base differs per size and per
family, the configs stay typed frozen dataclasses, and no other dependency is needed.
"""

from __future__ import annotations

from absl import flags

from abcjax.models import registry
from abcjax.train.config import SECTIONS, Config, field_types, override

PREFIX = "config."


def _paths() -> dict[str, str]:
  """{"opt.lr": "float", ...} for every section's fields and every family's model fields."""
  paths = {}
  for name, cls in SECTIONS.items():
    for field, kind in field_types(cls).items():
      paths[f"{name}.{field}"] = getattr(kind, "__name__", str(kind))
  for arch in registry.names():
    cls = registry.config_class(arch)
    for field, kind in field_types(cls).items():
      paths.setdefault(f"model.{field}", getattr(kind, "__name__", str(kind)))
  return paths


def define(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Declares --config.<path> for every config field (once per FlagValues)."""
  for path, kind in _paths().items():
    name = PREFIX + path
    if name not in flag_values:
      flags.DEFINE_string(name, None, f"Override {path} ({kind}) of the preset's config.",
                          flag_values=flag_values)


def overrides(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, str]:
  """{path: text} of the --config.* flags given on the command line."""
  return {name[len(PREFIX):]: flag_values[name].value for name in flag_values
          if name.startswith(PREFIX) and flag_values[name].present}


def apply(cfg: Config, given: dict[str, str], *, owned: dict[str, str] | None = None) -> Config:
  """`cfg` with the overrides `given` (from `overrides()`), refusing those in `owned`
  ({path: the flag that sets it here}), then validated."""
  for path in given:
    if owned and path in owned:
      raise ValueError(f"--{PREFIX}{path}: {path} is set by {owned[path]} here")
  cfg = override(cfg, given)
  cfg.validate()
  return cfg
