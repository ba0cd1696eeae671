"""Orbax checkpoints of a run: one CheckpointManager, one folder per saved step.

<workdir>/checkpoints/<step>/ holds the train state, the progress record and the data iterator
state, so the run resumes from any kept step; a step saved at an evaluation also holds its
validation loss as orbax's metrics. Orbax keeps the newest `keep_latest` steps and the step of
lowest validation loss, and deletes the others as it saves. 'best' is that step; 'final' and
'latest' are the newest step ('final' once it is the run's last).
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from abcjax.train.errors import ConfigMismatch

KINDS = ("latest", "best", "final")


def _val_loss(metrics: dict[str, float]) -> float:
  return metrics["val_loss"]


def _old_layout(root: pathlib.Path) -> bool:
  """Whether root holds the layout of earlier versions: one manager per kind in root/<kind>/."""
  return any((root / kind).is_dir() for kind in KINDS)


class Checkpoints:
  """The CheckpointManager of a run, in <workdir>/checkpoints."""

  def __init__(self, workdir: str | pathlib.Path, *, keep_latest: int = 2, read_only: bool = False):
    root = pathlib.Path(workdir).absolute() / "checkpoints"
    if _old_layout(root):
      raise ConfigMismatch(
          f"{root} holds checkpoints in the layout of earlier abcjax versions (latest/, best/, "
          "final/), which a run cannot resume from; load_trained and experiments.sample_eval "
          "still read them. Train again in a new --workdir.")
    self._manager = ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(
        # best_fn makes orbax write each step's metrics and rank the steps by them.
        best_fn=_val_loss, best_mode="min",
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep_latest),
            # Steps saved between evaluations have no metrics: LatestN alone decides on them.
            policies.BestN(get_metric_fn=_val_loss, reverse=True, n=1,
                           keep_checkpoints_without_metrics=False)]),
        read_only=read_only, create=not read_only, save_interval_steps=0 if read_only else 1))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The kept step of lowest validation loss (None before the first evaluation)."""
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, *, progress: dict[str, Any], data_state: dict[str, Any],
           val_loss: float | None = None) -> bool:
    """Saves a step in the background; val_loss ranks it for 'best'. False if it was not saved.

    Without force, orbax's should_save lets through only a step newer than the newest saved. A
    run resumes from its newest step, so each step it saves is newer, even after a kill between
    checkpoints: no step is reached twice. A step at or below the newest was saved by this same
    deterministic run; it is left as it is instead of raising StepAlreadyExistsError.
    """
    # Copies: the save finishes in the background, and the loop goes on updating its progress
    # dict (a checkpoint of step 8 once said step 9, and the resumed run was a step off).
    items = ocp.args.Composite(state=ocp.args.StandardSave(state),
                               progress=ocp.args.JsonSave(copy.deepcopy(progress)),
                               data=ocp.args.JsonSave(copy.deepcopy(data_state)))
    metrics = None if val_loss is None else {"val_loss": float(val_loss)}
    return self._manager.save(step, args=items, metrics=metrics)

  def restore(self, abstract_state: Any, *, step: int | None = None, with_data: bool = False
              ) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """(state, progress, data iterator state or None) of the given (default: newest) step.

    abstract_state is a pytree of jax.ShapeDtypeStruct whose shardings say where arrays land.
    """
    self._manager.wait_until_finished()  # The step asked for may be the one still being written.
    step = self._manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self._manager.directory}")
    items = {"state": ocp.args.StandardRestore(abstract_state), "progress": ocp.args.JsonRestore()}
    if with_data:
      items["data"] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], restored["progress"], restored["data"] if with_data else None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def load(workdir: str | pathlib.Path, which: str, abstract_state: Any, *, final_step: int
         ) -> tuple[Any, dict[str, Any]]:
  """(state, progress) of a run's 'best', 'final' or 'latest' checkpoint; nothing is written.

  final_step: the run's last step; 'final' exists once the newest step is that one. Runs saved in
  the layout of earlier versions load too.
  """
  if which not in KINDS:
    raise ValueError(f"checkpoint must be one of {KINDS}, got {which!r}")
  root = pathlib.Path(workdir).absolute() / "checkpoints"
  if _old_layout(root):
    return _load_old_layout(root / which, abstract_state)
  ckpt = Checkpoints(workdir, read_only=True)
  try:
    step = ckpt.best_step() if which == "best" else ckpt.latest_step()
    if step is None or (which == "final" and step != final_step):
      raise FileNotFoundError(
          f"{workdir} has no '{which}' checkpoint yet (steps kept: {ckpt.all_steps()}, in a run "
          f"of {final_step} steps; 'best' needs an evaluation, 'final' the last step)")
    state, progress, _ = ckpt.restore(abstract_state, step=step)
  finally:
    ckpt.close()
  return state, progress


def _load_old_layout(directory: pathlib.Path, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
  """(state, progress) of the newest step in one kind's folder of the earlier layout."""
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True, create=False, save_interval_steps=0))
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), progress=ocp.args.JsonRestore()))
  finally:
    manager.close()
  return restored["state"], restored["progress"]
