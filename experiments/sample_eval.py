r"""Part 4: sample from the best model and evaluate the samples (syntax, MIDI, abc2midi, statistics).

  python -m experiments.sample_eval                          # best checkpoint of runs/best_model
  python -m experiments.sample_eval --checkpoint=final --temperature=0.8 --top_k=0 --top_p=0.95
  python -m experiments.sample_eval --samples_dir=DIR        # score any folder of .abc files
  python -m experiments.sample_eval --calibrate              # the evaluator on the real test tunes

The real tunes of the test split are evaluated the same way and printed beside the samples' rates
(the calibration baseline), unless --baseline names a summary.json to reuse or --norun_baseline.

Any folder of ABC files (a public collection, say) is scored the same way with --samples_dir=DIR
--norun_baseline: files not named uncond_*, cond_* or real_* are collections split into tunes.
summary.txt gives the share of valid tunes, the reason for each failure, the warnings (what ABC 2.1
says to ignore, such as fields it does not define), and, with abc2midi installed, how often the
checker agrees with abc2midi's hard errors and where it does not; results.csv has one row a tune.
"""

from __future__ import annotations

# First, before jax loads: CPU tuning is on here; restart once with its allocator settings.
from abcjax import cpu_tuning

cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)

import json
import pathlib
import re

import numpy as np
from absl import app, flags, logging

from abcjax.data import abc_text, corpus
from abcjax.evaluation import evaluate
from abcjax.evaluation.sampling import (FIELD_RANGES, SamplingConfig, valid_prompt_tunes,
                                        write_samples)
from experiments import cli

_DEFAULTS = SamplingConfig()
WORKDIR = flags.DEFINE_string("workdir", "runs/best_model", "Trained run to sample from.")
CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "final", "latest"], "Which checkpoint.")
OUT_DIR = flags.DEFINE_string("out_dir", "runs/sample_eval", "Samples, MIDI files, CSV and summary go here.")
NUM_UNCOND = flags.DEFINE_integer("num_uncond", _DEFAULTS.num_uncond, "Unconditional samples.")
NUM_COND = flags.DEFINE_integer("num_cond", _DEFAULTS.num_cond, "Samples prompted by test-split tunes.")
TEMPERATURE = flags.DEFINE_float("temperature", _DEFAULTS.temperature, "Sampling temperature (0: greedy).")
TOP_K = flags.DEFINE_integer("top_k", _DEFAULTS.top_k, "Top-k sampling (0: off).")
TOP_P = flags.DEFINE_float("top_p", _DEFAULTS.top_p, "Nucleus sampling (1.0: off).")
SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Sampling seed.")
MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", _DEFAULTS.max_new_tokens,
                                      "Longest sample; a tune normally stops earlier at its end.")
PROMPT_BARS = flags.DEFINE_integer("prompt_bars", _DEFAULTS.prompt_bars,
                                   "Conditional prompts: the header and this many opening bars.")
SAMPLES_DIR = flags.DEFINE_string("samples_dir", None, "Evaluate this folder of .abc files (no checkpoint).")
CALIBRATE = flags.DEFINE_bool("calibrate", False, "Only evaluate real tunes (the test split, or "
                              "--calibrate_tunes drawn from the whole corpus).")
CALIBRATE_TUNES = flags.DEFINE_integer("calibrate_tunes", 0, "With --calibrate: draw this many tunes "
                                       "from all splits instead of the test split.")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Corpus folder for prompts, baseline and memorization "
                               "(default: the checkpoint's, or the embedded music21 corpus).")
BASELINE = flags.DEFINE_string("baseline", None, "Reuse this baseline summary.json instead of evaluating "
                               "the test split again.")
RUN_BASELINE = flags.DEFINE_bool("run_baseline", True, "Evaluate the real test tunes as the baseline.")
TRAIN_TEXT = flags.DEFINE_string("train_text", None, "Training text for the memorization check "
                                 "(default: train.txt of the corpus folder).")
REFERENCE_TUNES = flags.DEFINE_integer("reference_tunes", 2000, "Training tunes the musical statistics "
                                       "compare against (0: skip).")
MEMORIZATION_CHARS = flags.DEFINE_integer(
    "memorization_chars", 20_000_000, "Training text indexed for the memorization check and drawn "
    "from for --reference_tunes and --calibrate_tunes: a larger file gives whole tunes from random "
    "places up to this many characters (the index takes ~60 bytes a character: 20M, 1.3 GB and "
    "26 s; 0: the whole file).")
WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes for music21 and abc2midi.")

_RANGES = {**FIELD_RANGES,
           "memorization_chars": (lambda v: v >= 0, ">= 0 (0: the whole file)"),
           "reference_tunes": (lambda v: v >= 0, ">= 0 (0: skip)"),
           "calibrate_tunes": (lambda v: v >= 0, ">= 0 (0: the test split)"),
           "workers": (lambda v: v >= 1, ">= 1")}
