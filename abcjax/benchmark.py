"""Throughput measurements: the train step, sampling with and without the cache, the loader, corpus prep.

Every function returns one flat dict (JSON-ready) holding its settings next to its figures, so a line
of output can be read, and rerun, on its own. Times are wall-clock medians over repeated calls, each
call waited for with `block_until_ready`, because the machines this runs on are shared and noisy:
compare two implementations by their ratio, measured side by side in one run, not across runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np

from abcjax import cpu_tuning
from abcjax.models import ModelConfig, build_model, generate
from abcjax.models.gpt import attention_impl
from abcjax.train import hardware
from abcjax.train.config import OptimizerConfig
from abcjax.train.optimizer import make_optimizer
from abcjax.train.step import global_batch, init_state, make_mesh, make_train_step


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def machine() -> dict[str, Any]:
  """Where a figure was measured."""
  device = jax.local_devices()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "devices": jax.device_count(), "host": platform.node(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
          "jax": jax.__version__,
          # Other work on a shared machine shows here: compare ratios measured side by side.
          "load_avg_1min": os.getloadavg()[0],
          "malloc_tuned": cpu_tuning.is_tuned()}


def _timed_calls(call: Callable[[], Any], seconds: float, min_calls: int,
                 after_call: Callable[[Any], None] | None = None) -> list[float]:
  """Wall times of repeated `call()`s (each waited for) until both limits are reached.

  after_call: run after each timed call on its outputs, untimed (the trainer's `after_step`, e.g.
  cpu_tuning.finish_step, which gives XLA the time to free the call's temporaries).
  """
  times: list[float] = []
  start = time.perf_counter()
  while len(times) < min_calls or time.perf_counter() - start < seconds:
    t0 = time.perf_counter()
    out = jax.block_until_ready(call())
    times.append(time.perf_counter() - t0)
    if after_call is not None:
      after_call(out)
  return times


def peak_flops(dtype: str) -> dict[str, Any]:
  """The device's peak FLOP/s: a datasheet figure on known GPUs, else a matmul measured now."""
  peak, source = hardware.peak_flops_per_device(dtype)
  return {"peak_flops_per_device": peak, "peak_source": source}


class TrainBench:
  """A compiled train step of one model shape, ready to be timed again and again.

  Building it compiles (compile_s); `measure(seconds)` then times steps for that long. Keeping the
  object alive lets a caller alternate it with another implementation without recompiling.
  after_step: run after each step, as the trainer's (abcjax.cpu_tuning.pacing() on CPU; None:
  steps back to back). The config's cpu_backward picks the backward passes.
  """

  def __init__(self, config: ModelConfig, batch: int, seed: int = 0,
               after_step: Callable[[Any], None] | None = None):
    self.config, self.batch, self.after_step = config, batch, after_step
    self.model = build_model(config)
    # A long schedule: the measured steps sit in warmup, which costs the same as any other step.
    tx = make_optimizer(OptimizerConfig(), total_steps=1_000_000)
    mesh = make_mesh()
    key = jax.random.key(seed)
    self.state = init_state(self.model, tx, key, mesh)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, config.vocab_size, (batch, config.block_size + 1), dtype=np.int32)
    self.tokens = global_batch(tokens, mesh)
    step = make_train_step(self.model, tx, mesh, jax.random.fold_in(key, 1))
    t0 = time.perf_counter()
    self.step = step.lower(self.state, self.tokens).compile()
    self.compile_s = time.perf_counter() - t0
    self.flops_per_token = config.flops_per_token()
    self.tokens_per_step = batch * config.block_size
    self.warmup_steps, self.warmup_s = self._settle()

  def _call(self):
    self.state, metrics = self.step(self.state, self.tokens)
    return metrics["loss"]

  def _untimed_step(self) -> None:
    out = jax.block_until_ready(self._call())
    if self.after_step is not None:
      self.after_step(out)

  def _settle(self, min_steps: int = 3, quiet_steps: int = 3, max_seconds: float = 30.0,
              quiet_faults: int = 1000) -> tuple[int, float]:
    """Runs untimed steps until the process stops touching new memory -> (steps, seconds).

    The first steps allocate buffers and grow the heap; timing them would measure page faults.
    With steps paced (an after_step hook: cpu_tuning's keeps the heap at one step) it stops after
    `quiet_steps` steps in a row with fewer than `quiet_faults` new pages each, or after
    `max_seconds`, never before `min_steps`. Without it every step maps fresh memory (~380,000
    faults for GPT tiny), which is its steady state: then `min_steps` are run and no more.
    """
    start, steps, quiet = time.perf_counter(), 0, 0
    while steps < min_steps or (self.after_step is not None and quiet < quiet_steps
                                and time.perf_counter() - start < max_seconds):
      faults = hardware.minor_page_faults()
      self._untimed_step()
      steps += 1
      quiet = quiet + 1 if hardware.minor_page_faults() - faults < quiet_faults else 0
    return steps, time.perf_counter() - start

  def measure(self, seconds: float, min_steps: int = 3, warmup_steps: int = 2) -> dict[str, Any]:
    """Times steps for `seconds` (at least `min_steps`) after `warmup_steps` untimed ones.

    The untimed steps match the PyTorch reference, which warms 2 steps before each of its runs.
    """
    for _ in range(warmup_steps):
      self._untimed_step()
    cpu0, faults0 = hardware.cpu_times(), hardware.minor_page_faults()
    times = _timed_calls(self._call, seconds, min_steps, after_call=self.after_step)
    steal = hardware.steal_fraction(cpu0, hardware.cpu_times())
    faults_per_step = (hardware.minor_page_faults() - faults0) / len(times)
    step_s = statistics.median(times)
    tokens_per_s = self.tokens_per_step / step_s
    peak = peak_flops(self.config.dtype)
    model_flops_per_s = self.flops_per_token * tokens_per_s
    memory, memory_source = hardware.peak_memory_bytes()
    return {
        "what": "train", "impl": "abcjax", "arch": self.config.arch, "size": self.config.size,
        "table": self.config.table, "n_layer": self.config.n_layer, "d_model": self.config.d_model,
        "n_head": getattr(self.config, "n_head", 0), "vocab_size": self.config.vocab_size,
        "attention": attention_impl(self.config) if hasattr(self.config, "attention") else None,
        "params": self.config.num_params(), "batch": self.batch, "block": self.config.block_size,
        "dtype": self.config.dtype, "cpu_backward": self.config.cpu_backward,
        "paced_steps": self.after_step is cpu_tuning.finish_step,
        "steps": len(times), "step_s": step_s,
        "step_s_min": min(times), "step_s_max": max(times), "tokens_per_s": tokens_per_s,
        "compile_s": self.compile_s, "warmup_steps": self.warmup_steps, "warmup_s": self.warmup_s,
        "cpu_steal": steal, "page_faults_per_step": faults_per_step,
        "peak_memory_bytes": memory, "peak_memory_source": memory_source,
        "flops_per_token": self.flops_per_token, "model_flops_per_s": model_flops_per_s,
        **peak, "mfu": hardware.mfu(model_flops_per_s, peak["peak_flops_per_device"]),
        **machine(),
    }


