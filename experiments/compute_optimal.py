r"""Beyond the study: sizes x token budgets, the fit of L(N, D) and the compute-optimal model size.

  python -m experiments.compute_optimal                       # GPT, every size, 1/8..1 of the budget
  python -m experiments.compute_optimal --arch=lstm --budgets=0.25,0.5,1

Every size trains at each fraction of the preset's token budget (--budgets). A finished run of the
scaling sweep with the same config (--sweep_workdir, the full budget) is read instead of trained
again. Fits L(N, D) = E + A·N^-α + B·D^-β with bootstrap CIs, prints it with the compute-optimal
N, D and loss for a range of FLOP budgets (C = FLOPs per token x D, with each model's own
FLOPs per token), and writes the grid, the plot and the fit to <workdir>/<arch>/.
"""

# First, before jax loads: CPU tuning is on here; restart once with its allocator settings.
from abcjax import cpu_tuning

cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)

from absl import app, flags

from abcjax.scaling import compute_optimal
from experiments import cli, common

ARCH = flags.DEFINE_string("arch", "gpt", "Model family: gpt, lstm or gru.")
SIZES = flags.DEFINE_list("sizes", None, "Sizes of the grid (default: every size of the family).")
BUDGETS = flags.DEFINE_list("budgets", ["0.125", "0.25", "0.5", "1"],
                            "Token budgets of the grid, as fractions of the preset's budget.")
FLOPS = flags.DEFINE_list("flops", None, "FLOP budgets to give the compute-optimal allocation of "
                          "(default: each power of ten from the grid's smallest run to 100x its largest).")
WORKDIR = flags.DEFINE_string("workdir", "runs/compute_optimal", "Folder of the grid's runs and outputs.")
SWEEP_WORKDIR = flags.DEFINE_string("sweep_workdir", "runs/scaling",
                                    "A scaling sweep whose finished runs are read where they fit the grid.")
BOOTSTRAP = flags.DEFINE_integer("bootstrap", 300, "Bootstrap resamples behind the fit's CIs.")

_OWNED = {"data.tokens": "--budgets", **common.SIZE_OWNED}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.check_arch(ARCH.value)
  fractions = sorted(set(common.positive_numbers(BUDGETS)))
  flops = common.positive_numbers(FLOPS) if FLOPS.value else None
  if BOOTSTRAP.value < 0:
    raise app.UsageError(f"--bootstrap={BOOTSTRAP.value}: must be 0 or more")
  common.start_distributed()
  arch = ARCH.value
  sizes = common.sizes_of(arch, SIZES.value)
  if len(sizes) < 2 or len(fractions) < 2 or len(sizes) * len(fractions) < 6:
    raise app.UsageError("the fit of L(N, D) has 5 parameters: it needs at least 2 sizes, 2 "
                         f"budgets and 6 runs (got --sizes={sizes}, --budgets={BUDGETS.value})")
  preset = common.preset()

  def config_for(size):
    return common.make_config(preset, arch, size, owned=_OWNED)

  full = config_for(sizes[0]).data.tokens
  budgets = [max(1, int(round(full * f))) for f in fractions]
  rows = compute_optimal.run_grid(arch, sizes, budgets, config_for, WORKDIR.value,
                                  reuse_from=[SWEEP_WORKDIR.value] if SWEEP_WORKDIR.value else [],
                                  after_step=cpu_tuning.pacing())
  title = f"{arch.upper()} on ABC, preset {preset}: {len(sizes)} sizes x {len(budgets)} budgets"
  compute_optimal.write_outputs(arch, rows, WORKDIR.value, title=title, flops=flops,
                                bootstrap=BOOTSTRAP.value)


if __name__ == "__main__":
  cli.run(main)