for _name, (_ok, _allowed) in _RANGES.items():
  flags.register_validator(_name, _ok, message=f"must be {_allowed}")


@flags.multi_flags_validator(["num_uncond", "num_cond", "samples_dir", "calibrate"],
                             message="--num_uncond + --num_cond is 0: ask for at least one sample")
def _asks_for_a_sample(values) -> bool:
  return bool(values["samples_dir"] or values["calibrate"]
              or values["num_uncond"] + values["num_cond"] >= 1)


def write_tunes(tunes, folder: pathlib.Path, prefix: str) -> list[pathlib.Path]:
  """Writes <prefix>_NNNNN.abc per tune, first removing those an earlier run wrote."""
  folder.mkdir(parents=True, exist_ok=True)
  for stale in folder.iterdir():
    if re.fullmatch(rf"{prefix}_\d{{5,}}\.abc", stale.name):
      stale.unlink()
  paths = []
  for i, tune in enumerate(tunes):
    paths.append(folder / f"{prefix}_{i:05d}.abc")
    paths[-1].write_text(tune, encoding="utf-8")
  return paths


def calibration_tunes(data_dir, count: int, seed: int) -> list[str]:
  """The test split, or `count` tunes drawn from all splits."""
  if not count:
    return corpus.load_tunes(data_dir, "test")
  tunes = [t for split in corpus.SPLITS for t in abc_text.parse_tunes(corpus.read_tune_text(
      pathlib.Path(data_dir) / f"{split}.txt", MEMORIZATION_CHARS.value, seed=seed)[0])]
  pick = np.random.default_rng(seed).choice(len(tunes), min(count, len(tunes)), replace=False)
  return [tunes[i] for i in sorted(pick)]


def reused_baseline() -> dict | None:
  """The summary --baseline names, read before any work so that a wrong path fails at once."""
  if not (RUN_BASELINE.value and BASELINE.value):
    return None
  hint = ("give the summary.json of an earlier run's baseline/ folder, or leave --baseline out to "
          "evaluate the test split again")
  try:
    summary = json.loads(pathlib.Path(BASELINE.value).read_text(encoding="utf-8"))
  except OSError as e:
    raise FileNotFoundError(f"--baseline={BASELINE.value}: cannot read it ({e}); {hint}") from e
  except ValueError as e:
    raise ValueError(f"--baseline={BASELINE.value}: not JSON ({e}); {hint}") from e
  if not isinstance(summary, dict) or "valid_pct" not in summary:
    raise ValueError(f"--baseline={BASELINE.value}: not a sample_eval summary.json; {hint}")
  return summary


def run_baseline(data_dir, out_dir: pathlib.Path) -> dict:
  """Evaluates the real tunes of the test split exactly as the samples are evaluated."""
  files = write_tunes(corpus.load_tunes(data_dir, "test"), out_dir / "baseline" / "tunes", "real")
  evaluate.evaluate_files(files, out_dir / "baseline", workers=WORKERS.value)
  return json.loads((out_dir / "baseline" / "summary.json").read_text())


def corpus_dir(trained_on: pathlib.Path | None = None) -> pathlib.Path:
  """--data_dir checked as a prepared corpus; without it `trained_on` or the embedded corpus."""
  try:
    return corpus.ensure_corpus(DATA_DIR.value or trained_on)
  except FileNotFoundError as e:
    if DATA_DIR.value:
      raise FileNotFoundError(f"--data_dir={DATA_DIR.value}: {e}") from e
    if trained_on is None:
      raise FileNotFoundError(f"--data_dir not given, and the default corpus: {e}") from e
    raise FileNotFoundError(f"--workdir={WORKDIR.value} was trained on {trained_on}, which is no "
                            "longer a corpus: pass --data_dir=the corpus it was trained on") from e


def load_checkpoint():
  """The trained run of --workdir and the corpus to evaluate it with, each checked, or an error
  that names the flag to change."""
  from abcjax.train import loop  # Only the checkpoint route needs the model stack.
  workdir = pathlib.Path(WORKDIR.value)
  if not (workdir / loop.CONFIG_FILE).is_file():
    raise FileNotFoundError(f"--workdir={workdir}: no trained run there ({loop.CONFIG_FILE} "
                            "missing); point it at a run folder, or train one: "
                            "python -m experiments.best_model")
  data_dir = corpus_dir() if DATA_DIR.value else None
  try:
    trained = loop.load_trained(workdir, CHECKPOINT.value, data_dir)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--workdir={workdir} --checkpoint={CHECKPOINT.value}: {e}") from e
  except loop.ConfigMismatch as e:
    raise ValueError(f"--data_dir={data_dir}: {e}") from e
  if data_dir is None:  # The corpus it was trained on, which must still have its vocabulary.
    data_dir = corpus_dir(trained.data_dir)
    loop.check_vocab(workdir, corpus.load_vocab(data_dir), data_dir,
                     "Pass --data_dir=the corpus the model was trained on.")
  return trained, data_dir


