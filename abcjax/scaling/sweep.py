"""A scaling sweep: train each size of one family in turn, then write the family's outputs."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable, Sequence

import jax
from absl import logging

from abcjax.data import corpus
from abcjax.models import config_class
from abcjax.scaling import report
from abcjax.train import loop
from abcjax.train.config import Config, config_mismatch, from_record, override
from abcjax.train.metrics import read_metrics


SEED_SUFFIX = "-seed"


def run_dir(workdir: str | pathlib.Path, arch: str, size: str, seed: int = 0) -> pathlib.Path:
  """<workdir>/<arch>/<size> for seed 0, <size>-seed<k> for the others."""
  return pathlib.Path(workdir) / arch / (size if seed == 0 else f"{size}{SEED_SUFFIX}{seed}")


def with_seed(cfg: Config, seed: int) -> Config:
  return override(cfg, {"run.seed": seed})


def run_sweep(arch: str, sizes: Sequence[str], config_for: Callable[[str], Config],
              workdir: str | pathlib.Path, *, seeds: Sequence[int] = (0,),
              after_step: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
  """Trains every size with every seed (finished runs are skipped, partial ones resume); writes
  the outputs.

  The outputs cover every finished run of the family in workdir trained with this sweep's
  recipe, not only the sizes and seeds of this call: rerunning one size (say xl, after a time
  limit) keeps the others in the CSV, the plots and the fit. Returns those rows, smallest size
  first. With several seeds a size enters the fit as its mean and spread over them.
  A run stopped by SIGINT or SIGTERM raises loop.RunStopped: the sweep stops there, and running
  it again resumes that run. after_step: the trainer's hook after each compiled step (loop.train).
  """
  for size in sizes:
    for seed in seeds:
      cfg = with_seed(config_for(size), seed)
      path = run_dir(workdir, arch, size, seed)
      name = f"{arch} {size}" + (f" seed {seed}" if len(seeds) > 1 or seed else "")
      if finished_row(arch, size, path, cfg, quiet=True) is not None:
        logging.info("%s: finished before, skipped", name)
        print(f"[{name}] finished before in {path}: skipped", flush=True)
        continue
      # A folder of another config or corpus is refused here, naming what differs.
      print(f"[{name}] training in {path}", flush=True)
      loop.train(cfg, path, after_step=after_step)
  first = config_for(sizes[0])
  table, preset = first.model.table, first.run.preset
  rows = finished_rows(arch, config_class(arch).size_names(table), config_for, workdir)
  if not rows:
    print(f"[{arch}] no finished size with this recipe in {workdir}: nothing to fit or plot",
          flush=True)
  elif jax.process_index() == 0:
    corpus_dir = corpus.ensure_corpus(first.data.data_dir).resolve()
    write_outputs(arch, rows, workdir, table=table, preset=preset, corpus_dir=corpus_dir)
  return rows


def seed_dirs(workdir: str | pathlib.Path, arch: str, size: str) -> list[tuple[int, pathlib.Path]]:
  """(seed, folder) of every run of one size in workdir, seed 0 first."""
  found = [(0, run_dir(workdir, arch, size))]
  for path in (pathlib.Path(workdir) / arch).glob(f"{size}{SEED_SUFFIX}*"):
    suffix = path.name[len(size) + len(SEED_SUFFIX):]
    if suffix.isdigit() and int(suffix) > 0:
      found.append((int(suffix), path))
  return sorted(found)


def finished_rows(arch: str, sizes: Sequence[str], config_for: Callable[[str], Config],
                  workdir: str | pathlib.Path) -> list[dict[str, Any]]:
  """Result rows of the finished runs (every seed) among `sizes` whose config is the one
  config_for gives with their seed, trained on the same corpus folder."""
  rows = []
  for size in sizes:
    for seed, path in seed_dirs(workdir, arch, size):
      if not (path / loop.RESULTS_FILE).exists():
        continue
      row = finished_row(arch, size, path, with_seed(config_for(size), seed))
      if row is not None:
        rows.append(row)
  return rows


def finished_row(arch: str, size: str, path: pathlib.Path, cfg: Config, *,
                 quiet: bool = False) -> dict[str, Any] | None:
  """The result row of the run in `path` if it finished with config `cfg` on the same corpus
  (None otherwise; unless quiet, a run of another config is named on the console)."""
  if not (path / loop.RESULTS_FILE).exists():
    return None
  saved = json.loads((path / loop.CONFIG_FILE).read_text())
  diff = sorted(config_mismatch(from_record(saved).to_dict(), cfg))
  data_dir = pathlib.Path(corpus.ensure_corpus(cfg.data.data_dir)).resolve()
  if saved.get("data_dir") and pathlib.Path(saved["data_dir"]).resolve() != data_dir:
    diff.append(f"corpus {saved['data_dir']}")
  if diff:
    if not quiet:
      print(f"[{arch} {size}] left out of the outputs: {path} was trained with another config "
            f"({', '.join(diff)} differ)", flush=True)
    return None
  return {**report.result_row(json.loads((path / loop.RESULTS_FILE).read_text())),
          "seed": cfg.run.seed}


def write_outputs(arch: str, rows: list[dict[str, Any]], workdir: str | pathlib.Path, *,
                  table: str, preset: str,
                  corpus_dir: str | pathlib.Path | None = None) -> dict[str, pathlib.Path]:
  """results CSV, training curves, loss-vs-params with the fits, and the summary text.

  The fit's JSON records the recipe (corpus folder, token budgets) so that `compare` can tell
  when the two families were not trained alike.
  """
  out = pathlib.Path(workdir) / arch
  out.mkdir(parents=True, exist_ok=True)
  paths = {
      "csv": out / f"{arch}_results.csv",
      "curves": out / f"{arch}_training_curves.png",
      "fit_plot": out / f"{arch}_loss_vs_params.png",
      "summary": out / f"{arch}_summary.txt",
      "fit_json": out / f"{arch}_fit.json",
  }
  report.write_results_csv(rows, paths["csv"])
  # Training curves of seed 0 (or the lowest seed run) of each size.
  curves = {}
  for r in sorted(rows, key=lambda r: int(r["seed"])):
    curves.setdefault(r["size"], read_metrics(run_dir(workdir, arch, r["size"], int(r["seed"]))))
  title = f"{arch.upper()} on ABC (table {table}, preset {preset})"
  report.plot_training_curves(curves, paths["curves"], title)
  simple, saturating = report.fits(rows)
  report.plot_loss_vs_params(rows, paths["fit_plot"], arch, title)
  text = report.summary_text(arch, table, rows, simple, saturating, preset=preset)
  paths["summary"].write_text(text)
  paths["fit_json"].write_text(json.dumps({
      "arch": arch, "size_table": table, "preset": preset,
      "corpus": str(corpus_dir) if corpus_dir else None,
      "tokens": sorted({int(r["tokens"]) for r in rows}),
      "seeds": sorted({int(r["seed"]) for r in rows}),
      "power_law": dataclasses.asdict(simple) if simple else None,
      "saturating_power_law": dataclasses.asdict(saturating) if saturating else None,
  }, indent=2, default=float) + "\n")
  print(text, flush=True)
  return paths

