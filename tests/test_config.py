"""The nested run config: sections, paths, overrides from flags, records old and new."""

import dataclasses

import pytest
from absl import flags

from abcjax.models import GPTConfig, LSTMConfig, get_config
from abcjax.train import config_flags
from abcjax.train.config import (Config, DataConfig, OptimizerConfig, config_mismatch, flatten,
                                 from_record, override)


def gpt_config(**model) -> Config:
  return Config(model=get_config("gpt", "tiny", **model))


def test_round_trip_through_a_record():
  cfg = override(gpt_config(), {"opt.lr": 1e-3, "data.tokens": 5000, "run.seed": 3})
  assert Config.from_dict(cfg.to_dict()) == cfg
  assert from_record({"config": cfg.to_dict()}) == cfg
  lstm = Config(model=get_config("lstm", "small", unroll=2))
  assert Config.from_dict(lstm.to_dict()).model == lstm.model
  with pytest.raises(ValueError, match=r"unknown fields \['opt.lrate'\]"):
    Config.from_dict({**cfg.to_dict(), "opt": {"lrate": 1.0}})
  with pytest.raises(ValueError, match="unknown config sections"):
    Config.from_dict({**cfg.to_dict(), "optim": {}})


def test_derived_counts():
  cfg = override(gpt_config(block_size=32), {"data.batch_size": 8, "data.tokens": 1000,
                                             "data.epochs": 2.0})
  assert (cfg.tokens_per_step, cfg.total_tokens, cfg.total_steps) == (256, 2000, 7)


def test_override_parses_text_as_the_field_type():
  cfg = override(gpt_config(), {"opt.lr": "2e-3", "data.tokens": "1e6", "run.progress": "false",
                                "data.data_dir": "None", "model.dtype": "bfloat16"})
  assert cfg.opt.lr == 2e-3 and cfg.data.tokens == 1_000_000 and cfg.run.progress is False
  assert cfg.data.data_dir is None and cfg.model.dtype == "bfloat16"
  with pytest.raises(ValueError, match="cannot read it as int"):
    override(gpt_config(), {"data.tokens": "1.5"})
  with pytest.raises(ValueError, match="no section 'optim'"):
    override(gpt_config(), {"optim.lr": 1.0})
  with pytest.raises(ValueError, match="opt has no field 'lrate'"):
    override(gpt_config(), {"opt.lrate": 1.0})
  with pytest.raises(ValueError, match="no field 'n_head' for the lstm family"):
    override(Config(model=get_config("lstm", "tiny")), {"model.n_head": 2})


def test_a_new_shape_is_labelled_custom():
  cfg = override(gpt_config(), {"model.n_layer": 4})
  assert cfg.model.size == "custom" and cfg.model.n_layer == 4
  assert override(gpt_config(), {"model.dropout": 0.1}).model.size == "tiny"


def test_validate_names_the_path():
  with pytest.raises(ValueError, match=r"^opt.lr must be a positive number, got -1.0"):
    OptimizerConfig(lr=-1.0)
  with pytest.raises(ValueError, match=r"^data.batch_size must be a positive integer"):
    override(gpt_config(), {"data.batch_size": 0})
  with pytest.raises(ValueError, match=r"^model.n_head must be a positive divisor of d_model"):
    get_config("gpt", "tiny", n_head=5)


def test_mismatch_ignores_runtime_fields_and_names_paths():
  cfg = gpt_config(vocab_size=97)
  saved = cfg.to_dict()
  same = override(gpt_config(), {"run.log_every": 7, "eval.every": 3, "data.data_dir": "/x",
                                 "model.attention": "xla"})
  assert config_mismatch(saved, same) == {}  # vocab_size, logging, eval, corpus folder, kernel
  assert config_mismatch(saved, override(cfg, {"opt.lr": 1.0})) == {"opt.lr": (3e-4, 1.0)}
  assert "model.arch" in config_mismatch(saved, Config(model=get_config("lstm", "tiny")))


def test_a_flat_record_of_an_older_run_reads_as_the_nested_config():
  train = {"arch": "lstm", "size": "large", "table": "A", "lr": 4e-3, "tokens": 4_000_000,
           "epochs": 8.0, "batch_size": 32, "block_size": 512, "eval_every": 100,
           "eval_batch_size": 64, "seed": 0, "data_dir": None, "width_scale": 0.25}
  model = {"arch": "lstm", "size": "large", "table": "A", "vocab_size": 97, "block_size": 512,
           "n_layer": 3, "d_model": 128, "n_head": 0, "dropout": 0.0, "dtype": "float32",
           "lstm_unroll": 1, "attention": "auto"}
  cfg = from_record({"train": train, "model": model})
  assert isinstance(cfg.model, LSTMConfig) and (cfg.model.n_layer, cfg.model.d_model) == (3, 128)
  assert (cfg.opt.lr, cfg.data.tokens, cfg.data.epochs, cfg.eval.every) == (4e-3, 4_000_000, 8.0, 100)
  with pytest.raises(ValueError, match="not a run record"):
    from_record({"results": {}})


def test_flags_override_any_field_by_path():
  values = flags.FlagValues()
  config_flags.define(values)
  values(["prog", "--config.opt.lr=1e-2", "--config.model.n_head=2", "--config.eval.every=5"])
  given = config_flags.overrides(values)
  assert given == {"opt.lr": "1e-2", "model.n_head": "2", "eval.every": "5"}
  cfg = config_flags.apply(gpt_config(), given)
  assert (cfg.opt.lr, cfg.model.n_head, cfg.eval.every) == (1e-2, 2, 5)
  with pytest.raises(ValueError, match="--config.model.n_head: model.n_head is set by --sizes"):
    config_flags.apply(gpt_config(), given, owned={"model.n_head": "--sizes"})
  with pytest.raises(ValueError, match="opt.lr must be a positive number"):
    config_flags.apply(gpt_config(), {"opt.lr": "-1"})
  # Every field of every section and family has its flag, and nothing else does.
  names = {n[len("config."):] for n in values if n.startswith("config.")}
  expected = {f"{s}.{f.name}" for s, cls in (("opt", OptimizerConfig), ("data", DataConfig))
              for f in dataclasses.fields(cls)}
  assert expected <= names and {"model.n_head", "model.unroll", "model.d_model"} <= names
  assert not any(n.endswith(("SIZES", "CPU", "arch")) for n in names)


def test_size_table_and_vocabulary_are_not_overridden():
  for path, message in (("model.size", "a size name comes with its shape"),
                        ("model.table", "a table comes with its shapes"),
                        ("model.vocab_size", "the corpus's")):
    with pytest.raises(ValueError, match=message):
      override(gpt_config(), {path: "xl" if path == "model.size" else "B"})


def test_frozen_sections():
  with pytest.raises(dataclasses.FrozenInstanceError):
    gpt_config().opt.lr = 1.0  # type: ignore[misc]
  assert flatten({"a": {"b": 1, "c": {"d": 2}}}) == {"a.b": 1, "a.c.d": 2}
  assert isinstance(gpt_config().model, GPTConfig)
