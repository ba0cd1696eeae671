"""The benchmark entry point on tiny shapes: it runs, and its JSON lines carry their fields.

Never asserts a speed: speed is measured by `python -m experiments.benchmark`, not by tests.
"""

import contextlib
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from abcjax import cpu_tuning
from abcjax.train.config import OptimizerConfig
from tests.tiny_corpus import build_tiny_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = REPO / "benchmarks" / "torch_reference.py"
OPTIMIZER_FIELDS = ("lr", "b1", "b2", "eps", "weight_decay", "grad_clip")
PEER_TOKENS_PER_S = 1000.0

# Stands in for the PyTorch reference: echoes the shape it was asked for, at a fixed speed.
FAKE_PEER = f"""
import argparse, json
ap = argparse.ArgumentParser()
for name in ("arch", "layers", "d", "heads", "vocab", "batch", "block", "seconds"):
  ap.add_argument("--" + name)
a, _ = ap.parse_known_args()
print("warming up")
print(json.dumps({{"impl": "fake", "threads": 1, "params": 0, "tokens_per_s": {PEER_TOKENS_PER_S},
                  **vars(a)}}))
"""

TRAIN_FIELDS = {"tokens_per_s", "step_s", "compile_s", "peak_memory_bytes", "mfu",
                "peak_flops_per_device", "peak_source", "flops_per_token", "backend", "n_layer",
                "d_model", "n_head", "batch", "block", "dtype", "cpu_steal",
                "page_faults_per_step", "step_s_max", "warmup_steps", "warmup_s"}


