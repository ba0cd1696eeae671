"""Host allocator settings for XLA:CPU: keep freed memory in the process instead of unmapping it.

XLA:CPU allocates every train step's temporaries afresh (1.5 GB a step for GPT tiny at batch 64 x
256). glibc serves blocks that large with mmap and returns them with munmap, so each step touches
fresh pages: ~380,000 page faults a step, and matmuls that write big outputs run at half speed.
With one arena, no mmap and no trimming, glibc reuses the same heap memory every step (0 faults
after the first steps). Measured on 2 CPU cores: +15-25% tokens/s (BUILD_NOTES, Speed). The cost:
the process keeps its peak heap until it exits.

glibc reads these variables only at process start, so the experiment entry points re-execute
themselves once with them set (`reexec_with_tuned_malloc`). Code that imports abcjax into its own
program sets them itself: `env MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=1099511627776 python my_script.py`. ABCJAX_TUNE_MALLOC=0 turns it off.
This module imports nothing heavy: it runs before jax is loaded.
"""

from __future__ import annotations

import os
import platform
import sys

MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",        # every thread in the main arena, which grows without a cap
    "MALLOC_MMAP_MAX_": "0",        # never mmap: big blocks come from (and go back to) the heap
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),  # never give the heap's top back to the system
}
OPT_OUT = "ABCJAX_TUNE_MALLOC"


def applies() -> bool:
  """Whether this process runs on glibc and the user has not turned the tuning off."""
  if os.environ.get(OPT_OUT, "1") == "0" or not sys.platform.startswith("linux"):
    return False
  return platform.libc_ver()[0] == "glibc"


def is_tuned(environ: dict[str, str] | None = None) -> bool:
  """Whether every MALLOC_ENV variable is set (to any value: the user's own choice stands)."""
  environ = os.environ if environ is None else environ
  return all(key in environ for key in MALLOC_ENV)


def tuned_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
  """`environ` with MALLOC_ENV added; variables the user already set keep their values."""
  return {**MALLOC_ENV, **(os.environ if environ is None else environ)}


def untuned_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
  """`environ` without MALLOC_ENV: how another program (the PyTorch peer) runs by default."""
  return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in MALLOC_ENV}


def reexec_with_tuned_malloc(module_name: str) -> None:
  """From an entry point's `__main__`, restart the same command once with MALLOC_ENV set.

  Call it before importing jax. Does nothing when imported (module_name != "__main__"), off glibc,
  with ABCJAX_TUNE_MALLOC=0, or when the variables are already set. Same interpreter, same
  interpreter options and arguments (sys.orig_argv), same process id.
  """
  if module_name != "__main__" or not applies() or is_tuned():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], tuned_environ())
