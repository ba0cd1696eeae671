"""CPU tuning, opt-in: allocator settings, step pacing and the hand-written backward passes.

The library runs plain JAX by default. The experiment entry points turn these on for themselves;
code that imports abcjax opts in the same way:

  from abcjax import cpu_tuning
  cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)  # at the top, before jax is imported
  cfg = cfg.replace(model=cfg.model.replace(cpu_backward=cpu_tuning.cpu_backward()))
  loop.train(cfg, workdir, after_step=cpu_tuning.pacing())

Allocator. XLA:CPU allocates every train step's temporaries afresh (1.5 GB a step for GPT tiny at
batch 64 x 256). glibc serves blocks that large with mmap and returns them with munmap, so each
step touches fresh pages: ~380,000 page faults a step, and matmuls that write big outputs run at
half speed. With one arena, no mmap and no trimming (MALLOC_ENV), glibc reuses the same heap
memory every step (0 faults after the first steps). Measured on 2 CPU cores: GPT +20-30% tokens/s,
LSTM +10-15% (BUILD_NOTES, Speed). The cost: the process keeps its peak heap until it exits.
glibc reads these variables only at process start, so an entry point re-executes itself once with
them set (`reexec_with_tuned_malloc`), or a script is started with them: `env MALLOC_ARENA_MAX=1
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python my_script.py`.
ABCJAX_TUNE_MALLOC=0 turns the restart off. Machines with an accelerator (a GPU or TPU device
node, or JAX_PLATFORMS naming one) are left alone: their steps do not run on the host's allocator,
and it was not measured there.

Pacing. XLA:CPU frees a step's temporaries (one block, 1.45 GB for GPT tiny) on a worker thread
just after the step's outputs are ready, and a step launched at once allocates its own block first.
glibc cannot hand back memory that is still in use, so the kept heap grows by a whole block each
time that happens: 1.9 GB -> 7.4 GB over the first 40 GPT-tiny steps, each growth a step of
~375,000 page faults (2.5 s). `finish_step` waits for a step and yields 1 ms, which lets the free
land first: the heap stays at one block and the faults stop (BUILD_NOTES, Speed). `pacing()` gives
it as the trainer's and the benchmark's `after_step` hook where the heap is kept.

Backward passes. `cpu_backward()` is the value of the model config's `cpu_backward` field for this
process: true on one CPU device, where the hand-written backward passes of the Dense weight
gradient and the LSTM recurrence were measured faster (abcjax/models/layers.py, lstm.py). The
entry points set it in experiments/common.py; `--config.model.cpu_backward=false` turns it
off there.

This module imports nothing heavy at import time: it runs before jax is loaded.
"""

from __future__ import annotations

import glob
import os
import platform
import sys
import time
from typing import Any, Callable

MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",        # every thread in the main arena, which grows without a cap
    "MALLOC_MMAP_MAX_": "0",        # never mmap: big blocks come from (and go back to) the heap
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),  # never give the heap's top back to the system
}
OPT_OUT = "ABCJAX_TUNE_MALLOC"
_RESTARTED = "ABCJAX_MALLOC_RESTARTED"  # set in the restarted process: never restart twice
_ACCELERATOR_NODES = ("/dev/nvidia[0-9]*", "/dev/accel[0-9]*", "/dev/kfd")
STEP_GAP_S = 0.001  # measured enough for XLA's worker thread to free the last step's block


def _has_accelerator() -> bool:
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
  return any(glob.glob(pattern) for pattern in _ACCELERATOR_NODES)


def _glibc_linux() -> bool:
  """Whether this process's malloc is glibc's on Linux, the allocator MALLOC_ENV speaks to."""
  return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def applies() -> bool:
  """Whether the tuning is for this process: Linux with glibc, no accelerator, not turned off."""
  if os.environ.get(OPT_OUT, "1") == "0":
    return False
  return _glibc_linux() and not _has_accelerator()


def is_tuned(environ: dict[str, str] | None = None) -> bool:
  """Whether every MALLOC_ENV variable is set (to any value: the user's own choice stands)."""
  environ = os.environ if environ is None else environ
  return all(key in environ for key in MALLOC_ENV)


