import csv
import json

import pytest

from abcjax.scaling import compare, sweep
from abcjax.train import presets
from abcjax.train.config import from_record, override
from tests.tiny_corpus import build_tiny_corpus, run_experiment

OUTPUTS = ("{a}_results.csv", "{a}_training_curves.png", "{a}_loss_vs_params.png", "{a}_summary.txt",
           "{a}_fit.json")


def scaling(workdir, data_dir, arch, sizes, *extra):
  return run_experiment(
      "scaling", f"--arch={arch}", f"--sizes={sizes}", "--preset=cpu", f"--workdir={workdir}",
      f"--data_dir={data_dir}", "--config.data.tokens=8192", "--config.data.batch_size=8",
      "--config.eval.every=16", "--config.run.log_every=4", "--config.run.progress=false", *extra)


def test_scaling_end_to_end_writes_outputs_skips_finished_and_compares(tmp_path):
  data_dir = build_tiny_corpus(tmp_path)
  work = tmp_path / "sweep"
  out = scaling(work, data_dir, "gpt", "tiny,small")
  assert "[gpt tiny] training" in out and "preset=cpu" in out
  for pattern in OUTPUTS:
    assert (work / "gpt" / pattern.format(a="gpt")).stat().st_size > 0
  with open(work / "gpt" / "gpt_results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["size"] for r in rows] == ["tiny", "small"]
  assert float(rows[0]["params"]) < float(rows[1]["params"])
  for row in rows:
    assert float(row["tokens"]) == 8192 and 0 < float(row["best_val_loss"]) < 5
  summary = (work / "gpt" / "gpt_summary.txt").read_text()
  assert "size_table=A" in summary and "L = " in summary

  again = scaling(work, data_dir, "gpt", "small")
  assert "[gpt small] finished before" in again and "[gpt tiny]" not in again
  with open(work / "gpt" / "gpt_results.csv") as f:  # a rerun of one size keeps the others
    assert [r["size"] for r in csv.DictReader(f)] == ["tiny", "small"]
  # ... but only those of the same recipe and corpus.
  saved = {s: from_record(json.loads((work / "gpt" / s / "config.json").read_text()))
           for s in ("tiny", "small")}
  rows = sweep.finished_rows("gpt", ["tiny", "small", "xl"], saved.get, work)
  assert [r["size"] for r in rows] == ["tiny", "small"]
  other = build_tiny_corpus(tmp_path / "other", count=60, seed=3)
  assert sweep.finished_rows("gpt", ["tiny"], lambda s: override(saved[s], {"data.data_dir": str(other)}), work) == []
  assert sweep.finished_rows("gpt", ["tiny"], lambda s: override(saved[s], {"opt.lr": 1.0}), work) == []

  out = scaling(work, data_dir, "lstm", "tiny,small", "--seeds=0,1")
  assert "[lstm small seed 1] training" in out and (work / "lstm" / "small-seed1").is_dir()
  with open(work / "lstm" / "lstm_results.csv") as f:  # every seed of every size, one row each
    assert [(r["size"], r["seed"]) for r in csv.DictReader(f)] == [
        ("tiny", "0"), ("tiny", "1"), ("small", "0"), ("small", "1")]
  fit = json.loads((work / "lstm" / "lstm_fit.json").read_text())
  assert fit["seeds"] == [0, 1] and [s["seeds"] for s in fit["power_law"]["sizes"]] == [2, 2]
  assert "2 sizes x 2 seeds" in (work / "lstm" / "lstm_summary.txt").read_text()
  for name in ("compare_summary.txt", "compare_val_loss_vs_params.png",
               "compare_wall_time_vs_params.png", "compare_memory_vs_params.png"):
    assert (work / "compare" / name).stat().st_size > 0
  table = (work / "compare" / "compare_summary.txt").read_text()
  assert table.count("\ngpt") == 1 and table.count("\nlstm") == 1
  assert "not trained alike" not in table
  # The same families on another corpus are flagged as not like for like.
  fit = json.loads((work / "lstm" / "lstm_fit.json").read_text())
  assert fit["corpus"] == str(data_dir.resolve()) and fit["tokens"] == [8192]
  fit["corpus"] = str(other)
  (work / "lstm" / "lstm_fit.json").write_text(json.dumps(fit))
  compare.compare(work)
  table = (work / "compare" / "compare_summary.txt").read_text()
  assert "not trained alike" in table and f"corpus: gpt {data_dir.resolve()}, lstm {other}" in table


def test_a_stopped_size_stops_the_sweep(tmp_path, monkeypatch):
  import signal
  from abcjax.train import loop
  data_dir = build_tiny_corpus(tmp_path, count=120)
  def config_for(size):
    cfg = presets.make("cpu", "gpt", size, backend="cpu")
    cfg = cfg.replace(model=cfg.model.replace(block_size=32))
    return override(cfg, {"data.data_dir": str(data_dir), "data.batch_size": 8,
                          "data.tokens": 8 * 8 * 32, "eval.every": 4, "run.log_every": 1,
                          "run.checkpoint_every": 4, "run.progress": False})

  made = loop.step_lib.make_train_step

  def make_stopping_step(*args, **kwargs):
    step, calls = made(*args, **kwargs), []

    def stopping_step(state, batch):
      calls.append(1)
      if len(calls) == 2:
        signal.raise_signal(signal.SIGTERM)
      return step(state, batch)
    return stopping_step

  monkeypatch.setattr(loop.step_lib, "make_train_step", make_stopping_step)
  work = tmp_path / "sweep"
  with pytest.raises(loop.RunStopped, match="SIGTERM stopped .*tiny at step 2 of 8"):
    sweep.run_sweep("gpt", ["tiny", "small"], config_for, work)
  assert not (work / "gpt" / "small").exists()  # the next size never started
  assert not (work / "gpt" / "gpt_results.csv").exists()
