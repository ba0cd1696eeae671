"""Many hosts: jax.distributed, started when asked for or when a cluster launcher is detected."""

from __future__ import annotations

import os

import jax
from absl import logging

def detected_cluster() -> str | None:
  if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    return "slurm"
  if int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "openmpi"
  return None


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               cpu_collectives: str = "gloo") -> bool:
  """Starts jax.distributed if asked for; returns whether it is running.

  mode: "off" never starts it; "on" always does (with the explicit address/count/id if given,
  else JAX's own cluster detection); "auto" starts it when an address is given or when a
  multi-task SLURM or Open MPI job is detected.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"--distributed must be auto, on or off, got {mode!r}")
  explicit = coordinator_address is not None
  if mode == "off" or (mode == "auto" and not explicit and detected_cluster() is None):
    return False
  # CPU devices exchange data through gloo; the setting leaves GPU collectives (NCCL) alone.
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  kwargs = {}
  if explicit:
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
  return True