def generation_throughput(config: ModelConfig, *, batch: int, new_tokens: int, use_cache: bool,
                          seconds: float, prompt_len: int = 1, seed: int = 0) -> dict[str, Any]:
  """Sampled tokens/s of `abcjax.models.generate`, with the cache or by full forward passes.

  Random weights and prompts: the cost does not depend on what is sampled, as no stop token is set.
  """
  model = build_model(config)
  params = model.init(jax.random.key(seed))
  rng = np.random.default_rng(seed)
  prompts = list(rng.integers(0, config.vocab_size, (batch, prompt_len), dtype=np.int32))
  call = lambda: generate(model, params, prompts, max_new_tokens=new_tokens, use_cache=use_cache,
                          seed=seed)
  t0 = time.perf_counter()
  call()
  first_call_s = time.perf_counter() - t0
  times = _timed_calls(call, seconds, min_calls=2)
  call_s = statistics.median(times)
  return {"what": "generate", "impl": "abcjax", "arch": config.arch, "size": config.size,
          "table": config.table, "n_layer": config.n_layer, "d_model": config.d_model,
          "n_head": getattr(config, "n_head", 0), "dtype": config.dtype, "batch": batch,
          "prompt_len": prompt_len,
          "new_tokens": new_tokens, "use_cache": use_cache, "calls": len(times), "call_s": call_s,
          "tokens_per_s": batch * new_tokens / call_s, "compile_s": max(first_call_s - call_s, 0.0),
          **machine()}


def loader_throughput(tokens: np.ndarray, *, block_size: int, batch: int, seconds: float,
                      seed: int = 0) -> dict[str, Any]:
  """Batches/s of the grain training iterator over a token array (no model running beside it)."""
  from abcjax.data.loader import train_iterator  # grain is only needed here

  iterator = train_iterator(tokens, block_size=block_size, global_batch=batch, seed=seed)
  next(iterator)  # starts the prefetch threads
  n, t0 = 0, time.perf_counter()
  while n < 10 or time.perf_counter() - t0 < seconds:
    next(iterator)
    n += 1
  elapsed = time.perf_counter() - t0
  return {"what": "loader", "batch": batch, "block": block_size, "split_tokens": int(len(tokens)),
          "batches": n, "batches_per_s": n / elapsed,
          "tokens_per_s": n * batch * (block_size + 1) / elapsed, **machine()}