def reference(corpus_train: pathlib.Path, text: str | None = None) -> list[str] | None:
  """Training tunes for the musical statistics, from `text` when it is the corpus's train text."""
  if not REFERENCE_TUNES.value:
    return None
  if text is None:
    text = corpus.read_tune_text(corpus_train, MEMORIZATION_CHARS.value)[0]
  tunes = abc_text.parse_tunes(text)
  pick = np.random.default_rng(0).choice(len(tunes), min(REFERENCE_TUNES.value, len(tunes)), replace=False)
  return [tunes[i] for i in sorted(pick)]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax's INFO chatter stays off the console
  if TRAIN_TEXT.value and not pathlib.Path(TRAIN_TEXT.value).is_file():
    raise FileNotFoundError(f"--train_text={TRAIN_TEXT.value}: no such file; give a training "
                            "text (e.g. a corpus's train.txt), or leave it out to use the corpus's")
  baseline = reused_baseline()
  out_dir = pathlib.Path(OUT_DIR.value)
  out_dir.mkdir(parents=True, exist_ok=True)

  if CALIBRATE.value:
    data_dir = corpus_dir()
    files = write_tunes(calibration_tunes(data_dir, CALIBRATE_TUNES.value, SEED.value),
                        out_dir / "tunes", "real")
    evaluate.evaluate_files(files, out_dir, workers=WORKERS.value)
    print((out_dir / "summary.txt").read_text())
    return

  kinds = prompts = ended = None
  if SAMPLES_DIR.value:
    data_dir = corpus_dir()
    files = sorted(pathlib.Path(SAMPLES_DIR.value).glob("*.abc"))
    if not files:
      raise app.UsageError(f"--samples_dir={SAMPLES_DIR.value}: no .abc files there")
  else:
    trained, data_dir = load_checkpoint()
    sampling = SamplingConfig(
        num_uncond=NUM_UNCOND.value, num_cond=NUM_COND.value, temperature=TEMPERATURE.value,
        top_k=TOP_K.value, top_p=TOP_P.value, seed=SEED.value, max_new_tokens=MAX_NEW_TOKENS.value,
        prompt_bars=PROMPT_BARS.value)
    print(f"sampling {sampling.num_uncond} unconditional + {sampling.num_cond} conditional tunes from "
          f"{WORKDIR.value} ({CHECKPOINT.value} checkpoint, step {trained.step})", flush=True)
    test_tunes = corpus.load_tunes(data_dir, "test")
    prompt_tunes, skipped = valid_prompt_tunes(test_tunes)
    if skipped:
      print(f"prompts: {len(prompt_tunes)} of the {len(test_tunes)} test tunes; left out because "
            f"the checker rejects them (a prompt copies them into the sample): {skipped}", flush=True)
    manifest = write_samples(trained, out_dir / "samples", prompt_tunes, sampling)
    files = [out_dir / "samples" / m["file"] for m in manifest]
    kinds = [m["kind"] for m in manifest]
    prompts = [m["prompt"] for m in manifest]
    ended = [m["stopped"] for m in manifest]
    unstopped = ended.count(False)
    if unstopped:
      print(f"{unstopped} of {len(manifest)} samples reached --max_new_tokens before the end of "
            "their tune", flush=True)

  if RUN_BASELINE.value and baseline is None:
    baseline = run_baseline(data_dir, out_dir)
  corpus_train = pathlib.Path(data_dir) / "train.txt"
  train_text, train_bytes = corpus.read_tune_text(TRAIN_TEXT.value or corpus_train,
                                                  MEMORIZATION_CHARS.value)
  reference_tunes = reference(corpus_train, None if TRAIN_TEXT.value else train_text)
  if MEMORIZATION_CHARS.value and train_bytes > MEMORIZATION_CHARS.value:
    print(f"memorization: the index holds {len(train_text):,} characters of whole tunes from random "
          f"places in the {train_bytes:,}-byte training text (--memorization_chars)", flush=True)
  scope = {"training_chars_indexed": len(train_text), "training_text_bytes": train_bytes}
  evaluate.evaluate_files(files, out_dir, kinds=kinds, prompts=prompts, train_text=train_text,
                          reference_tunes=reference_tunes, workers=WORKERS.value, baseline=baseline,
                          ended=ended, memorization_scope=scope)
  print((out_dir / "summary.txt").read_text())


if __name__ == "__main__":
  cli.run(main)