def paces_steps() -> bool:
  """Whether to run compiled steps one at a time (`finish_step`): JAX on CPU with glibc's heap kept
  by MALLOC_ENV (elsewhere a step's blocks are not held by a never-trimmed heap)."""
  import jax  # only here: this module is imported before jax is loaded

  return jax.default_backend() == "cpu" and is_tuned() and _glibc_linux()


def finish_step(outputs) -> None:
  """Waits for a step's outputs, then yields STEP_GAP_S so XLA frees the step's temporaries before
  the next step allocates its own (see the module docstring). The trainer's `after_step` hook
  where `paces_steps()`.

  Costs 1 ms a step (0.1% of a GPT-tiny step at batch 64 x 256, ~3% of the CPU preset's smallest,
  ~30 ms) and the overlap of loading the next batch with the step. 1 ms was measured on an idle
  machine: under other load the free may come later, and the heap can grow again (the benchmark's
  page_faults_per_step shows it).
  """
  import jax

  jax.block_until_ready(outputs)
  time.sleep(STEP_GAP_S)


def pacing() -> Callable[[Any], None] | None:
  """The `after_step` hook for the trainer and the benchmark: `finish_step` where `paces_steps()`,
  else None (steps run back to back)."""
  return finish_step if paces_steps() else None


def cpu_backward() -> bool:
  """The `cpu_backward` config value for this process: true on one CPU device.

  With several devices the batch axis is sharded, and flattening a time-major [L, B, D] array
  would merge it with time and gather the activations onto every device; autodiff keeps them
  sharded there. Accelerators were not measured with them.
  """
  import jax

  return jax.default_backend() == "cpu" and jax.device_count() == 1


def tuned_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
  """`environ` with MALLOC_ENV added; variables the user already set keep their values."""
  return {**MALLOC_ENV, **(os.environ if environ is None else environ)}


def untuned_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
  """`environ` without MALLOC_ENV: how another program (the PyTorch peer) runs by default."""
  return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in MALLOC_ENV}


def _launched_as(main_file: str) -> bool:
  """Whether this process's command line is `python [options] -m MODULE ARGS` or `python [options]
  FILE ARGS` for `main_file`, with ARGS exactly sys.argv[1:]; not `-c`, stdin, or a host program
  (runpy, IPython's %run, pdb, a debugger) that runs the entry point inside itself."""
  argv, i = list(getattr(sys, "orig_argv", []))[1:], 0
  while i < len(argv):
    arg = argv[i]
    if arg == "-m" and i + 1 < len(argv):
      rest = argv[i + 2:]
      launched = os.path.realpath(sys.argv[0]) == os.path.realpath(main_file)  # runpy sets argv[0]
      break
    if arg in ("-c", "-") or arg.startswith(("-c", "-m")):
      return False
    if arg in ("-W", "-X"):
      i += 2
      continue
    if arg.startswith("-"):
      i += 1
      continue
    rest = argv[i + 1:]
    launched = os.path.realpath(arg) == os.path.realpath(main_file)
    break
  else:
    return False
  return launched and rest == sys.argv[1:]


def reexec_with_tuned_malloc(module_name: str, module_file: str) -> None:
  """From an entry point run as a program, restart the same command once with MALLOC_ENV set.

  Call it as `reexec_with_tuned_malloc(__name__, __file__)` before importing jax. Does nothing
  when imported, when the command line did not launch `module_file` itself (see `_launched_as`),
  where `applies()` is false, when the variables are already set, or after one restart. Same
  interpreter, interpreter options, arguments and process id. If the restart fails, the run goes
  on untuned with a warning.
  """
  if (module_name != "__main__" or not applies() or is_tuned() or os.environ.get(_RESTARTED)
      or not _launched_as(module_file)):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
              {**tuned_environ(), _RESTARTED: "1"})
  except OSError as e:
    print(f"warning: could not restart with the allocator settings ({e}); going on without them "
          "(abcjax/cpu_tuning.py)", file=sys.stderr, flush=True)
