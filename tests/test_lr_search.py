"""The learning-rate search as a user runs it: a size x rate table, runs kept for a rerun."""

from tests.tiny_corpus import build_tiny_corpus, run_experiment


def test_search_writes_the_table_and_reuses_its_runs(tmp_path):
  data_dir = build_tiny_corpus(tmp_path)
  work = tmp_path / "search"
  flags = ("--arch=gpt", "--sizes=tiny", "--preset=cpu", f"--workdir={work}",
           f"--data_dir={data_dir}", "--budget_fraction=0.002", "--config.data.batch_size=8",
           "--config.run.progress=false")
  out = run_experiment("lr_search", *flags, "--lr_factors=0.5,2")
  table = (work / "gpt" / "lr_search.md").read_text()
  assert table in out and "| tiny |" in table and table.count("**") == 2  # one best, in bold
  rates = sorted(p.name for p in (work / "gpt").iterdir() if p.is_dir())
  assert rates == ["tiny-lr0.008", "tiny-lr0.032"]  # the cpu preset's 0.016 halved and doubled
  rows = (work / "gpt" / "lr_search.csv").read_text().splitlines()
  assert rows[0] == "size,params,lr,factor,tokens,best_val_loss" and len(rows) == 3
  again = run_experiment("lr_search", *flags, "--lr_factors=0.5,1,2")
  assert again.count("training in") == 1  # only the new rate trains
  assert "lr x1" in (work / "gpt" / "lr_search.md").read_text()
