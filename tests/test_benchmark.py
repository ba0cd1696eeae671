"""The benchmark entry point on tiny shapes: it runs, and its JSON lines carry their fields.

Never asserts a speed: speed is measured by `python -m experiments.benchmark`, not by tests.
"""

import json
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from abcjax import cpu_tuning
from tests.tiny_corpus import build_tiny_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]
PEER_TOKENS_PER_S = 1000.0

# Stands in for the PyTorch reference: echoes the shape it was asked for, at a fixed speed.
FAKE_PEER = f"""
import argparse, json
ap = argparse.ArgumentParser()
for name in ("arch", "layers", "d", "heads", "vocab", "batch", "block", "seconds"):
  ap.add_argument("--" + name)
a = ap.parse_args()
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
      f"--torch_python={sys.executable}", f"--torch_peer={tiny_root / 'fake_peer.py'}",
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


def configs_from_flags(*argv):
  """The model configs the entry point would measure for these flags (nothing is run)."""
  from experiments import benchmark
  was_parsed = flags.FLAGS.is_parsed()
  with flagsaver.flagsaver():
    flags.FLAGS(["benchmark", *argv])
    configs = list(benchmark._configs())
  if not was_parsed:
    flags.FLAGS.unparse_flags()
  return configs


def test_sizes_select_the_issue_shapes():
  configs = configs_from_flags("--archs=gpt,lstm", "--sizes=B:tiny,A:small")
  shapes = [(c.arch, c.table, c.size, c.n_layer, c.n_head, c.d_model) for c in configs]
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
