"""The pure train and eval steps, jit-compiled data-parallel over a device mesh."""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over every device of every process: the batch is split along it."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: np.ndarray, mesh: Mesh) -> jax.Array:
  """Assembles each process's rows into one global array sharded along the batch axis."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)


def cross_entropy(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
  # The loss is computed in float32 even when the model computes in bfloat16.
  return optax.softmax_cross_entropy_with_integer_labels(
      logits_BxLxV.astype(jnp.float32), targets_BxL)


def init_state(model, tx: optax.GradientTransformation, rng: jax.Array, mesh: Mesh) -> TrainState:
  """Initialises parameters and optimizer state, replicated over the mesh."""

  def init(rng):
    params = model.init(rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  return jax.jit(init, out_shardings=replicated(mesh))(rng)


def abstract_state(model, tx: optax.GradientTransformation) -> TrainState:
  """Shapes and dtypes of the train state, without allocating it (for restoring)."""

  def init():
    params = model.init(jax.random.key(0))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  return jax.eval_shape(init)


def make_train_step(model, tx: optax.GradientTransformation, mesh: Mesh,
                    dropout_key: jax.Array) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict]]:
  """train_step(state, tokens_Bx(L+1)) -> (state, metrics), jitted once with the state donated."""
  use_dropout = model.config.dropout > 0

  def loss_fn(params, tokens, rng):
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = model.apply(params, inputs, train=use_dropout, dropout_rng=rng if use_dropout else None)
    return cross_entropy(logits, targets).mean()

  def train_step(state: TrainState, tokens: jax.Array):
    # fold_in(step) makes the dropout noise of step s the same whether or not the run resumed.
    rng = jax.random.fold_in(dropout_key, state.step)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, tokens, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "lr": opt_state.hyperparams["learning_rate"],
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  repl = replicated(mesh)
  return jax.jit(train_step, in_shardings=(repl, batch_sharding(mesh)),
                 out_shardings=(repl, repl), donate_argnums=0)


def make_eval_step(model, mesh: Mesh) -> Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
  """eval_step(params, tokens_Bx(L+1), weights_BxL) -> (sum of weighted losses, sum of weights)."""

  def eval_step(params, tokens, weights):
    logits = model.apply(params, tokens[:, :-1])
    losses = cross_entropy(logits, tokens[:, 1:])
    return jnp.sum(losses * weights), jnp.sum(weights)

  repl, data = replicated(mesh), batch_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(repl, data, data), out_shardings=(repl, repl))
