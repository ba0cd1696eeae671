"""What the machine can do: peak FLOP/s for MFU, and peak memory."""

from __future__ import annotations

import functools
import resource
import sys
import time

import jax
import jax.numpy as jnp

# Dense peak FLOP/s per device from vendors' datasheets (SXM parts, no sparsity).
# Keys are matched as substrings of jax's device_kind, most specific first. "float32" is the TF32
# tensor-core peak where the part has one: JAX's default matmul precision runs float32 matmuls as
# TF32 on Ampere and later GPUs, so that is the ceiling a float32 run is measured against.
_GPU_PEAK = (
    ("H200", {"bfloat16": 989e12, "float32": 494e12}),
    ("H100 PCIe", {"bfloat16": 756e12, "float32": 378e12}),
    ("H100", {"bfloat16": 989e12, "float32": 494e12}),
    ("GH200", {"bfloat16": 989e12, "float32": 494e12}),
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
    ("L40S", {"bfloat16": 362e12, "float32": 183e12}),
    ("L4", {"bfloat16": 121e12, "float32": 60e12}),
    ("A10", {"bfloat16": 125e12, "float32": 62.5e12}),
    ("V100", {"bfloat16": 125e12, "float32": 15.7e12}),  # no TF32: plain float32
    ("RTX 4090", {"bfloat16": 165e12, "float32": 82.6e12}),
    ("RTX 3090", {"bfloat16": 71e12, "float32": 35.6e12}),
)


def gpu_peak_flops(device_kind: str, dtype: str) -> float | None:
  for name, peaks in _GPU_PEAK:
    if name.lower() in device_kind.lower():
      return peaks.get(dtype, peaks["float32"])
  return None


@functools.lru_cache(maxsize=None)
def measured_peak_flops(dtype: str = "float32", n: int = 1024, repeats: int = 5) -> float:
  """Peak FLOP/s of the local device, measured with a jitted square matmul (used on CPU)."""
  x = jax.random.normal(jax.random.key(0), (n, n), dtype=jnp.dtype(dtype))
  matmul = jax.jit(lambda a: a @ a)
  matmul(x).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(x).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


def peak_flops_per_device(dtype: str = "float32") -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure came from)."""
  device = jax.local_devices()[0]
  if device.platform == "gpu":
    peak = gpu_peak_flops(device.device_kind, dtype)
    if peak is not None:
      return peak, f"datasheet:{device.device_kind}"
  return measured_peak_flops(dtype), f"measured-matmul:{device.platform}"


def mfu(model_flops_per_s: float, peak_per_device: float) -> float:
  """Model FLOPs utilisation: model FLOPs per second over the peak of every device in the run."""
  return model_flops_per_s / (peak_per_device * jax.device_count())


def cpu_times() -> tuple[int, int] | None:
  """(stolen, total) CPU time of the whole machine so far, in clock ticks; None off Linux.

  Steal is time the hypervisor gave this VM's virtual CPUs to someone else: a timing taken while it
  rises measures the host's load, not the code.
  """
  try:
    with open("/proc/stat") as f:
      fields = [int(x) for x in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  # user nice system idle iowait irq softirq steal [guest guest_nice, already inside user/nice]
  return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
  """Share of the CPU time between two `cpu_times()` readings that the hypervisor stole."""
  if before is None or after is None or after[1] <= before[1]:
    return None
  return (after[0] - before[0]) / (after[1] - before[1])


def minor_page_faults() -> int:
  """Minor page faults of this process so far: memory it touched for the first time."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_memory_bytes() -> tuple[int, str]:
  """Peak memory in use on the first local device, or the process's peak RSS on CPU."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), f"device:{device.device_kind}"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  # ru_maxrss is kilobytes on Linux and bytes on macOS.
  return int(rss if sys.platform == "darwin" else rss * 1024), "host-peak-rss"
