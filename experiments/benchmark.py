"""Throughput benchmark: python -m experiments.benchmark --archs=gpt --sizes=B:tiny --batch=64.

Prints one JSON line per measurement (what=train|generate|loader|corpus); --out also appends them to
a file. The measurements live in `abcjax.benchmark`; this file only parses flags.

The issue's shapes: GPT tiny of table B (3 layers, 3 heads, 192) and LSTM small of table A (2 x 256):
  python -m experiments.benchmark --archs=gpt --sizes=B:tiny --what=train \
      --torch_python=/tmp/torch-venv/bin/python
  python -m experiments.benchmark --archs=lstm --sizes=A:small --what=train \
      --torch_python=/tmp/torch-venv/bin/python
With --torch_python the PyTorch reference (--torch_reference, by default this repository's
benchmarks/torch_reference.py) runs in a subprocess with the same shapes, alternating with our
measurement --rounds times, and the line gains torch_tokens_per_s and ratio_vs_torch (medians).
Each train line also says how clean the timing was: warmup_steps/warmup_s (untimed steps run until
the heap stopped growing), page_faults_per_step (memory touched for the first time while timed) and
cpu_steal (share of CPU time the hypervisor gave elsewhere during the timed steps); the top-level
figures are the worst round's, and rounds_* list each round (torch_rounds_cpu_steal: over each peer
run, its start-up included).
"""

from __future__ import annotations

# First, before jax loads: CPU tuning is on here; restart once with its allocator settings.
from abcjax import cpu_tuning

cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)

import json
import pathlib
import shutil

from absl import app, flags

from abcjax.models.gpt import ATTENTION_IMPLS
from abcjax import checks
from experiments import cli

_REPO = pathlib.Path(__file__).resolve().parents[1]

_ARCHS = flags.DEFINE_list("archs", ["gpt", "lstm"], "Model families (gpt, lstm, gru).")
_SIZES = flags.DEFINE_list("sizes", ["tiny"], "Size names, each optionally TABLE:name (B:tiny) to "
                           "override --table. Ignored when --n_layer/--d_model give a custom shape.")
_TABLE = flags.DEFINE_enum("table", "B", ["A", "B"], "Size table of the size names.")
_N_LAYER = flags.DEFINE_integer("n_layer", None, "Custom shape: layers (with --d_model).")
_D_MODEL = flags.DEFINE_integer("d_model", None, "Custom shape: width (with --n_layer).")
_N_HEAD = flags.DEFINE_integer("n_head", None, "Custom shape: GPT heads (default d_model // 64).")
_VOCAB = flags.DEFINE_integer("vocab", 99, "Vocabulary size (the study's corpus has 99).")
_BATCH = flags.DEFINE_integer("batch", 64, "Global training batch (sequences).")
_BLOCK = flags.DEFINE_integer("block", 256, "Sequence length.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_ATTENTION = flags.DEFINE_enum("attention", "auto", list(ATTENTION_IMPLS),
                               "GPT attention kernel (auto: cuDNN on NVIDIA GPUs in bfloat16, "
                               "blocked on CPU).")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Seconds of timed calls per measurement (and round).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternations of abcjax and the torch peer (train).")
_WHAT = flags.DEFINE_list("what", ["train", "generate", "loader", "corpus"],
                          "Measurements: train, generate, loader, corpus.")
_GEN_BATCH = flags.DEFINE_integer("gen_batch", 1, "Rows sampled together (generate).")
_GEN_TOKENS = flags.DEFINE_integer("gen_tokens", 256, "Tokens generated per row (generate).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Prepared corpus for the loader (default: the "
                                "music21 corpus, built once).")
_CORPUS_SOURCE = flags.DEFINE_string("corpus_source", "music21", "Source timed by 'corpus'.")
_CORPUS_INPUT_DIR = flags.DEFINE_string("corpus_input_dir", None, "Input folder (abc_dir, midi_dir).")
_CORPUS_MAX_FILES = flags.DEFINE_integer("corpus_max_files", None, "Use only the first N files.")
_TORCH_PYTHON = flags.DEFINE_string("torch_python", None, "A python with torch: also run the "
                                    "PyTorch reference side by side (float32 train only).")
_TORCH_REFERENCE = flags.DEFINE_string(
    "torch_reference", "benchmarks/torch_reference.py",
    "The PyTorch reference script, run by --torch_python; a relative path is taken from the "
    "repository root, not the current directory.")
flags.DEFINE_alias("torch_peer", "torch_reference")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "OMP_NUM_THREADS for the peer (0: its default).")
_TORCH_TUNED_MALLOC = flags.DEFINE_bool(
    "torch_tuned_malloc", False, "Give the peer abcjax's allocator settings (abcjax/cpu_tuning.py) "
    "instead of glibc's defaults.")
_OUT = flags.DEFINE_string("out", None, "Also append the JSON lines to this file.")


