r"""Parts 2 and 3: train every size of a family on the same token budget, fit L = a·N^-α.

  python -m experiments.scaling --arch=gpt --sizes=tiny,small,medium,large,xl
  python -m experiments.scaling --arch=lstm --sizes=tiny,small,medium,large
  python -m experiments.scaling --arch=gpt --preset=cpu   # the laptop sweep (~7 min on 2 cores);
                                                         # --preset=auto (default) picks it without a GPU

Outputs go to <workdir>/<arch>/: results CSV, training curves, loss-vs-params fit, summary. With
--compare, the Transformer-vs-LSTM comparison is written too once both families have results.
"""

# First, before jax loads: CPU tuning is on here; restart once with its allocator settings.
from abcjax import cpu_tuning

cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)

from absl import app, flags

from abcjax.scaling import compare, sweep
from experiments import cli, common

ARCH = flags.DEFINE_string("arch", "gpt", "Model family: gpt, lstm or gru (any registered family).")
SIZES = flags.DEFINE_list("sizes", None, "Comma-separated sizes (default: every size of the family).")
SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds to train each size with (initialisation and data "
                         "order); with several, each size enters the fit as its mean and spread.")
WORKDIR = flags.DEFINE_string("workdir", "runs/scaling", "Folder of the sweep; one subfolder per arch/size.")
COMPARE = flags.DEFINE_bool("compare", True, "Also write the family comparison when two or more have results.")

# Fields a sweep sets per size; a shape given to every size would give them all one model.
_OWNED = {"run.seed": "--seeds", **common.SIZE_OWNED}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.check_arch(ARCH.value)
  common.start_distributed()
  arch = ARCH.value
  sizes = common.sizes_of(arch, SIZES.value)
  try:
    seeds = sorted({int(s) for s in SEEDS.value})
  except ValueError:
    raise app.UsageError(f"--seeds: expected integers like 0,1,2; got {SEEDS.value}") from None
  if not seeds or seeds[0] < 0:
    raise app.UsageError(f"--seeds: expected integers of 0 or more; got {SEEDS.value}")
  preset = common.preset()

  def config_for(size):
    return common.make_config(preset, arch, size, owned=_OWNED)

  sweep.run_sweep(arch, sizes, config_for, WORKDIR.value, seeds=seeds,
                  after_step=cpu_tuning.pacing())
  if COMPARE.value:
    compare.maybe_compare(WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
