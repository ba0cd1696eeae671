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


def check_arch(arch: str | None) -> None:
  """Refuses an --arch that names no registered model family."""
  from absl import app
  from abcjax.models import registry
  if arch is not None and arch not in registry.names():
    raise app.UsageError(f"--arch: unknown family {arch!r}; registered: {list(registry.names())}")


def sizes_of(arch: str, sizes: list[str] | None) -> list[str]:
  """The --sizes asked for (default: every size of the family in --table), checked."""
  from absl import app
  from abcjax.models import config_class
  valid = config_class(arch).size_names(TABLE.value)
  unknown = [s for s in sizes or [] if s not in valid]
  if unknown:
    raise app.UsageError(f"--sizes: unknown {arch} sizes {unknown}; table {TABLE.value} has {valid}")
  return list(sizes or valid)


def positive_numbers(flag) -> list[float]:
  """A list flag's values as positive numbers, or a usage error naming the flag."""
  from absl import app
  try:
    numbers = [float(v) for v in flag.value]
  except ValueError:
    raise app.UsageError(f"--{flag.name}: expected numbers, got {flag.value}") from None
  if not numbers or min(numbers) <= 0:
    raise app.UsageError(f"--{flag.name}: expected positive numbers, got {flag.value}")
  return numbers


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


# Config paths that a command choosing sizes by name (--sizes) sets itself.
SIZE_OWNED = {"model.n_layer": "--sizes", "model.d_model": "--sizes", "model.n_head": "--sizes"}


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
  cfg = config_flags.apply(cfg, given, owned=owned)
  if preset_name == "paper" and "data.tokens" not in given:
    from abcjax.data import corpus
    train = corpus.load_split(corpus.ensure_corpus(cfg.data.data_dir), "train")
    cfg, note = presets.cap_to_corpus(cfg, len(train))
    if note and note not in _NOTES:
      _NOTES.add(note)
      print(note, flush=True)
  return cfg


_NOTES: set[str] = set()  # printed once per command, not once per size
