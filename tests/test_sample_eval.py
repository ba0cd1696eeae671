import json
import pathlib
import shutil
import subprocess
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from abcjax.data import corpus
from abcjax.data.vocab import Vocab
from abcjax.evaluation import evaluate
from abcjax.evaluation.sampling import (SamplingConfig, conditional_prompt, valid_prompt_tunes,
                                        write_samples)
from abcjax.models import build_model, get_config
from abcjax.train import loop
from abcjax.train.config import Config, DataConfig, EvalConfig, OptimizerConfig, RunConfig
from tests.tiny_corpus import build_tiny_corpus, synthetic_tunes

REPO = pathlib.Path(__file__).resolve().parents[1]


def sample_eval(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.sample_eval", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  """A tiny GPT trained for 40 steps on the synthetic corpus: (run folder, corpus folder)."""
  root = tmp_path_factory.mktemp("trained")
  data_dir = build_tiny_corpus(root)
  cfg = Config(model=get_config("gpt", "tiny", block_size=64).scale_width(1 / 6),
               opt=OptimizerConfig(lr=3e-3),
               data=DataConfig(data_dir=str(data_dir), batch_size=8, tokens=40 * 8 * 64),
               eval=EvalConfig(every=20, batch_size=8),
               run=RunConfig(log_every=10, checkpoint_every=20, progress=False))
  loop.train(cfg, root / "run")
  return root / "run", data_dir


def test_conditional_prompt_is_header_and_opening_bars():
  tune = "X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|\nGABc|\n"
  assert conditional_prompt(tune, 2) == "X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|"
  assert conditional_prompt(tune, 0) == "X:1\nT:A\nM:4/4\nL:1/8\nK:G\n"
  with pytest.raises(ValueError, match="K:"):
    conditional_prompt("X:1\nT:A\n", 2)


def test_prompt_pool_leaves_out_tunes_the_checker_rejects():
  good = "X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|\n"
  early = "X:2\nT:B\nM:6/8\nL:1/8\nfed cBA|\nK:D\nfed cBA|\n"  # music before its K: line
  usable, skipped = valid_prompt_tunes([good, early, good])
  assert usable == [good, good]
  assert skipped == {"music_before_K": 1}


def test_sample_eval_on_a_tiny_trained_checkpoint(tmp_path, trained_run):
  out = tmp_path / "eval"
  (out / "samples").mkdir(parents=True)
  (out / "samples" / "my_tune.abc").write_text("X:1\nT:mine\nK:C\nC|\n")  # the user's: kept
  proc = sample_eval(f"--workdir={trained_run[0]}", f"--out_dir={out}", "--num_uncond=3",
                     "--num_cond=3", "--max_new_tokens=200", "--reference_tunes=20", "--workers=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = sorted(p.name for p in (out / "samples").glob("[cu]*.abc"))
  assert names == [f"cond_{i:03d}.abc" for i in range(3)] + [f"uncond_{i:03d}.abc" for i in range(3)]
  manifest = json.loads((out / "samples" / "samples.json").read_text())
  for entry in manifest["samples"]:
    text = (out / "samples" / entry["file"]).read_text()
    assert text.startswith(entry["prompt"])
    if entry["kind"] == "cond":
      assert entry["prompt"].startswith("X:") and "\nK:" in entry["prompt"]
  for name in ("results.csv", "summary.json", "summary.txt", "baseline/summary.json"):
    assert (out / name).exists(), name
  rows = evaluate.read_results(out / "results.csv")
  assert sorted(row["file"] for row in rows) == names  # one row per sample, none dropped or split
  summary = json.loads((out / "summary.json").read_text())
  recomputed = evaluate.summarize(rows)
  for key in ("tunes", "valid_pct", "converted_pct", "converted_of_valid_pct", "study_valid_pct",
              "ended_pct"):
    assert summary[key] == recomputed[key]
  stopped = {m["file"]: m["stopped"] for m in manifest["samples"]}
  assert all(row["ended"] == stopped[row["file"]] for row in rows)
  for row in rows:
    stem = row["file"].replace(".abc", "")
    assert (out / "midi" / f"{stem}.mid").exists() == row["converted"]
  # The baseline is the synthetic corpus's own test split: well-formed tunes, all valid.
  baseline = json.loads((out / "baseline" / "summary.json").read_text())
  assert baseline["valid_pct"] == 100.0 and baseline["converted_pct"] == 100.0
  assert "baseline" in (out / "summary.txt").read_text().lower()
  assert any(not p.name.endswith("_000.mid") for p in (out / "midi").iterdir())  # left to remove

  # Again in the same folder with fewer samples, reusing the baseline it wrote: the folder then
  # holds the new samples and MIDI files only, as results.csv lists them.
  proc = sample_eval(f"--workdir={trained_run[0]}", f"--out_dir={out}", "--num_uncond=1",
                     "--num_cond=1", "--max_new_tokens=60", "--reference_tunes=0", "--workers=1",
                     f"--baseline={out / 'baseline' / 'summary.json'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = sorted(p.name for p in (out / "samples").glob("*.abc"))
  assert names == ["cond_000.abc", "my_tune.abc", "uncond_000.abc"]
  rows = evaluate.read_results(out / "results.csv")
  assert sorted(row["file"] for row in rows) == ["cond_000.abc", "uncond_000.abc"]
  converted = {row["file"].replace(".abc", ".mid") for row in rows if row["converted"]}
  assert {p.name for p in (out / "midi").iterdir()} == converted
  assert json.loads((out / "summary.json").read_text())["baseline"]["valid_pct"] == 100.0
  assert not list(out.rglob("*.tmp*"))


@pytest.mark.parametrize("bad, says", [
    (("--num_uncond=-1", "--num_cond=2"), "--num_uncond=-1: must be >= 0"),
    (("--num_uncond=0", "--num_cond=0"), "ask for at least one sample"),
    (("--memorization_chars=-5",), "--memorization_chars=-5: must be >= 0"),
    (("--top_p=0",), "--top_p=0.0: must be in (0, 1]"),
])
def test_out_of_range_flags_are_refused(bad, says):
  proc = sample_eval("--workdir=/nonexistent", *bad)
  assert proc.returncode == 1 and says in proc.stderr, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_missing_paths_and_a_foreign_corpus_are_one_line_errors(tmp_path, trained_run):
  run, data_dir = trained_run
  empty_run = tmp_path / "empty_run"
  empty_run.mkdir()
  shutil.copy(run / loop.CONFIG_FILE, empty_run)  # a run that saved no checkpoint yet
  moved_run = shutil.copytree(run, tmp_path / "moved_run")  # its corpus since gone
  saved = json.loads((run / loop.CONFIG_FILE).read_text())
  (moved_run / loop.CONFIG_FILE).write_text(json.dumps({**saved, "data_dir": str(tmp_path / "gone")}))
  src = tmp_path / "abc"
  src.mkdir()
  (src / "tunes.abc").write_text("\n".join(t.replace("G", "^G") for t in synthetic_tunes(100)))
  other = tmp_path / "other_corpus"
  corpus.build_corpus(other, source="abc_dir", input_dir=src, progress=False)  # one more char
  cases = [
      ((f"--workdir={tmp_path / 'nowhere'}",), f"--workdir={tmp_path / 'nowhere'}: no trained run"),
      ((f"--workdir={empty_run}",), "--checkpoint=best: "),
      ((f"--workdir={moved_run}",), "pass --data_dir"),
      ((f"--workdir={run}", f"--baseline={tmp_path / 'nope.json'}"), "--baseline="),
      ((f"--workdir={run}", f"--train_text={tmp_path / 'nope.txt'}"), "--train_text="),
      ((f"--workdir={run}", f"--data_dir={tmp_path}"), f"--data_dir={tmp_path}: "),
      ((f"--workdir={run}", f"--data_dir={other}"), "whose vocabulary"),
  ]
  for args, says in cases:
    proc = sample_eval(*args, f"--out_dir={tmp_path / 'out'}", "--num_uncond=1", "--num_cond=0")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and len(errors) == 1 and says in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
  assert str(other) in errors[0] and str(data_dir) in errors[0]  # the vocabulary error names both


def always_emits(token: int, vocab_size: int):
  """A one-layer LSTM that predicts `token` whatever it reads: with a zero final-norm scale its
  output is the norm's bias, which only `token`'s (tied) embedding row matches."""
  model = build_model(get_config("lstm", "custom", vocab_size=vocab_size, n_layer=1, d_model=8,
                                 block_size=16))
  params = jax.tree.map(jnp.zeros_like, model.init(jax.random.PRNGKey(0)))
  params["ln_f"]["bias"] = params["ln_f"]["bias"].at[0].set(1.0)
  params["wte"] = params["wte"].at[token, 0].set(1.0)
  return model, params


def test_a_sample_whose_end_token_is_its_last_allowed_token_has_ended(tmp_path):
  vocab = Vocab.build(["X:1\nK:C\nC|\n"])
  cfg = SamplingConfig(num_uncond=1, num_cond=0, temperature=0.0, max_new_tokens=1)
  for token, stopped, tokens in [(vocab.eot_id, True, 0), (int(vocab.encode("C")[0]), False, 1)]:
    model, params = always_emits(token, len(vocab))
    trained = SimpleNamespace(model=model, params=params, vocab=vocab, step=0)
    (entry,) = write_samples(trained, tmp_path, [], cfg)
    assert (entry["stopped"], entry["tokens"]) == (stopped, tokens)


def test_write_samples_removes_the_samples_of_an_earlier_call_only(tmp_path):
  vocab = Vocab.build(["X:1\nK:C\nC|\n"])
  model, params = always_emits(int(vocab.encode("C")[0]), len(vocab))
  trained = SimpleNamespace(model=model, params=params, vocab=vocab, step=0)
  for name in ("uncond_000.abc", "uncond_004.abc", "cond_012.abc", "uncond_x.abc", "mine.abc"):
    (tmp_path / name).write_text("old\n")
  write_samples(trained, tmp_path, [], SamplingConfig(num_uncond=1, num_cond=0, max_new_tokens=3))
  assert sorted(p.name for p in tmp_path.glob("*.abc")) == ["mine.abc", "uncond_000.abc",
                                                             "uncond_x.abc"]
  assert (tmp_path / "uncond_000.abc").read_text() == "CCC\n"


@pytest.mark.parametrize("field, value", [
    ("num_uncond", -1), ("num_cond", -1), ("temperature", -1.0), ("top_k", -5), ("top_p", 0.0),
    ("top_p", 1.5), ("seed", -1), ("max_new_tokens", 0), ("prompt_bars", -1)])
def test_sampling_config_refuses_out_of_range_fields(field, value):
  with pytest.raises(ValueError, match=f"{field} must be"):
    SamplingConfig(**{field: value})


def test_sampling_config_asks_for_at_least_one_sample():
  assert SamplingConfig(num_uncond=0, num_cond=1).num_cond == 1
  with pytest.raises(ValueError, match="at least one sample"):
    SamplingConfig(num_uncond=0, num_cond=0)
