r"""The learning-rate search behind a preset's per-size rates: every size at a few rates, one table.

  python -m experiments.lr_search --arch=gpt                   # the cpu preset's GPT sizes
  python -m experiments.lr_search --arch=lstm --lr_factors=0.5,1,2 --budget_fraction=0.25

Each size trains at its preset rate times each factor, on a fraction of the preset's token budget
(the same schedule shape, shorter); the table of best validation losses (size x rate) is printed
and written to <workdir>/<arch>/lr_search.md and .csv, with each size's best rate marked. Runs are
kept, so a rerun with more factors trains only the new ones.
"""

# First, before jax loads: CPU tuning is on here; restart once with its allocator settings.
from abcjax import cpu_tuning

cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)

import csv
import pathlib

from absl import app, flags

from abcjax.train import loop
from abcjax.train.config import override
from experiments import cli, common

ARCH = flags.DEFINE_string("arch", "gpt", "Model family: gpt, lstm or gru.")
SIZES = flags.DEFINE_list("sizes", None, "Sizes to search (default: every size of the family).")
LR_FACTORS = flags.DEFINE_list("lr_factors", ["0.5", "1", "2"],
                               "Multiples of each size's preset learning rate to train.")
BUDGET_FRACTION = flags.DEFINE_float("budget_fraction", 0.25,
                                     "Share of the preset's token budget each run trains on.")
WORKDIR = flags.DEFINE_string("workdir", "runs/lr_search", "Folder of the search's runs and tables.")

_OWNED = {"opt.lr": "--lr_factors", "data.tokens": "--budget_fraction", **common.SIZE_OWNED}


def write_table(rows: list[dict], out: pathlib.Path, title: str) -> str:
  """Markdown table (sizes as rows, rates as columns, best per size in bold) and a CSV."""
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "lr_search.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["size", "params", "lr", "factor", "tokens", "best_val_loss"])
    writer.writeheader()
    writer.writerows(rows)
  factors = sorted({r["factor"] for r in rows})
  lines = [title, "", "| size | params | " + " | ".join(f"lr x{f:g}" for f in factors) + " | best lr |",
           "|---|---|" + "---|" * (len(factors) + 1)]
  for size in dict.fromkeys(r["size"] for r in rows):
    mine = {r["factor"]: r for r in rows if r["size"] == size}
    best = min(mine.values(), key=lambda r: r["best_val_loss"])
    cells = [(f"**{mine[f]['best_val_loss']:.4f}**" if mine[f] is best
              else f"{mine[f]['best_val_loss']:.4f}") + f" ({mine[f]['lr']:.2g})"
             if f in mine else "-" for f in factors]
    lines.append(f"| {size} | {best['params']:,} | " + " | ".join(cells) + f" | {best['lr']:.2g} |")
  text = "\n".join(lines) + "\n"
  (out / "lr_search.md").write_text(text)
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.check_arch(ARCH.value)
  factors = common.positive_numbers(LR_FACTORS)
  if not 0 < BUDGET_FRACTION.value <= 1:
    raise app.UsageError(f"--budget_fraction={BUDGET_FRACTION.value}: must be in (0, 1]")
  common.start_distributed()
  arch = ARCH.value
  sizes = common.sizes_of(arch, SIZES.value)
  preset = common.preset()
  rows = []
  for size in sizes:
    base = common.make_config(preset, arch, size, owned=_OWNED)
    tokens = max(1, int(base.data.tokens * BUDGET_FRACTION.value))
    for factor in factors:
      lr = base.opt.lr * factor
      cfg = override(base, {"opt.lr": lr, "data.tokens": tokens})
      path = pathlib.Path(WORKDIR.value) / arch / f"{size}-lr{lr:.3g}"
      done = (path / loop.RESULTS_FILE).exists()
      print(f"[{arch} {size} lr {lr:.3g}] {'finished before in' if done else 'training in'} {path}",
            flush=True)
      results = loop.train(cfg, path, after_step=cpu_tuning.pacing())
      rows.append({"size": size, "params": results["params"], "lr": lr, "factor": factor,
                   "tokens": results["tokens"], "best_val_loss": results["best_val_loss"]})
  title = (f"Learning-rate search: {arch}, preset {preset}, {tokens_text(rows)} per run "
           f"({BUDGET_FRACTION.value:g} of the preset budget); best validation loss (nats/char)")
  print(write_table(rows, pathlib.Path(WORKDIR.value) / arch, title), flush=True)


def tokens_text(rows: list[dict]) -> str:
  budgets = sorted({r["tokens"] for r in rows})
  return ", ".join(f"{t:,}" for t in budgets) + " tokens"


if __name__ == "__main__":
  cli.run(main)
