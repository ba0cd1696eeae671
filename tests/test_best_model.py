import json

from abcjax import cpu_tuning
from tests.tiny_corpus import build_tiny_corpus, run_experiment


def best_model(workdir, data_dir, *extra):
  return run_experiment(
      "best_model", "--preset=cpu", f"--workdir={workdir}", f"--data_dir={data_dir}", "--tokens=8192",
      "--batch_size=8", "--set=block_size=32", "--set=eval_every=8", "--set=checkpoint_every=8",
      "--set=progress=false", *extra)


def test_best_model_trains_epochs_keeps_best_and_final_and_resumes(tmp_path):
  data_dir = build_tiny_corpus(tmp_path)
  work = tmp_path / "best"
  out = best_model(work, data_dir, "--epochs=2")
  assert "best model: lstm large (table A, preset cpu)" in out
  results = json.loads((work / "results.json").read_text())
  assert results["finished"] and results["arch"] == "lstm" and results["size"] == "large"
  assert results["tokens"] == 2 * 8192 and results["steps"] == 64
  for kind in ("best", "final", "latest"):
    assert any((work / "checkpoints" / kind).iterdir()), kind
  config = json.loads((work / "config.json").read_text())
  assert config["train"]["epochs"] == 2.0 and config["size_table"] == "A"
  # The entry point turns the CPU tuning on: backward passes on one CPU device, paced steps.
  assert config["train"]["cpu_backward"] == config["model"]["cpu_backward"]
  assert config["model"]["cpu_backward"] == cpu_tuning.cpu_backward()
  assert config["paced_steps"] or not cpu_tuning.applies()
  again = best_model(work, data_dir, "--epochs=2")
  assert json.loads(again[again.index("{"):]) == results