def corpus_throughput(*, source: str = "music21", input_dir: str | None = None,
                      max_files: int | None = None, workers: int | None = None,
                      repeats: int = 3) -> dict[str, Any]:
  """Input MB/s of `build_corpus` (read, clean, split, tokenise, write) into a temporary folder.

  The median of `repeats` builds; the first one also warms the file cache and music21's imports.
  """
  from abcjax.data.corpus import build_corpus  # music21 is only needed here

  times = []
  for _ in range(max(repeats, 1)):
    with tempfile.TemporaryDirectory(prefix="abcjax-bench-corpus-") as out_dir:
      t0 = time.perf_counter()
      stats = build_corpus(out_dir, source=source, input_dir=input_dir, max_files=max_files,
                           workers=workers, progress=False)
      times.append(time.perf_counter() - t0)
  elapsed = statistics.median(times)
  return {"what": "corpus", "source": source, "max_files": max_files,
          "files": stats["files_read"], "tunes": stats["tunes_kept"],
          "input_bytes": stats["input_bytes"], "builds": len(times), "elapsed_s": elapsed,
          "mb_per_s": stats["input_bytes"] / 1e6 / elapsed, **machine()}

def torch_peer_command(python: str, script: str, config: ModelConfig, batch: int,
                       seconds: float) -> list[str]:
  """The command line of the PyTorch reference (benchmarks/torch_reference.py) for one shape.

  It also gets the optimizer settings TrainBench trains with (OptimizerConfig's defaults).
  """
  opt = OptimizerConfig()
  cmd = [python, script, "--arch", config.arch, "--layers", str(config.n_layer),
         "--d", str(config.d_model), "--vocab", str(config.vocab_size), "--batch", str(batch),
         "--block", str(config.block_size), "--seconds", str(seconds)]
  for name in ("lr", "b1", "b2", "eps", "weight_decay", "grad_clip"):
    cmd += [f"--{name}", repr(getattr(opt, name))]
  if config.arch == "gpt":
    cmd += ["--heads", str(config.n_head)]
  return cmd


def run_torch_peer(python: str, script: str, config: ModelConfig, batch: int, seconds: float,
                   threads: int = 0, tuned_malloc: bool = False,
                   timeout_s: float = 600.0) -> dict[str, Any]:
  """Runs the PyTorch reference in a subprocess (torch never enters this process) -> its JSON line.

  threads > 0 sets OMP_NUM_THREADS for it; 0 leaves PyTorch's default (one per core).
  tuned_malloc gives it abcjax's allocator settings (cpu_tuning.MALLOC_ENV); by default it runs with
  glibc's defaults, as PyTorch users run it.
  """
  env = cpu_tuning.tuned_environ() if tuned_malloc else cpu_tuning.untuned_environ()
  if threads > 0:
    env["OMP_NUM_THREADS"] = str(threads)
  cmd = torch_peer_command(python, script, config, batch, seconds)
  done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
  lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
  if done.returncode != 0 or not lines:
    raise RuntimeError(f"torch peer failed ({done.returncode}): {' '.join(cmd)}\n"
                       f"{done.stderr[-2000:]}")
  return {**json.loads(lines[-1]), "malloc_tuned": cpu_tuning.is_tuned(env)}


def compare_train(bench: TrainBench, peer: Callable[[], dict[str, Any]], *, rounds: int,
                  seconds: float) -> dict[str, Any]:
  """Alternates `bench.measure(seconds)` with `peer()` for `rounds` rounds; medians and their ratio.

  Alternating in one run exposes both to the same background load, so the ratio means something
  even when the absolute figures drift.
  """
  lines, peer_lines, torch_steal = [], [], []
  for _ in range(rounds):
    lines.append(bench.measure(seconds))
    cpu0 = hardware.cpu_times()
    peer_lines.append(peer())
    torch_steal.append(hardware.steal_fraction(cpu0, hardware.cpu_times()))
  per_round = lambda key, xs=lines: [x[key] for x in xs]
  ours, theirs = per_round("tokens_per_s"), per_round("tokens_per_s", peer_lines)
  steal, faults = per_round("cpu_steal"), per_round("page_faults_per_step")
  line, peer_line = lines[-1], peer_lines[-1]
  ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
  flops_per_s = bench.flops_per_token * ours_median
  worst = lambda xs: max((x for x in xs if x is not None), default=None)
  # Extremes over every round, not the last round's: a bad round must show at the top level too.
  return {**line, "tokens_per_s": ours_median, "step_s": bench.tokens_per_step / ours_median,
          "step_s_min": min(per_round("step_s_min")), "step_s_max": max(per_round("step_s_max")),
          "cpu_steal": worst(steal), "page_faults_per_step": max(faults),
          "model_flops_per_s": flops_per_s,
          "mfu": hardware.mfu(flops_per_s, line["peak_flops_per_device"]),
          "rounds_tokens_per_s": ours, "rounds_cpu_steal": steal,
          "rounds_page_faults_per_step": faults,
          "torch_rounds_cpu_steal": torch_steal,  # over each peer run, start-up included
          "torch_impl": peer_line.get("impl"),
          "torch_threads": peer_line.get("threads"), "torch_params": peer_line.get("params"),
          "torch_rounds_tokens_per_s": theirs, "torch_tokens_per_s": theirs_median,
          "torch_malloc_tuned": peer_line.get("malloc_tuned"),
          "ratio_vs_torch": ours_median / theirs_median}
