"""The errors of a training run that a user acts on; light to import (no JAX)."""

from __future__ import annotations

import pathlib
import signal


class TrainingDiverged(FloatingPointError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


class ConfigMismatch(ValueError):
  """The work folder belongs to a run with another configuration."""


class RunStopped(Exception):
  """SIGINT or SIGTERM stopped a run; it saved a checkpoint, and training again resumes it."""

  def __init__(self, workdir: pathlib.Path, step: int, total_steps: int, signum: int,
               saved: bool = True):
    self.workdir, self.step, self.total_steps, self.signum = workdir, step, total_steps, signum
    where = (f"{workdir} at step {step} of {total_steps}, saved" if saved else
             f"{workdir} at step {step} of {total_steps}, before a step (nothing new to save)")
    super().__init__(f"{signal.Signals(signum).name} stopped {where}; run the same command "
                     "again to resume")
