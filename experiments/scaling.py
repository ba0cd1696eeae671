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

from abcjax.models import config_class, registry
from abcjax.scaling import compare, sweep
from experiments import cli, common

ARCH = flags.DEFINE_string("arch", "gpt", "Model family: gpt, lstm or gru (any registered family).")
SIZES = flags.DEFINE_list("sizes", None, "Comma-separated sizes (default: every size of the family).")
WORKDIR = flags.DEFINE_string("workdir", "runs/scaling", "Folder of the sweep; one subfolder per arch/size.")
COMPARE = flags.DEFINE_bool("compare", True, "Also write the family comparison when two or more have results.")

# Fields a sweep sets per size; a shape given to every size would give them all one model.
_OWNED = {"model.size": "--sizes", "model.table": "--table", "model.n_layer": "--sizes",
          "model.d_model": "--sizes", "model.n_head": "--sizes"}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if ARCH.value not in registry.names():
    raise app.UsageError(f"--arch: unknown family {ARCH.value!r}; registered: {list(registry.names())}")
  common.start_distributed()
  arch, table = ARCH.value, common.TABLE.value
  valid = config_class(arch).size_names(table)
  sizes = SIZES.value or valid
  unknown = [s for s in sizes if s not in valid]
  if unknown:
    raise app.UsageError(f"--sizes: unknown {arch} sizes {unknown}; table {table} has {valid}")
  preset = common.preset()

  def config_for(size):
    return common.make_config(preset, arch, size, owned=_OWNED)

  sweep.run_sweep(arch, sizes, config_for, WORKDIR.value, after_step=cpu_tuning.pacing())
  if COMPARE.value:
    compare.maybe_compare(WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
