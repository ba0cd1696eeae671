r"""Part 4: train the best size for several epochs, keeping the best and final checkpoints.

  python -m experiments.best_model                 # GPU: GPT xl, the study's 5 epochs of 200M tokens
                                                   # no GPU: the cpu preset's best model (11-16 min)
  python -m experiments.best_model --preset=cpu --arch=gpt --size=xl    # the CPU GPT xl (~22 min)

Resumes when started again with the same --workdir. Then: python -m experiments.sample_eval
"""

# First, before jax loads: CPU tuning is on here; restart once with its allocator settings.
from abcjax import cpu_tuning

cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)

import json

from absl import app, flags

from abcjax.models import config_class
from abcjax.train import loop
from abcjax.train.presets import BEST_DEFAULT
from experiments import cli, common

ARCH = flags.DEFINE_string("arch", None, "Model family (default: the preset's best: gpt with the "
                           "paper preset, as the study; lstm with the cpu preset).")
SIZE = flags.DEFINE_string("size", None, "Size to train (default: the preset's best: xl for the paper "
                           "preset, as the study; large, the largest LSTM, for the cpu preset).")
WORKDIR = flags.DEFINE_string("workdir", "runs/best_model", "Work folder: checkpoints, metrics, results.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.check_arch(ARCH.value)
  common.start_distributed()
  table, preset = common.TABLE.value, common.preset()
  default_arch, default_size = BEST_DEFAULT[preset]
  arch = ARCH.value or default_arch
  names = config_class(arch).size_names(table)
  size = SIZE.value or (default_size if arch == default_arch else names[-1])
  if size not in names:
    raise app.UsageError(f"--size: {arch} table {table} has {names}, not {size!r}")
  print(f"best model: {arch} {size} (table {table}, preset {preset})", flush=True)
  cfg = common.make_config(preset, arch, size, best_model=True)
  results = loop.train(cfg, WORKDIR.value, after_step=cpu_tuning.pacing())
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  cli.run(main)