def _configs():
  import dataclasses
  from abcjax.models import config_class, get_config
  custom = _N_LAYER.value is not None or _D_MODEL.value is not None
  for arch in _ARCHS.value:
    fields = {f.name for f in dataclasses.fields(config_class(arch))}
    common = dict(vocab_size=_VOCAB.value, block_size=_BLOCK.value, dtype=_DTYPE.value,
                  cpu_backward=cpu_tuning.cpu_backward())
    if "attention" in fields:
      common["attention"] = _ATTENTION.value
    if custom:
      if _N_LAYER.value is None or _D_MODEL.value is None:
        raise app.UsageError("a custom shape needs both --n_layer and --d_model")
      shape = {"n_layer": _N_LAYER.value, "d_model": _D_MODEL.value}
      if "n_head" in fields:
        shape["n_head"] = _N_HEAD.value or max(_D_MODEL.value // 64, 1)
      yield get_config(arch, "custom", table=_TABLE.value, **common, **shape)
      continue
    for item in _SIZES.value:
      table, _, size = item.rpartition(":")
      yield get_config(arch, size, table=table or _TABLE.value, **common)


def _emit(line: dict) -> None:
  text = json.dumps(line, sort_keys=True)
  print(text, flush=True)
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      f.write(text + "\n")


def _peer_path() -> str:
  path = pathlib.Path(_TORCH_REFERENCE.value).expanduser()
  return str(path if path.is_absolute() else (_REPO / path).resolve())


TORCH_REFERENCE_ARCHS = ("gpt", "lstm")  # the families benchmarks/torch_reference.py builds


def _check_torch_reference() -> None:
  """Fails before any measurement, naming the flag, when the reference cannot be run."""
  if not _TORCH_PYTHON.value:
    return
  if shutil.which(_TORCH_PYTHON.value) is None:
    raise app.UsageError(f"--torch_python={_TORCH_PYTHON.value}: no such executable (give a "
                         "python that has torch)")
  if not pathlib.Path(_peer_path()).is_file():
    raise app.UsageError(f"--torch_reference={_TORCH_REFERENCE.value}: no such file "
                         f"{_peer_path()} (a relative path is taken from {_REPO})")
  others = sorted(set(_ARCHS.value) - set(TORCH_REFERENCE_ARCHS))
  if others:
    raise app.UsageError(f"--torch_python: the PyTorch reference has {list(TORCH_REFERENCE_ARCHS)} "
                         f"only, not {others}; measure those without --torch_python")


def _train(config) -> None:
  from abcjax import benchmark
  bench = benchmark.TrainBench(config, _BATCH.value, after_step=cpu_tuning.pacing())
  if not _TORCH_PYTHON.value or config.dtype != "float32":
    _emit(bench.measure(_SECONDS.value))
    return
  peer = lambda: benchmark.run_torch_peer(_TORCH_PYTHON.value, _peer_path(), config, _BATCH.value,
                                          _SECONDS.value, threads=_TORCH_THREADS.value,
                                          tuned_malloc=_TORCH_TUNED_MALLOC.value)
  try:
    line = benchmark.compare_train(bench, peer, rounds=_ROUNDS.value, seconds=_SECONDS.value)
  except (OSError, RuntimeError) as e:  # the reference is optional: report and go on without it
    _emit({"what": "torch_peer", "error": str(e)})
    line = bench.measure(_SECONDS.value)
  _emit({**line, "torch_command": " ".join(benchmark.torch_peer_command(
      _TORCH_PYTHON.value, _peer_path(), config, _BATCH.value, _SECONDS.value))})


def _generate(config) -> None:
  from abcjax import benchmark
  lines = [benchmark.generation_throughput(config, batch=_GEN_BATCH.value,
                                           new_tokens=_GEN_TOKENS.value, use_cache=use_cache,
                                           seconds=_SECONDS.value)
           for use_cache in (False, True)]
  lines[1]["speedup_vs_uncached"] = lines[1]["tokens_per_s"] / lines[0]["tokens_per_s"]
  for line in lines:
    _emit(line)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  unknown = set(_WHAT.value) - {"train", "generate", "loader", "corpus"}
  if unknown:
    raise app.UsageError(f"unknown --what {sorted(unknown)}")
  checks.require([(flag.name, ok, allowed, flag.value) for flag, ok, allowed in (
      (_SECONDS, _SECONDS.value > 0, "a positive number of seconds"),
      (_ROUNDS, _ROUNDS.value >= 1, "1 or more"), (_BATCH, _BATCH.value >= 1, "1 or more"),
      (_BLOCK, _BLOCK.value >= 2, "2 or more"), (_VOCAB, _VOCAB.value >= 2, "2 or more"),
      (_GEN_BATCH, _GEN_BATCH.value >= 1, "1 or more"),
      (_GEN_TOKENS, _GEN_TOKENS.value >= 1, "1 or more"),
      (_TORCH_THREADS, _TORCH_THREADS.value >= 0, "0 (its default) or more"))],
      prefix="--", error=app.UsageError)
  _check_torch_reference()
  from abcjax import benchmark
  for config in _configs():
    if "train" in _WHAT.value:
      _train(config)
    if "generate" in _WHAT.value:
      _generate(config)
  if "loader" in _WHAT.value:
    from abcjax.data import corpus
    tokens = corpus.load_split(corpus.ensure_corpus(_DATA_DIR.value), "train")
    _emit(benchmark.loader_throughput(tokens, block_size=_BLOCK.value, batch=_BATCH.value,
                                      seconds=_SECONDS.value))
  if "corpus" in _WHAT.value:
    _emit(benchmark.corpus_throughput(source=_CORPUS_SOURCE.value, input_dir=_CORPUS_INPUT_DIR.value,
                                      max_files=_CORPUS_MAX_FILES.value))


if __name__ == "__main__":
  cli.run(main)
