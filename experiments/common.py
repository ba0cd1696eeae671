"""Flags shared by the training entry points (scaling, best_model), and how they make a config."""

from absl import flags

from abcjax import cpu_tuning
from abcjax.train import config_flags, distributed, presets
from abcjax.train.config import Config

PRESET = flags.DEFINE_enum("preset", "auto", ["auto", *presets.PRESETS],
                           "paper: the study's recipe (100M tokens, batch 64, block 256; for GPUs). "
                           "cpu: the same family shapes with widths and budget scaled to run on a laptop. "
                           "auto: paper when JAX sees a GPU or TPU, else cpu.")
TABLE = flags.DEFINE_enum("table", "A", ["A", "B"], "Size table: A (first write-up, exact) or B (second).")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Prepared corpus folder (python -m experiments.prepare_data). "
                               "Default: the embedded music21 corpus, built once into the cache folder. "
                               "The same as --config.data.data_dir.")
DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                "jax.distributed: auto starts it under SLURM/Open MPI or with --coordinator.")
COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 for jax.distributed.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Process count for jax.distributed.")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index for jax.distributed.")
config_flags.define()


def preset() -> str:
  """The preset flag, with auto resolved by the devices JAX sees."""
  import jax
  chosen = presets.resolve(PRESET.value)
  if PRESET.value == "auto":
    print("--preset=auto: no accelerator found, using the cpu preset" if chosen == "cpu"
          else f"--preset=auto: {jax.default_backend()} found, using the paper preset", flush=True)
  return chosen


def quiet_library_logs() -> None:
  """Keeps orbax's and JAX's INFO chatter off the console unless --verbosity was given."""
  from absl import logging
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def start_distributed() -> None:
  quiet_library_logs()
  distributed.initialize(DISTRIBUTED.value, COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value)


def make_config(preset_name: str, arch: str, size: str, *, best_model: bool = False,
                owned: dict[str, str] | None = None) -> Config:
  """The preset's config of one size, with the CPU tuning's backward passes where it applies,
  then --data_dir and the --config.* flags (--config.model.cpu_backward=false turns them off).

  owned: config paths that the entry point sets itself, each with the flag that does
  (`--config.model.size=xl` in a sweep of --sizes would train xl under another size's name).
  """
  given = config_flags.overrides()
  if DATA_DIR.value is not None:
    if "data.data_dir" in given:
      raise ValueError("--data_dir and --config.data.data_dir both given; pass one")
    given["data.data_dir"] = DATA_DIR.value
  cfg = presets.make(preset_name, arch, size, table=TABLE.value, best_model=best_model)
  cfg = cfg.replace(model=cfg.model.replace(cpu_backward=cpu_tuning.cpu_backward()))
  return config_flags.apply(cfg, given, owned=owned)
