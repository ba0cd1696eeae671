"""A compute-optimal study: a grid of model sizes x token budgets, the fit of
L(N, D) = E + A·N^-α + B·D^-β, and the compute-optimal size for a FLOP budget.

Each (size, budget) point is one run with the preset's recipe at that budget; a finished run with
exactly that config elsewhere (the scaling sweep's run of the same size at the full budget) is
read instead of trained again.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from typing import Any, Callable, Sequence

import jax
import numpy as np

from abcjax.scaling import fit as fit_lib, report, sweep
from abcjax.train import loop
from abcjax.train.config import Config, override

GRID_COLUMNS = ("size", "params", "tokens", "flops_per_token", "best_val_loss", "run")
OUTPUT_NAMES = ("{a}_grid.csv", "{a}_joint_fit.png", "{a}_joint_fit.txt", "{a}_joint_fit.json")


def run_dir(workdir: str | pathlib.Path, arch: str, size: str, tokens: int) -> pathlib.Path:
  return pathlib.Path(workdir) / arch / size / f"tokens{tokens}"


def run_grid(arch: str, sizes: Sequence[str], budgets: Sequence[int],
             config_for: Callable[[str], Config], workdir: str | pathlib.Path, *,
             reuse_from: Sequence[str | pathlib.Path] = (),
             after_step: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
  """Trains (or reads) every size at every token budget; rows of size, N, D, FLOPs/token, loss.

  reuse_from: scaling-sweep folders whose finished run of a size (with the config's seed) is
  read in place of a grid point when its config is the grid point's (same recipe, same budget,
  same corpus).
  """
  rows = []
  for size in sizes:
    for tokens in budgets:
      cfg = override(config_for(size), {"data.tokens": int(tokens)})
      seed = cfg.run.seed
      path = next((sweep.run_dir(d, arch, size, seed) for d in reuse_from
                   if sweep.finished_row(arch, size, sweep.run_dir(d, arch, size, seed), cfg,
                                         quiet=True)), None)
      if path is not None:
        print(f"[{arch} {size} {tokens:,} tokens] read from {path}", flush=True)
      else:
        path = run_dir(workdir, arch, size, tokens)
        print(f"[{arch} {size} {tokens:,} tokens] training in {path}", flush=True)
        loop.train(cfg, path, after_step=after_step)
      results = json.loads((path / loop.RESULTS_FILE).read_text())
      record = json.loads((path / loop.CONFIG_FILE).read_text())
      rows.append({"size": size, "params": results["params"], "tokens": results["tokens"],
                   "flops_per_token": record["flops_per_token"],
                   "best_val_loss": results["best_val_loss"], "run": str(path)})
  return rows


def _write_grid_csv(rows: list[dict[str, Any]], path: pathlib.Path) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=GRID_COLUMNS)
    writer.writeheader()
    writer.writerows({k: r[k] for k in GRID_COLUMNS} for r in rows)


def write_outputs(arch: str, rows: list[dict[str, Any]], workdir: str | pathlib.Path, *,
                  title: str, flops: Sequence[float] | None = None,
                  bootstrap: int = 300) -> tuple[fit_lib.JointScalingLaw, dict[str, pathlib.Path]]:
  """The grid CSV, the joint fit (plot, summary text, JSON with the compute-optimal allocations)."""
  out = pathlib.Path(workdir) / arch
  paths = dict(zip(("csv", "plot", "summary", "json"), (out / n.format(a=arch) for n in OUTPUT_NAMES)))
  if jax.process_index() == 0:
    out.mkdir(parents=True, exist_ok=True)
    _write_grid_csv(rows, paths["csv"])
  n, d, loss = (np.array([float(r[k]) for r in rows]) for k in ("params", "tokens", "best_val_loss"))
  # Each model's own FLOPs per token (attention and the output head are far from 6N at these
  # widths), as a function of N for the allocation between the sizes measured.
  per_token = fit_lib.flops_per_token_of_sizes(n, [float(r["flops_per_token"]) for r in rows])
  joint = fit_lib.fit_joint_scaling_law(n, d, loss, bootstrap=bootstrap)
  budgets = flops if flops is not None else fit_lib.default_budgets(
      fit_lib.point_flops(joint, per_token))
  optimal = fit_lib.compute_optimal(joint, budgets, flops_per_token=per_token)
  text = f"{title}\n\n" + report.joint_fit_summary(joint, flops=budgets, flops_per_token=per_token)
  if jax.process_index() != 0:
    return joint, paths
  report.plot_joint_fit(joint, paths["plot"], title, flops_per_token=per_token)
  paths["summary"].write_text(text)
  fitted = {k: v for k, v in dataclasses.asdict(joint).items() if k != "samples"}
  paths["json"].write_text(json.dumps({
      "arch": arch, "title": title, "fit": fitted,
      "compute_optimal": [dataclasses.asdict(o) for o in optimal],
  }, indent=2, default=float) + "\n")
  print(text, flush=True)
  return joint, paths
