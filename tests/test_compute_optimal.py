"""The compute-optimal study end to end: a grid of sizes x budgets, a sweep's run reused, the fit."""

import json

from tests.tiny_corpus import build_tiny_corpus, run_experiment

COMMON = ("--preset=cpu", "--config.data.batch_size=8", "--config.run.progress=false")


def test_grid_fit_and_reuse_of_a_sweep_run(tmp_path):
  data_dir = build_tiny_corpus(tmp_path)
  sweep, grid = tmp_path / "sweep", tmp_path / "grid"
  # The cpu preset's budget is 4M tokens; 0.0005, 0.001 and 0.002 of it are 2,000 to 8,000.
  run_experiment("scaling", "--arch=gpt", "--sizes=tiny", f"--workdir={sweep}",
                 f"--data_dir={data_dir}", "--config.data.tokens=8000", *COMMON)
  out = run_experiment("compute_optimal", "--arch=gpt", "--sizes=tiny,small",
                       "--budgets=0.0005,0.001,0.002", f"--workdir={grid}", f"--sweep_workdir={sweep}",
                       f"--data_dir={data_dir}", "--bootstrap=10", *COMMON)
  assert f"[gpt tiny 8,000 tokens] read from {sweep / 'gpt' / 'tiny'}" in out
  assert out.count("training in") == 5 and not (grid / "gpt" / "tiny" / "tokens8000").exists()
  assert "L(N, D) = E + A*N^-alpha + B*D^-beta" in out and "compute-optimal allocation" in out
  for name in ("gpt_grid.csv", "gpt_joint_fit.png", "gpt_joint_fit.txt", "gpt_joint_fit.json"):
    assert (grid / "gpt" / name).stat().st_size > 0
  record = json.loads((grid / "gpt" / "gpt_joint_fit.json").read_text())
  assert record["fit"]["n_points"] == 6 and record["compute_optimal"]
  assert all(o["n_opt"] > 0 and o["d_opt"] > 0 for o in record["compute_optimal"])
  rows = (grid / "gpt" / "gpt_grid.csv").read_text().splitlines()[1:]
  assert sorted({int(r.split(",")[2]) for r in rows}) == [1536, 3584, 7680]  # whole steps of 512
