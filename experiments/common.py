"""Flags shared by the training entry points (scaling, best_model), and how they make a config."""

from absl import flags

from abcjax import cpu_tuning
from abcjax.train import distributed
from abcjax.train.config import TrainConfig, apply_overrides

PRESET = flags.DEFINE_enum("preset", "auto", ["auto", "paper", "cpu"],
                           "paper: the study's recipe (100M tokens, batch 64, block 256; for GPUs). "
                           "cpu: the same family shapes with widths and budget scaled to run on a laptop. "
                           "auto: paper when JAX sees a GPU or TPU, else cpu.")
TABLE = flags.DEFINE_enum("table", "A", ["A", "B"], "Size table: A (first write-up, exact) or B (second).")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Prepared corpus folder (python -m experiments.prepare_data). "
                               "Default: the embedded music21 corpus, built once into the cache folder.")
DTYPE = flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"],
                          "Compute dtype. auto: bfloat16 for the GPT on GPU, else float32 (as the study).")
TOKENS = flags.DEFINE_integer("tokens", None, "Token budget per epoch (overrides the preset).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global batch size (overrides the preset).")
LR = flags.DEFINE_float("lr", None, "Peak learning rate (overrides the preset).")
SEED = flags.DEFINE_integer("seed", None, "Seed of initialisation and data order.")
SET = flags.DEFINE_multi_string("set", [], "Any TrainConfig field, as FIELD=VALUE; repeatable.")
DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                "jax.distributed: auto starts it under SLURM/Open MPI or with --coordinator.")
COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 for jax.distributed.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Process count for jax.distributed.")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index for jax.distributed.")


def preset() -> str:
  """The preset flag, with auto resolved by the devices JAX sees."""
  import jax
  if PRESET.value != "auto":
    return PRESET.value
  chosen = "paper" if jax.default_backend() in ("gpu", "tpu") else "cpu"
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


def finish_config(cfg: TrainConfig, owned: dict[str, str] | None = None) -> TrainConfig:
  """Applies the shared flags, and the CPU tuning's backward passes, on top of a preset's config.

  owned: TrainConfig fields that the entry point sets itself, each with the flag that does
  (`--set size=xl` in a sweep of --sizes would train xl under another size's name).
  """
  import jax
  for item in SET.value:
    name = item.partition("=")[0].strip()
    if owned and name in owned:
      raise ValueError(f"--set {item!r}: {name} is set by {owned[name]} here")
  changes = {}
  if DATA_DIR.value is not None:
    changes["data_dir"] = DATA_DIR.value
  dtype = DTYPE.value
  if dtype == "auto":
    dtype = "bfloat16" if cfg.arch == "gpt" and jax.default_backend() == "gpu" else "float32"
  changes["dtype"] = dtype
  changes["cpu_backward"] = cpu_tuning.cpu_backward()  # --set cpu_backward=false turns it off
  for name, flag in (("tokens", TOKENS), ("batch_size", BATCH_SIZE), ("lr", LR), ("seed", SEED)):
    if flag.value is not None:
      changes[name] = flag.value
  return apply_overrides(cfg.replace(**changes), SET.value)
