"""Presets: whole configs by name, each family's laptop shapes and rates, the corpus cap."""

import pytest

from abcjax.models import config_class, names
from abcjax.train import presets


@pytest.mark.parametrize("arch", names())
def test_every_size_of_every_family_has_both_presets(arch):
  for size in config_class(arch).size_names():
    paper = presets.make("paper", arch, size, backend="cpu")
    cpu = presets.make("cpu", arch, size, backend="cpu")
    assert (paper.run.preset, cpu.run.preset) == ("paper", "cpu")
    assert paper.model.block_size == 256 and paper.data.tokens == 100_000_000
    assert paper.opt.lr == 3e-4 and paper.data.batch_size == 64
    assert cpu.model.block_size == 64 and cpu.data.tokens < paper.data.tokens
    assert cpu.model.size == size and cpu.opt.lr == config_class(arch).CPU.lr[size]
    assert cpu.model.num_params() < paper.model.num_params()
    cpu.validate()


def test_laptop_sizes_grow_with_the_size_names():
  for arch in names():
    counts = [presets.make("cpu", arch, s, backend="cpu").model.replace(vocab_size=97).num_params()
              for s in config_class(arch).size_names()]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (arch, counts)


def test_dtype_follows_the_backend():
  assert presets.make("paper", "gpt", "xl", backend="gpu").model.dtype == "bfloat16"
  assert presets.make("paper", "lstm", "large", backend="gpu").model.dtype == "float32"
  assert presets.make("paper", "gpt", "xl", backend="cpu").model.dtype == "float32"
  assert presets.resolve("auto", "gpu") == "paper" and presets.resolve("auto", "cpu") == "cpu"
  with pytest.raises(ValueError, match="preset must be one of"):
    presets.resolve("fast")


def test_best_model_overrides():
  best = presets.make("cpu", "lstm", "large", best_model=True, backend="cpu")
  assert (best.model.block_size, best.data.batch_size, best.data.epochs) == (512, 32, 8.0)
  assert best.opt.lr == config_class("lstm").CPU.best_lr["large"]
  paper = presets.make("paper", "gpt", "xl", best_model=True, backend="cpu")
  assert (paper.data.tokens, paper.data.epochs) == (200_000_000, 5.0)
  assert presets.BEST_DEFAULT["cpu"][0] in names()


def test_the_paper_budget_is_capped_to_a_few_passes_over_the_corpus():
  cfg = presets.make("paper", "gpt", "tiny", backend="cpu")
  capped, note = presets.cap_to_corpus(cfg, 4_300_000)
  assert capped.data.tokens == presets.PAPER_MAX_PASSES * 4_300_000
  assert "23.3 passes" in note and "--transpose=all" in note
  same, none = presets.cap_to_corpus(cfg, 50_000_000)
  assert same == cfg and none is None
  best = presets.make("paper", "gpt", "xl", best_model=True, backend="cpu")  # 5 epochs
  capped, note = presets.cap_to_corpus(best, 4_300_000)
  assert capped.total_tokens <= presets.PAPER_MAX_PASSES * 4_300_000 and capped.data.epochs == 5
  assert "an epoch, 5 epochs" in note
