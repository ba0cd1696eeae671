r"""Part 4: train the best size for several epochs, keeping the best and final checkpoints.

  python -m experiments.best_model                      # xl, the study's 5 epochs of 200M tokens on a GPU
  python -m experiments.best_model --preset=cpu         # the laptop recipe (at most 30 min on 2 cores)

Resumes when started again with the same --workdir. Then: python -m experiments.sample_eval
"""

import json

from absl import app, flags

from abcjax.models import size_names
from abcjax.train import loop
from abcjax.train.presets import preset_config
from experiments import common

ARCH = flags.DEFINE_enum("arch", "gpt", ["gpt", "lstm"], "Model family.")
SIZE = flags.DEFINE_string("size", "xl", "Size to train (the study's best: xl).")
EPOCHS = flags.DEFINE_float("epochs", None, "Epochs of the token budget (overrides the preset).")
WORKDIR = flags.DEFINE_string("workdir", "runs/best_model", "Work folder: checkpoints, metrics, results.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.start_distributed()
  table = common.TABLE.value
  if SIZE.value not in size_names(ARCH.value, table):
    raise app.UsageError(f"--size: {ARCH.value} table {table} has {size_names(ARCH.value, table)}, "
                         f"not {SIZE.value!r}")
  cfg = preset_config(common.preset(), ARCH.value, SIZE.value, best_model=True, table=table)
  cfg = common.finish_config(cfg)
  if EPOCHS.value is not None:
    cfg = cfg.replace(epochs=EPOCHS.value)
  results = loop.train(cfg, WORKDIR.value)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
