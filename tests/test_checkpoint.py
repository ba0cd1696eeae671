import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from abcjax.train import checkpoint
from abcjax.train.errors import ConfigMismatch


def state_of(step: int):
  return {"w": jnp.arange(1024.0) + step, "count": jnp.array(step, jnp.int32)}


def abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def save(ckpt, step, val_loss=None):
  return ckpt.save(step, state_of(step), progress={"step": step}, data_state={"next_index": step},
                   val_loss=val_loss)


def test_round_trip_restores_state_progress_and_data(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  save(ckpt, 3, val_loss=2.5)
  state, progress, data = ckpt.restore(abstract(state_of(0)), with_data=True)
  ckpt.close()
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(state_of(3))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert progress == {"step": 3} and data == {"next_index": 3}


def test_checkpoint_keeps_the_progress_of_its_own_step(tmp_path):
  """Saves finish in the background while the loop updates its progress dict in place."""
  ckpt = checkpoint.Checkpoints(tmp_path)
  state = {"w": jnp.arange(1024.0)}
  progress, data = {"step": 8, "train_loss": 3.0}, {"next_index": 8}
  ckpt.save(8, state, progress=progress, data_state=data)
  progress.update(step=9, train_loss=2.0)  # what the loop does at its next sync
  data["next_index"] = 9
  _, saved_progress, saved_data = ckpt.restore(abstract(state), with_data=True)
  ckpt.close()
  assert saved_progress == {"step": 8, "train_loss": 3.0} and saved_data == {"next_index": 8}


def test_keeps_the_latest_steps_and_the_best_by_validation_loss(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path, keep_latest=2)
  losses = {2: 3.0, 4: 1.0, 6: 2.0, 8: 2.5}  # evaluations; odd steps are saved without one
  for step in range(1, 9):
    save(ckpt, step, losses.get(step))
  ckpt.wait()
  assert (ckpt.all_steps(), ckpt.best_step(), ckpt.latest_step()) == ([4, 7, 8], 4, 8)
  ckpt.close()
  reopened = checkpoint.Checkpoints(tmp_path, keep_latest=2)  # the metrics are on disk
  assert (reopened.all_steps(), reopened.best_step()) == ([4, 7, 8], 4)
  save(reopened, 9)
  save(reopened, 10, val_loss=0.5)  # a new best: the old one goes
  reopened.wait()
  assert (reopened.all_steps(), reopened.best_step()) == ([9, 10], 10)
  state, progress, _ = reopened.restore(abstract(state_of(0)), step=reopened.best_step())
  reopened.close()
  assert progress == {"step": 10} and int(state["count"]) == 10


def test_a_step_already_saved_is_kept(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  assert save(ckpt, 4, val_loss=1.0)
  assert not ckpt.save(4, state_of(5), progress={"step": 5}, data_state={"next_index": 5})
  assert not save(ckpt, 3)
  state, progress, _ = ckpt.restore(abstract(state_of(0)))
  ckpt.close()
  assert ckpt.all_steps() == [4] and progress == {"step": 4} and int(state["count"]) == 4


def test_load_picks_best_final_and_latest(tmp_path):
  ckpt = checkpoint.Checkpoints(tmp_path)
  save(ckpt, 4, val_loss=1.0)
  save(ckpt, 8, val_loss=2.0)
  ckpt.close()
  like = abstract(state_of(0))
  assert checkpoint.load(tmp_path, "best", like, final_step=8)[1] == {"step": 4}
  assert checkpoint.load(tmp_path, "latest", like, final_step=8)[1] == {"step": 8}
  assert checkpoint.load(tmp_path, "final", like, final_step=8)[1] == {"step": 8}
  with pytest.raises(FileNotFoundError, match=r"no 'final' .*kept: \[4, 8\], in a run of 12"):
    checkpoint.load(tmp_path, "final", like, final_step=12)
  with pytest.raises(ValueError, match="checkpoint must be one of"):
    checkpoint.load(tmp_path, "newest", like, final_step=8)


def test_runs_in_the_earlier_layout_load_but_do_not_resume(tmp_path):
  """Earlier versions kept one manager per kind: checkpoints/latest, best and final."""
  for kind, step in (("latest", 8), ("best", 4), ("final", 8)):
    manager = ocp.CheckpointManager(tmp_path / "checkpoints" / kind)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_of(step)),
                                               progress=ocp.args.JsonSave({"step": step})))
    manager.close()
  state, progress = checkpoint.load(tmp_path, "best", abstract(state_of(0)), final_step=8)
  assert progress == {"step": 4} and int(state["count"]) == 4
  with pytest.raises(ConfigMismatch, match=r"layout of earlier abcjax versions .* new --workdir"):
    checkpoint.Checkpoints(tmp_path)
