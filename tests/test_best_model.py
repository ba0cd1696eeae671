import json

from abcjax import cpu_tuning
from abcjax.train import loop
from tests.tiny_corpus import build_tiny_corpus, run_experiment


def best_model(workdir, data_dir, *extra):
  return run_experiment(
      "best_model", "--preset=cpu", f"--workdir={workdir}", f"--data_dir={data_dir}",
      "--config.data.tokens=8192", "--config.data.batch_size=8", "--config.model.block_size=32",
      "--config.eval.every=16", "--config.run.checkpoint_every=32", "--config.run.progress=false",
      *extra)


def test_best_model_trains_epochs_keeps_best_and_final_and_resumes(tmp_path):
  data_dir = build_tiny_corpus(tmp_path)
  work = tmp_path / "best"
  out = best_model(work, data_dir, "--config.data.epochs=2")
  assert "best model: lstm large (table A, preset cpu)" in out
  results = json.loads((work / "results.json").read_text())
  assert results["finished"] and results["arch"] == "lstm" and results["size"] == "large"
  assert results["tokens"] == 2 * 8192 and results["steps"] == 64
  assert loop.load_trained(work, "best").step == results["best_step"]
  assert loop.load_trained(work, "final").step == 64
  config = json.loads((work / "config.json").read_text())
  assert config["config"]["data"]["epochs"] == 2.0 and config["size_table"] == "A"
  assert config["config"]["run"]["preset"] == "cpu"
  # The entry point turns the CPU tuning on: backward passes on one CPU device, paced steps.
  assert config["config"]["model"]["cpu_backward"] == cpu_tuning.cpu_backward()
  assert config["paced_steps"] or not cpu_tuning.applies()
  again = best_model(work, data_dir, "--config.data.epochs=2")
  assert json.loads(again[again.index("{"):]) == results