def run_benchmark(*args):
  done = subprocess.run([sys.executable, "-m", "experiments.benchmark", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-3000:]
  return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("bench")
  build_tiny_corpus(root, count=100)
  (root / "fake_peer.py").write_text(FAKE_PEER)
  return root


def test_every_measurement_prints_its_fields(tiny_root, tmp_path):
  out = tmp_path / "lines.jsonl"
  lines = run_benchmark(
      "--archs=gpt", "--n_layer=1", "--d_model=16", "--n_head=2", "--vocab=20", "--batch=2",
      "--block=16", "--seconds=0.2", "--rounds=2", "--gen_tokens=4",
      "--what=train,generate,loader,corpus", f"--data_dir={tiny_root / 'corpus'}",
      "--corpus_source=abc_dir", f"--corpus_input_dir={tiny_root / 'abc'}",
      f"--torch_python={sys.executable}", f"--torch_reference={tiny_root / 'fake_peer.py'}",
      f"--out={out}")
  by_what = {}
  for line in lines:
    by_what.setdefault(line["what"], []).append(line)
  assert sorted(by_what) == ["corpus", "generate", "loader", "train"]
  assert [json.loads(l) for l in out.read_text().splitlines()] == lines

  (train,) = by_what["train"]
  assert TRAIN_FIELDS <= set(train)
  assert (train["arch"], train["size"], train["n_layer"], train["d_model"], train["n_head"]) == (
      "gpt", "custom", 1, 16, 2)
  assert train["tokens_per_s"] > 0 and train["step_s"] > 0 and 0 < train["mfu"]
  assert train["tokens_per_s"] * train["step_s"] == pytest.approx(2 * 16)
  # The peer ran once per round with our shapes, and the ratio is of the two medians.
  assert train["torch_rounds_tokens_per_s"] == [PEER_TOKENS_PER_S] * 2
  assert len(train["rounds_tokens_per_s"]) == 2
  # Host diagnostics per round, and the worst of them at the top level.
  assert len(train["rounds_cpu_steal"]) == len(train["torch_rounds_cpu_steal"]) == 2
  assert all(s is None or 0 <= s <= 1 for s in train["rounds_cpu_steal"] + train["torch_rounds_cpu_steal"])
  assert train["page_faults_per_step"] == max(train["rounds_page_faults_per_step"])
  assert train["step_s_min"] <= train["step_s"] <= train["step_s_max"]
  assert train["ratio_vs_torch"] == pytest.approx(train["tokens_per_s"] / PEER_TOKENS_PER_S)
  # The entry point turned the CPU tuning on: it restarted itself with the allocator settings
  # and paced its steps, with the hand-written backward passes on one CPU device; the peer ran
  # without the allocator settings.
  assert train["malloc_tuned"] == (cpu_tuning.applies() or cpu_tuning.is_tuned())
  assert train["paced_steps"] or not cpu_tuning.applies()
  assert train["cpu_backward"] == cpu_tuning.cpu_backward()
  assert train["torch_malloc_tuned"] is False
  for flag, value in (("--layers", "1"), ("--d", "16"), ("--heads", "2"), ("--vocab", "20"),
                      ("--batch", "2"), ("--block", "16")):
    assert f"{flag} {value} " in train["torch_command"] + " "

  uncached, cached = by_what["generate"]
  assert (uncached["use_cache"], cached["use_cache"]) == (False, True)
  assert cached["new_tokens"] == 4 and cached["tokens_per_s"] > 0
  assert cached["speedup_vs_uncached"] == pytest.approx(
      cached["tokens_per_s"] / uncached["tokens_per_s"])

  (loader,) = by_what["loader"]
  assert loader["batches_per_s"] > 0 and loader["batch"] == 2 and loader["block"] == 16
  (corpus,) = by_what["corpus"]
  assert corpus["files"] == 2 and corpus["input_bytes"] > 0 and corpus["mb_per_s"] > 0


@contextlib.contextmanager
def parsed_flags(*argv):
  """The entry point's module with these flags parsed; the flags are restored on exit."""
  from experiments import benchmark
  was_parsed = flags.FLAGS.is_parsed()
  try:
    with flagsaver.flagsaver():
      flags.FLAGS(["benchmark", *argv])
      yield benchmark
  finally:
    if not was_parsed:
      flags.FLAGS.unparse_flags()


def configs_from_flags(*argv):
  """The model configs the entry point would measure for these flags (nothing is run)."""
  with parsed_flags(*argv) as benchmark:
    return list(benchmark._configs())


def test_sizes_select_the_table_shapes():
  configs = configs_from_flags("--archs=gpt,lstm", "--sizes=B:tiny,A:small")
  shapes = [(c.arch, c.table, c.size, c.n_layer, getattr(c, "n_head", 0), c.d_model) for c in configs]
  assert shapes == [("gpt", "B", "tiny", 3, 3, 192), ("gpt", "A", "small", 6, 8, 256),
                    ("lstm", "B", "tiny", 2, 0, 288), ("lstm", "A", "small", 2, 0, 256)]
  assert {c.cpu_backward for c in configs} == {cpu_tuning.cpu_backward()}
  (custom,) = configs_from_flags("--archs=gpt", "--n_layer=2", "--d_model=128", "--block=64")
  assert (custom.size, custom.n_layer, custom.n_head, custom.d_model, custom.block_size) == (
      "custom", 2, 2, 128, 64)


def test_steal_fraction_is_the_stolen_share_of_the_interval():
  from abcjax.train import hardware
  assert hardware.steal_fraction((10, 1000), (30, 1100)) == pytest.approx(0.2)
  assert hardware.steal_fraction(None, (30, 1100)) is None
  assert hardware.steal_fraction((10, 1000), (10, 1000)) is None  # no time passed
  now = hardware.cpu_times()
  if sys.platform == "linux":
    stolen, total = now
    assert 0 <= stolen <= total


def command_flags(command):
  """["py", "script", "--a", "1", "--b", "2"] -> {"--a": "1", "--b": "2"}."""
  assert len(command) % 2 == 0
  return dict(zip(command[2::2], command[3::2]))


def test_default_reference_is_in_the_repository_whatever_the_directory(tmp_path, monkeypatch):
  from abcjax import benchmark as bench_lib
  from abcjax.models import get_config
  monkeypatch.chdir(tmp_path)
  with parsed_flags() as benchmark:
    assert benchmark._peer_path() == str(REFERENCE)
  assert REFERENCE.is_file()

  opt = OptimizerConfig()
  optimizer = {f"--{k}": repr(getattr(opt, k)) for k in OPTIMIZER_FIELDS}
  gpt = get_config("gpt", "tiny", table="B", vocab_size=99, block_size=128)
  command = bench_lib.torch_peer_command("py", str(REFERENCE), gpt, 64, 2.0)
  assert command[:2] == ["py", str(REFERENCE)]
  assert command_flags(command) == {
      "--arch": "gpt", "--layers": "3", "--heads": "3", "--d": "192", "--vocab": "99",
      "--batch": "64", "--block": "128", "--seconds": "2.0", **optimizer}
  assert optimizer["--b2"] == "0.95" and optimizer["--weight_decay"] == "0.1"
  lstm = get_config("lstm", "small", table="A", vocab_size=50)
  assert command_flags(bench_lib.torch_peer_command("py", str(REFERENCE), lstm, 8, 1.0)) == {
      "--arch": "lstm", "--layers": "2", "--d": "256", "--vocab": "50", "--batch": "8",
      "--block": "256", "--seconds": "1.0", **optimizer}


def test_a_missing_reference_or_interpreter_fails_naming_its_flag(tmp_path):
  from absl import app
  # A tiny shape, so that a check that let these through would fail fast.
  tiny = ("--archs=gpt", "--n_layer=1", "--d_model=8", "--n_head=1", "--block=4", "--batch=1",
          "--seconds=0.01", "--rounds=1", "--what=train")
  missing = tmp_path / "missing.py"
  cases = [
      (("--torch_python=/no/such/python",), "--torch_python=/no/such/python: no such executable"),
      # --torch_peer is the old name of --torch_reference.
      ((f"--torch_python={sys.executable}", f"--torch_peer={missing}"),
       f"--torch_reference={missing}: no such file"),
      ((f"--torch_python={sys.executable}", "--torch_reference=benchmarks/nothing.py"),
       f"no such file {REPO / 'benchmarks' / 'nothing.py'} "),
  ]
  for argv, message in cases:
    with parsed_flags(*tiny, *argv) as benchmark:
      with pytest.raises(app.UsageError, match=re.escape(message)):
        benchmark.main(["benchmark"])


def torch_python():
  """A python that has torch: this one, else $ABCJAX_TORCH_PYTHON."""
  if importlib.util.find_spec("torch") is not None:
    return sys.executable
  return os.environ.get("ABCJAX_TORCH_PYTHON")


@pytest.mark.skipif(not torch_python(), reason="torch is not importable here and "
                    "ABCJAX_TORCH_PYTHON does not name a python that has it")
@pytest.mark.parametrize("arch, shape", [("gpt", dict(n_layer=2, n_head=3, d_model=24)),
                                         ("lstm", dict(n_layer=3, d_model=20))])
def test_torch_reference_has_the_parameters_of_abcjax(arch, shape):
  from abcjax import benchmark
  from abcjax.models import get_config
  config = get_config(arch, "custom", vocab_size=37, block_size=16, **shape)
  line = benchmark.run_torch_peer(torch_python(), str(REFERENCE), config, batch=2, seconds=0.0)
  assert line["params"] == config.num_params()
  assert (line["arch"], line["n_layer"], line["d_model"], line["n_head"], line["vocab_size"],
          line["batch"], line["block"]) == (arch, config.n_layer, config.d_model, config.n_head,
                                            37, 2, 16)
  assert line["steps"] >= 3 and line["tokens_per_s"] > 0 and line["threads"] >= 1
  assert line["impl"] == "torch-" + line["torch_version"]
  assert line["optimizer"] == {k: getattr(OptimizerConfig(), k) for k in OPTIMIZER_FIELDS}
