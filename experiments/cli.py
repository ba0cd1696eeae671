"""How every entry point runs: absl's app.run, with the errors a user fixes printed as one line.

A bad flag value, a missing file or folder, a work folder of another run, a diverged run: the
library's own checks raise these with a message that names the flag or file and says what to do,
so such an error is printed alone (`error: ...`, exit 1) instead of under a traceback. Only errors
raised on purpose by abcjax's or the experiments' code get this; anything else (a bug, or an
error deep inside a dependency) keeps its whole traceback, as does any error under --verbosity=1.
A run stopped by SIGINT or SIGTERM has saved a checkpoint; it says so and exits 128 + the signal's
number, as a shell reports a process killed by it, so `best_model && sample_eval` stops there.
Elsewhere Ctrl-C unwinds the command (its cleanups run) and exits 130; so does SIGTERM, with 143,
in commands that ask for it (prepare_data: its spool and MIDI converters). The others keep
SIGTERM's default outside a training loop: an exception raised inside XLA's compiler can crash
the interpreter on its way out, and they have nothing to clean up there.
"""

from __future__ import annotations

import pathlib
import signal
import sys
import traceback
from typing import Callable

from absl import app, flags

import abcjax
from abcjax.train.errors import RunStopped, TrainingDiverged

# ValueError covers the argument checks and ConfigMismatch; OSError covers missing or unreadable
# files and folders (FileNotFoundError, NotADirectoryError, ...).
USER_ERRORS = (ValueError, OSError, TrainingDiverged)
_OUR_CODE = (str(pathlib.Path(abcjax.__file__).parent), str(pathlib.Path(__file__).parent))


def raised_on_purpose(error: BaseException) -> bool:
  """Whether `error` came from a `raise` statement in abcjax's or the experiments' own code."""
  frames = traceback.extract_tb(error.__traceback__)
  if not frames:
    return False
  last = frames[-1]
  return last.filename.startswith(_OUR_CODE) and (last.line or "").lstrip().startswith("raise")


class Terminated(KeyboardInterrupt):
  """SIGTERM (a scheduler's stop, `kill`) in a command that unwinds it like Ctrl-C, so that its
  cleanups run (the corpus build's spool, its MIDI converters) instead of the process vanishing."""


def _terminate(signum, frame):
  raise Terminated()


def run(main: Callable[[list[str]], None], *, unwind_sigterm: bool = False) -> None:
  def guarded(argv):
    if unwind_sigterm:
      signal.signal(signal.SIGTERM, _terminate)
    try:
      return main(argv)
    except RunStopped as e:
      print(f"stopped: {e}", file=sys.stderr, flush=True)
      sys.exit(128 + e.signum)
    except KeyboardInterrupt as e:  # Outside a training loop: nothing was left half done.
      terminated = isinstance(e, Terminated)
      print("terminated" if terminated else "interrupted", file=sys.stderr, flush=True)
      sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))
    except USER_ERRORS as e:
      if flags.FLAGS["verbosity"].value >= 1 or not raised_on_purpose(e):
        raise
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(1)

  app.run(guarded)
