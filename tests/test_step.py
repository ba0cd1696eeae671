"""The train and eval steps alone: pure functions of (state, batch), jitted over the mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abcjax.models import build_model, get_config
from abcjax.train import step as step_lib
from abcjax.train.config import OptimizerConfig
from abcjax.train.optimizer import make_optimizer, make_schedule


@pytest.fixture(scope="module")
def parts():
  model = build_model(get_config("gpt", "custom", vocab_size=11, block_size=16, n_layer=1,
                                 d_model=16, n_head=2))
  tx = make_optimizer(OptimizerConfig(lr=1e-2, warmup_frac=0.0), total_steps=20)
  mesh = step_lib.make_mesh()
  batch = step_lib.global_batch(
      np.random.default_rng(0).integers(0, 11, (4, 17), dtype=np.int32), mesh)
  return model, tx, mesh, batch


def test_a_step_updates_the_state_and_reports_its_metrics(parts):
  model, tx, mesh, batch = parts
  train_step = step_lib.make_train_step(model, tx, mesh, jax.random.key(1))
  state = step_lib.init_state(model, tx, jax.random.key(0), mesh)
  before = jax.tree.map(np.asarray, state.params)
  losses = []
  for _ in range(5):
    state, metrics = train_step(state, batch)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 5
  assert losses[-1] < losses[0]  # the same batch five times: its loss falls
  # The logged rate is the one the fifth update used: the schedule at step 4.
  schedule = make_schedule(OptimizerConfig(lr=1e-2, warmup_frac=0.0), 20)
  assert float(metrics["lr"]) == pytest.approx(float(schedule(4)), rel=1e-6)
  assert float(metrics["grad_norm"]) > 0
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(moved))
  # The first loss is the model's own cross-entropy on the batch, before any update.
  fresh = step_lib.init_state(model, tx, jax.random.key(0), mesh)
  logits = model.apply(fresh.params, batch[:, :-1])
  expected = step_lib.cross_entropy(logits, batch[:, 1:]).mean()
  assert losses[0] == pytest.approx(float(expected), rel=1e-5)


def test_the_state_is_donated(parts):
  model, tx, mesh, batch = parts
  train_step = step_lib.make_train_step(model, tx, mesh, jax.random.key(1))
  state = step_lib.init_state(model, tx, jax.random.key(0), mesh)
  old = jax.tree.leaves(state.params)[0]
  train_step(state, batch)
  assert old.is_deleted()  # its buffer was reused for the new state


def test_eval_step_sums_weighted_losses(parts):
  model, _, mesh, batch = parts
  params = model.init(jax.random.key(0))
  eval_step = step_lib.make_eval_step(model, mesh)
  ones = step_lib.global_batch(np.ones((4, 16), np.float32), mesh)
  half = np.ones((4, 16), np.float32)
  half[:, 8:] = 0
  total, count = eval_step(params, batch, ones)
  part, part_count = eval_step(params, batch, step_lib.global_batch(half, mesh))
  losses = step_lib.cross_entropy(model.apply(params, batch[:, :-1]), batch[:, 1:])
  assert float(count) == 64 and float(part_count) == 32
  assert float(total) == pytest.approx(float(jnp.sum(losses)), rel=1e-5)
  assert float(part) == pytest.approx(float(jnp.sum(losses[:, :8])), rel=1e-5)
