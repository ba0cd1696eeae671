"""The one optimizer: warmup then decay, decay on matrices only, the logged learning rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abcjax.train.config import OptimizerConfig
from abcjax.train.optimizer import decay_mask, make_optimizer, make_schedule


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_warms_up_then_decays_to_the_floor(schedule):
  cfg = OptimizerConfig(lr=1e-3, warmup_frac=0.1, min_lr_ratio=0.1, schedule=schedule)
  lr = make_schedule(cfg, 100)
  values = np.array([float(lr(s)) for s in range(101)])
  assert values[0] == 0.0 and values[10] == pytest.approx(1e-3)
  assert np.all(np.diff(values[:11]) > 0) and np.all(np.diff(values[10:]) <= 1e-12)
  assert values[100] == pytest.approx(1e-4)
  mid = values[55]  # half way through the decay
  assert mid == pytest.approx(5.5e-4, rel=1e-3)  # cosine and linear both cross the midpoint here
  if schedule == "cosine":
    assert values[30] > 1e-3 - 0.9e-3 * 20 / 90  # above the straight line early on
  assert float(make_schedule(OptimizerConfig(lr=1e-3, warmup_frac=0.0), 10)(0)) == pytest.approx(1e-3)


def test_weight_decay_only_on_matrices():
  params = {"w": jnp.ones((3, 4)), "b": jnp.ones((4,)), "scale": jnp.ones((4,)),
            "emb": jnp.ones((5, 3))}
  assert decay_mask(params) == {"w": True, "b": False, "scale": False, "emb": True}
  tx = make_optimizer(OptimizerConfig(lr=0.1, weight_decay=0.5, warmup_frac=0.0), 10)
  state = tx.init(params)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, state = tx.update(zero, state, params)  # no gradient: only decay moves anything
  assert float(jnp.abs(updates["w"]).max()) > 0 and float(jnp.abs(updates["emb"]).max()) > 0
  assert float(jnp.abs(updates["b"]).max()) == 0 and float(jnp.abs(updates["scale"]).max()) == 0
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.1)


def test_clipping_bounds_the_update():
  tx = make_optimizer(OptimizerConfig(lr=1.0, warmup_frac=0.0, grad_clip=1e-3, weight_decay=0.0,
                                      b1=0.0, b2=0.0, eps=1e-30), 10)
  params = {"w": jnp.zeros((2, 2))}
  updates, _ = tx.update({"w": jnp.full((2, 2), 1e6)}, tx.init(params), params)
  # Adam with b1 = b2 = 0 normalises each coordinate: the update is -lr * sign, whatever the clip.
  np.testing.assert_allclose(np.asarray(updates["w"]), -1.0, rtol=1e-5)
