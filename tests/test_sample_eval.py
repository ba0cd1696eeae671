import csv
import json
import pathlib
import subprocess
import sys

import pytest

from abcjax.evaluation import evaluate
from abcjax.evaluation.sampling import conditional_prompt, valid_prompt_tunes
from abcjax.train import loop
from abcjax.train.config import TrainConfig
from tests.tiny_corpus import build_tiny_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_conditional_prompt_is_header_and_opening_bars():
  tune = "X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|\nGABc|\n"
  assert conditional_prompt(tune, 2) == "X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|"
  assert conditional_prompt(tune, 0) == "X:1\nT:A\nM:4/4\nL:1/8\nK:G\n"
  with pytest.raises(ValueError, match="K:"):
    conditional_prompt("X:1\nT:A\n", 2)


def test_prompt_pool_leaves_out_tunes_the_checker_rejects():
  good = "X:1\nT:A\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|\n"
  no_q = "X:2\nT:B\nM:6/8\nL:1/8\n3/8=120\nK:D\nfed cBA|\n"  # a tempo line missing its Q:
  usable, skipped = valid_prompt_tunes([good, no_q, good])
  assert usable == [good, good]
  assert skipped == {"bad_header_field": 1}


def test_sample_eval_on_a_tiny_trained_checkpoint(tmp_path):
  data_dir = build_tiny_corpus(tmp_path)
  cfg = TrainConfig(arch="gpt", size="tiny", data_dir=str(data_dir), block_size=64, batch_size=8,
                    tokens=40 * 8 * 64, lr=3e-3, width_scale=1 / 6, eval_every=20, eval_batch_size=8,
                    log_every=10, checkpoint_every=20, progress=False)
  loop.train(cfg, tmp_path / "run")
  out = tmp_path / "eval"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.sample_eval", f"--workdir={tmp_path / 'run'}",
       f"--out_dir={out}", "--num_uncond=3", "--num_cond=3", "--max_new_tokens=200",
       "--reference_tunes=20", "--workers=2"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = sorted(p.name for p in (out / "samples").glob("*.abc"))
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
