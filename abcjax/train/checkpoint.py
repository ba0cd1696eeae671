"""Orbax checkpoints of a run: the latest state (with the data iterator), the best and the final.

A work folder holds:
  checkpoints/latest/<step>/  state + data iterator state + progress, every checkpoint_every steps
  checkpoints/best/<step>/    state + progress at the best validation loss so far
  checkpoints/final/<step>/   state + progress at the end of training
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import orbax.checkpoint as ocp

KINDS = ("latest", "best", "final")


class Checkpoints:
  """One orbax CheckpointManager per kind, all in <workdir>/checkpoints."""

  def __init__(self, workdir: str | pathlib.Path):
    root = pathlib.Path(workdir).absolute() / "checkpoints"
    keep = {"latest": 2, "best": 1, "final": 1}
    # Each kind names its own cross-process barriers: orbax keys them by step alone, and the last
    # step saves 'latest', 'best' and 'final' at once ("Barrier _async_write_complete.24 is
    # already ongoing" with two processes).
    self._managers = {
        kind: ocp.CheckpointManager(
            root / kind,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep[kind], create=True,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    barrier_sync_key_prefix=f"abcjax_{kind}")))
        for kind in KINDS
    }

  def latest_step(self, kind: str = "latest") -> int | None:
    return self._managers[kind].latest_step()

  def save(self, kind: str, step: int, state: Any, *, progress: dict[str, Any],
           data_state: dict[str, Any] | None = None) -> None:
    # Copies: the save finishes in the background, and the loop goes on updating its progress
    # dict (a checkpoint of step 8 once said step 9, and the resumed run was a step off).
    items = {"state": ocp.args.StandardSave(state),
             "progress": ocp.args.JsonSave(copy.deepcopy(progress))}
    if data_state is not None:
      items["data"] = ocp.args.JsonSave(copy.deepcopy(data_state))
    manager = self._managers[kind]
    stale = [s for s in manager.all_steps() if s >= step]
    if stale:
      # A run resumed from an older 'latest' reaches again the steps it had saved before it was
      # killed (a best checkpoint, or the final one when the kill came during the test
      # evaluation). Those belong to the abandoned run: this save replaces them, so the kind's
      # newest step is always the one just saved (orbax keeps the highest steps).
      manager.wait_until_finished()
      for s in stale:
        manager.delete(s)
    manager.save(step, args=ocp.args.Composite(**items), force=True)

  def _step(self, kind: str, step: int | None) -> tuple[ocp.CheckpointManager, int]:
    """The manager of a kind and the step asked for (default: its newest; none is an error)."""
    manager = self._managers[kind]
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no '{kind}' checkpoint in {manager.directory}")
    return manager, step

  def progress(self, kind: str, step: int | None = None) -> dict[str, Any]:
    """The progress record of a checkpoint (default: the newest of its kind), without its state."""
    manager, step = self._step(kind, step)
    return manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))["progress"]

  def restore(self, kind: str, abstract_state: Any, *, step: int | None = None,
              with_data: bool = False) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """(state, progress, data iterator state or None) of the given (default: newest) step.

    abstract_state is a pytree of jax.ShapeDtypeStruct whose shardings say where arrays land.
    """
    manager, step = self._step(kind, step)
    items = {"state": ocp.args.StandardRestore(abstract_state), "progress": ocp.args.JsonRestore()}
    if with_data:
      items["data"] = ocp.args.JsonRestore()
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], restored["progress"], restored["data"] if with_data else None

  def wait(self) -> None:
    for manager in self._managers.values():
      manager.wait_until_finished()

  def close(self) -> None:
    for manager in self._managers.values():
      manager.close()
