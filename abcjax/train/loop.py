"""The training loop shared by every experiment: budgeted, evaluated, logged, checkpointed, resumable."""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import signal
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from abcjax import atomic, cpu_tuning
from abcjax.data import corpus, loader
from abcjax.data.vocab import Vocab
from abcjax.models.model import build_model
from abcjax.train import checkpoint, hardware, metrics, step as step_lib
from abcjax.train.config import Config, config_mismatch, from_record, write_json
from abcjax.train.errors import ConfigMismatch, RunStopped, TrainingDiverged
from abcjax.train.optimizer import make_optimizer

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
VOCAB_FILE = "vocab.json"
NATS_TO_BITS = 1.0 / math.log(2.0)


def check_workdir(workdir: pathlib.Path, cfg: Config) -> None:
  """Refuses a work folder written by another config, naming the fields that differ."""
  path = workdir / CONFIG_FILE
  if not path.exists():
    return
  saved = from_record(json.loads(path.read_text())).to_dict()
  diff = config_mismatch(saved, cfg)
  if diff:
    lines = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
    raise ConfigMismatch(
        f"work folder {workdir} belongs to a run with another config ({lines}). "
        "Use a new --workdir, or delete that folder to start over.")


def vocab_digest(vocab) -> str:
  return hashlib.sha1(json.dumps(vocab.id_to_token).encode()).hexdigest()


_RESUME_HINT = "Resume with the corpus it was trained on (--data_dir), or use a new --workdir."


def check_vocab(workdir: pathlib.Path, vocab, data_dir: pathlib.Path, hint: str = _RESUME_HINT) -> None:
  """Refuses a corpus whose vocabulary is not the one the run in workdir was trained with.

  data_dir may change on resume (a corpus folder that moved); its vocabulary may not: the
  embedding and output layers are sized and indexed by it. hint: what to do instead.
  """
  path = workdir / CONFIG_FILE
  if not path.exists():
    return
  saved = json.loads(path.read_text())
  was = (saved.get("vocab_size"), saved.get("vocab_sha1", vocab_digest(vocab)))
  if was != (len(vocab), vocab_digest(vocab)):
    raise ConfigMismatch(
        f"work folder {workdir} was trained on {saved.get('data_dir')}, whose vocabulary "
        f"({was[0]} tokens) is not that of {data_dir} ({len(vocab)} tokens, or other characters). "
        + hint)


def corpus_digest(data_dir: pathlib.Path, head_bytes: int = 1 << 24) -> str:
  """A digest of a corpus's token arrays: each split's length and its first 16 MB. A moved corpus
  keeps it; another build (another source, --transpose, another seed) changes it."""
  digest = hashlib.sha1()
  for split in corpus.SPLITS:
    path = data_dir / f"{split}.npy"
    digest.update(f"{split}:{path.stat().st_size}:".encode())
    with open(path, "rb") as f:
      digest.update(f.read(head_bytes))
  return digest.hexdigest()


def check_corpus(workdir: pathlib.Path, data_dir: pathlib.Path, digest: str) -> None:
  """Refuses to resume (or report as finished) a run on another corpus than it trained on."""
  path = workdir / CONFIG_FILE
  if not path.exists():
    return
  saved = json.loads(path.read_text())
  if saved.get("corpus_sha1", digest) != digest:
    raise ConfigMismatch(
        f"work folder {workdir} was trained on {saved.get('data_dir')}; {data_dir} holds another "
        "corpus (other token arrays). " + _RESUME_HINT)


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps (preemption-safe)."""

  def __init__(self):
    self.requested = False
    self.signum: int | None = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: signals stay as they are.
        pass
    return self

  def _handle(self, signum, frame):
    if self.requested:  # A second signal stops at once.
      raise KeyboardInterrupt
    logging.warning("signal %d: saving a checkpoint and stopping after this step", signum)
    self.requested, self.signum = True, signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class Trainer:
  """Everything one run needs, built once: data, model, optimizer, mesh, compiled steps.

  after_step: called with the outputs of each compiled step, train steps and eval batches alike,
  just after it is dispatched (None: steps run back to back). abcjax.cpu_tuning.pacing() gives
  the CPU one.
  """

  def __init__(self, cfg: Config, workdir: str | pathlib.Path,
               after_step: Callable[[Any], None] | None = None):
    # Everything that can refuse the run is checked before the work folder is made.
    cfg.validate()
    self.after_step = after_step
    self.workdir = pathlib.Path(workdir)
    if self.workdir.exists() and not self.workdir.is_dir():
      raise NotADirectoryError(f"work folder {self.workdir} is a file; pass a folder (--workdir)")
    check_workdir(self.workdir, cfg)
    self.data_dir = corpus.ensure_corpus(cfg.data.data_dir).resolve()
    self.vocab = corpus.load_vocab(self.data_dir)
    check_vocab(self.workdir, self.vocab, self.data_dir)
    self.corpus_sha1 = corpus_digest(self.data_dir)
    check_corpus(self.workdir, self.data_dir, self.corpus_sha1)
    self.train_tokens = corpus.load_split(self.data_dir, "train")  # memory-mapped
    block = cfg.model.block_size
    if len(self.train_tokens) < block + 1:
      raise ValueError(f"the train split of {self.data_dir} has {len(self.train_tokens)} tokens, "
                       f"fewer than block_size + 1 = {block + 1}: build a bigger corpus "
                       "or use a smaller block size (--config.model.block_size=...)")
    self.workdir.mkdir(parents=True, exist_ok=True)
    # The model's vocabulary is the corpus's.
    self.cfg = cfg = cfg.replace(model=cfg.model.replace(vocab_size=len(self.vocab)))
    self.model_cfg = cfg.model
    self.model = build_model(self.model_cfg)
    self.total_steps = cfg.total_steps
    # The study's 100M-token budget is ~23 passes over the embedded corpus: large models overfit
    # (their best validation loss comes early), so say so; sweeps fit the best validation loss.
    self.passes = cfg.total_tokens / max(len(self.train_tokens), 1)
    if self.passes > 2 and jax.process_index() == 0:
      print(f"note: {cfg.total_tokens:,} tokens are {self.passes:.1f} passes over the train split "
            f"of {self.data_dir}; larger models may overfit (the best checkpoint is kept and "
            "scaling fits use the best validation loss)", flush=True)
    self.tx = make_optimizer(cfg.opt, self.total_steps)
    self.mesh = step_lib.make_mesh()
    for path, batch in (("data.batch_size", cfg.data.batch_size),
                        ("eval.batch_size", cfg.eval.batch_size)):
      if batch % jax.device_count():
        raise ValueError(f"{path}={batch} must be divisible by the {jax.device_count()} devices")
    model_key, dropout_key = jax.random.split(jax.random.key(cfg.run.seed))
    self._model_key = model_key
    self.train_step = step_lib.make_train_step(self.model, self.tx, self.mesh, dropout_key)
    self.eval_step = step_lib.make_eval_step(self.model, self.mesh)
    repl = step_lib.replicated(self.mesh)
    self.abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
        step_lib.abstract_state(self.model, self.tx))
    self.ckpt = checkpoint.Checkpoints(self.workdir)
    # A finished run's record stays as it was written: it names the corpus it was trained on.
    if jax.process_index() == 0 and not self.finished():
      write_json(self.workdir / CONFIG_FILE, self.describe())
      # The run's own copy of its vocabulary: it loads (load_trained) without its corpus folder.
      atomic.replace(self.workdir / VOCAB_FILE, self.vocab.save)

  def finished(self) -> bool:
    return (self.workdir / RESULTS_FILE).exists() and self.ckpt.latest_step() == self.total_steps

  def describe(self) -> dict[str, Any]:
    mc = self.model_cfg
    return {
        "config": self.cfg.to_dict(),
        "size_table": mc.table,
        "num_params": mc.num_params(),
        "num_non_embedding_params": mc.num_non_embedding_params(),
        "flops_per_token": mc.flops_per_token(),
        "total_steps": self.total_steps,
        "passes_over_train": self.passes,
        "data_dir": str(self.data_dir),
        "vocab_size": len(self.vocab),
        "vocab_sha1": vocab_digest(self.vocab),
        "corpus_sha1": self.corpus_sha1,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "device_kind": jax.devices()[0].device_kind,
        # Host settings that move CPU speed and memory (cpu_tuning): how the figures were made.
        "malloc_tuned": cpu_tuning.is_tuned(),
        "paced_steps": self.after_step is cpu_tuning.finish_step,
        "after_step": _callable_name(self.after_step),
    }

  # -- evaluation ---------------------------------------------------------------------------------

  def evaluate(self, params, split: str) -> dict[str, float]:
    """Mean loss over the whole split (or its first eval_max_tokens tokens), in nats and bits/char."""
    tokens = corpus.load_split(self.data_dir, split)
    if self.cfg.eval.max_tokens:
      tokens = tokens[: self.cfg.eval.max_tokens + 1]
    total, count = 0.0, 0.0
    sums = []
    for batch, weights in loader.eval_batches(
        # eval.batch_size is global, as data.batch_size: each process walks its share of it.
        tokens, block_size=self.cfg.model.block_size,
        batch_size=self.cfg.eval.batch_size // jax.process_count(),
        process_index=jax.process_index(), process_count=jax.process_count()):
      sums.append(self.eval_step(params, step_lib.global_batch(batch, self.mesh),
                                 step_lib.global_batch(weights, self.mesh)))
      if self.after_step is not None:
        self.after_step(sums[-1])
    for loss_sum, weight_sum in jax.device_get(sums):
      total += float(loss_sum)
      count += float(weight_sum)
    if count == 0:
      raise ValueError(f"the {split} split of {self.data_dir} has no tokens to evaluate")
    loss = total / count
    return {"loss": loss, "bpc": loss * NATS_TO_BITS, "tokens": int(count)}

  # -- the loop -----------------------------------------------------------------------------------

  def _restore_or_init(self):
    """(state, progress, data iterator) from the latest checkpoint, or fresh ones."""
    it = loader.train_iterator(
        self.train_tokens, block_size=self.cfg.model.block_size,
        global_batch=self.cfg.data.batch_size, seed=self.cfg.run.seed,
        process_index=jax.process_index(), process_count=jax.process_count())
    if self.ckpt.latest_step() is None:
      state = step_lib.init_state(self.model, self.tx, self._model_key, self.mesh)
      progress = {"step": 0, "elapsed_s": 0.0, "best_val_loss": None, "best_step": None,
                  "train_loss": None}
      return state, progress, it
    state, progress, data_state = self.ckpt.restore(self.abstract_state, with_data=True)
    it.set_state(data_state)
    logging.info("resumed %s at step %d", self.workdir, progress["step"])
    return state, progress, it

  def _save(self, state, progress, it, val_loss: float | None = None) -> None:
    self.ckpt.save(progress["step"], state, progress=progress, data_state=it.get_state(),
                   val_loss=val_loss)

  def run(self, max_steps: int | None = None) -> dict[str, Any]:
    """Trains to the budget (or max_steps more steps, then checkpoints and returns).

    SIGINT or SIGTERM from the restore on (compilations included) stops the run at the next step
    with a checkpoint, then raises RunStopped; a second signal stops at once.
    """
    if self.finished():
      return json.loads((self.workdir / RESULTS_FILE).read_text())
    with _StopRequest() as stop:
      return self._run(stop, max_steps)

  def _run(self, stop: "_StopRequest", max_steps: int | None) -> dict[str, Any]:
    cfg = self.cfg
    state, progress, it = self._restore_or_init()
    start_step = progress["step"]
    writer = (metrics.MetricsWriter(self.workdir, resume_step=start_step)
              if jax.process_index() == 0 else metrics.NullWriter())
    stop_at = self.total_steps if max_steps is None else min(self.total_steps, start_step + max_steps)
    peak, peak_source = hardware.peak_flops_per_device(cfg.model.dtype)
    bar = _progress_bar(cfg.run.progress and jax.process_index() == 0, start_step, self.total_steps)

    interval_losses: list[float] = []
    interval_start = time.perf_counter()
    interval_steps = 0
    run_start = time.perf_counter() - progress["elapsed_s"]
    # (step, metrics) of the steps dispatched since the last sync. Metrics stay on the device until
    # a log, eval or checkpoint step: pulling them every step would make the host wait for each
    # step in turn, and small models on a GPU would run at the speed of the Python loop.
    pending: list[tuple[int, Any]] = []

    def pull(pending_metrics) -> list[dict[str, float]]:
      hosts = jax.device_get([m for _, m in pending_metrics])
      out = []
      for (step_no, _), m in zip(pending_metrics, hosts):
        host = {k: float(v) for k, v in m.items()}
        # The loss is computed before the update, so a finite loss with a non-finite gradient
        # norm still means non-finite parameters after it.
        if not (math.isfinite(host["loss"]) and math.isfinite(host["grad_norm"])):
          raise TrainingDiverged(
              f"loss is {host['loss']} and gradient norm {host['grad_norm']} at step {step_no} of "
              f"{self.workdir}; the last good "
              f"checkpoint (step {self.ckpt.latest_step()}) is kept. Lower --config.opt.lr or raise --config.opt.warmup_frac, "
              "then rerun in a new work folder (or in this one to resume from that checkpoint).")
        out.append(host)
      return out

    try:
      last = {}
      step_no = start_step
      while step_no < stop_at and not (stop.requested and step_no == start_step):
        batch = step_lib.global_batch(next(it), self.mesh)
        state, m = self.train_step(state, batch)
        if self.after_step is not None:
          self.after_step(state)
        step_no += 1
        pending.append((step_no, m))
        interval_steps += 1

        boundary = step_no == stop_at or stop.requested
        log_now = step_no % cfg.run.log_every == 0 or boundary
        eval_now = (cfg.eval.every and step_no % cfg.eval.every == 0) or step_no == self.total_steps
        every = cfg.run.checkpoint_every
        ckpt_now = (every and step_no % every == 0) or boundary
        if not (log_now or eval_now or ckpt_now):
          if bar is not None:
            bar.update(1)
          continue

        # Sync point: everything up to this step is finished and finite before it is recorded
        # (and before any checkpoint is written).
        pulled = pull(pending)
        interval_losses.extend(h["loss"] for h in pulled)
        last = pulled[-1]
        pending = []
        now = time.perf_counter()
        dt = now - interval_start
        tokens_per_s = interval_steps * cfg.tokens_per_step / dt if dt > 0 else 0.0
        progress["step"] = step_no
        progress["elapsed_s"] = now - run_start
        progress["train_loss"] = float(np.mean(interval_losses))
        record = {
            "step": step_no, "tokens": step_no * cfg.tokens_per_step,
            "train_loss": progress["train_loss"], "lr": last["lr"], "grad_norm": last["grad_norm"],
            "tokens_per_s": tokens_per_s,
            "mfu": self._mfu(tokens_per_s, peak),
            "elapsed_s": progress["elapsed_s"], "peak_memory_bytes": hardware.peak_memory_bytes()[0],
        }
        if eval_now:
          val = self.evaluate(state.params, "val")
          record.update(val_loss=val["loss"], val_bpc=val["bpc"])
          if progress["best_val_loss"] is None or val["loss"] < progress["best_val_loss"]:
            progress["best_val_loss"], progress["best_step"] = val["loss"], step_no
        writer.write(record)
        if bar is not None:
          bar.update(1)
          bar.set_postfix(loss=f"{progress['train_loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}",
                          **({"val": f"{record['val_loss']:.3f}"} if eval_now else {}))
        if ckpt_now or eval_now:  # An evaluated step is saved with its loss: it may be the best.
          self._save(state, progress, it, val["loss"] if eval_now else None)
        interval_losses, interval_steps = [], 0
        interval_start = time.perf_counter()
        if stop.requested:
          break
    finally:
      if bar is not None:
        bar.close()
      writer.close()
    finished = progress["step"] >= self.total_steps
    result = None
    if finished:
      result = self._finish(state, progress, peak, peak_source)
    self.ckpt.wait()
    if stop.requested:  # Finished or not, the command stops here (a sweep starts no next size).
      raise RunStopped(self.workdir, progress["step"], self.total_steps, stop.signum,
                       saved=progress["step"] > start_step)
    return result if finished else {"finished": False, **progress}

  def _mfu(self, tokens_per_s: float, peak_per_device: float) -> float:
    """Model FLOPs utilisation: training FLOPs per second over the peak of every device."""
    return hardware.mfu(tokens_per_s * self.model_cfg.flops_per_token(), peak_per_device)

  def _finish(self, state, progress, peak, peak_source) -> dict[str, Any]:
    """Test loss (final and best parameters), results.json; the loop saved the last step."""
    final_test = self.evaluate(state.params, "test")
    best_state, _, _ = self.ckpt.restore(self.abstract_state, step=self.ckpt.best_step())
    best_test = self.evaluate(best_state.params, "test")
    wall = progress["elapsed_s"]
    tokens = progress["step"] * self.cfg.tokens_per_step
    mc = self.model_cfg
    records = metrics.read_metrics(self.workdir)
    steady = [r["tokens_per_s"] for r in records[1:]] or [r["tokens_per_s"] for r in records]
    tokens_per_s = float(np.median(steady)) if steady else tokens / wall
    peak_memory, memory_source = hardware.peak_memory_bytes()
    results = {
        "finished": True,
        "arch": mc.arch, "size": mc.size, "seed": self.cfg.run.seed, "size_table": mc.table,
        "n_layer": mc.n_layer, "n_head": getattr(mc, "n_head", 0), "d_model": mc.d_model,
        "params": mc.num_params(), "non_embedding_params": mc.num_non_embedding_params(),
        "tokens": tokens, "steps": progress["step"],
        "final_train_loss": progress["train_loss"],
        "best_val_loss": progress["best_val_loss"], "best_step": progress["best_step"],
        "best_val_bpc": progress["best_val_loss"] * NATS_TO_BITS,
        "test_loss": best_test["loss"], "test_bpc": best_test["bpc"],
        "final_test_loss": final_test["loss"],
        "wall_time_s": wall, "tokens_per_s": tokens_per_s,
        "peak_memory_bytes": peak_memory, "peak_memory_source": memory_source,
        "mfu": self._mfu(tokens_per_s, peak),
        "peak_flops_source": peak_source,
        "device_kind": jax.devices()[0].device_kind, "devices": jax.device_count(),
    }
    if jax.process_index() == 0:
      write_json(self.workdir / RESULTS_FILE, results)
    return results


def _callable_name(fn: Callable | None) -> str | None:
  if fn is None:
    return None
  return f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _progress_bar(enabled: bool, start: int, total: int):
  if not enabled:
    return None
  from tqdm import tqdm
  return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, smoothing=0.1)


def train(cfg: Config, workdir: str | pathlib.Path, *, max_steps: int | None = None,
          after_step: Callable[[Any], None] | None = None) -> dict[str, Any]:
  """Trains one run in workdir, resuming it if it was started before; returns its results.

  after_step: called after each compiled step (see Trainer), e.g. abcjax.cpu_tuning.pacing().
  """
  trainer = Trainer(cfg, workdir, after_step)
  try:
    return trainer.run(max_steps=max_steps)
  finally:
    trainer.ckpt.close()
    if jax.process_count() > 1:
      # No process may leave (and shut down the coordination service) while another still waits
      # on a checkpoint barrier.
      multihost_utils.sync_global_devices("abcjax.train.end")


class TrainedModel(NamedTuple):
  model: Any
  params: Any
  vocab: Any
  config: Config
  data_dir: pathlib.Path
  step: int
  progress: dict[str, Any]


def load_trained(workdir: str | pathlib.Path, which: str = "best",
                 data_dir: str | pathlib.Path | None = None) -> TrainedModel:
  """The model, parameters and vocabulary of a run's best, final or latest checkpoint.

  The vocabulary is the run's own copy (<workdir>/vocab.json), so a run loads wherever its corpus
  went; runs written before that copy existed read it from their corpus folder. `data_dir`
  (default: the folder the run was trained on) is the corpus the returned `data_dir` names, for
  prompts and references; its vocabulary must be the run's.
  """
  workdir = pathlib.Path(workdir)
  config_path = workdir / CONFIG_FILE
  if not config_path.exists():
    raise FileNotFoundError(
        f"{workdir} holds no trained run ({CONFIG_FILE} missing); train one first, e.g. "
        "python -m experiments.best_model --workdir=...")
  saved = json.loads(config_path.read_text())
  cfg = from_record(saved)
  trained_on = pathlib.Path(saved.get("data_dir") or corpus.ensure_corpus(cfg.data.data_dir))
  if data_dir is None:
    data_dir = trained_on
  else:
    data_dir = pathlib.Path(data_dir)
    check_vocab(workdir, corpus.load_vocab(data_dir), data_dir,
                "Pass the corpus it was trained on (data_dir=, or --data_dir).")
  if (workdir / VOCAB_FILE).exists():
    vocab = Vocab.load(workdir / VOCAB_FILE)
  elif (data_dir / VOCAB_FILE).exists():
    vocab = corpus.load_vocab(data_dir)
  else:
    raise FileNotFoundError(
        f"{workdir} has no copy of its vocabulary and its corpus {data_dir} is gone; pass the "
        "corpus it was trained on (data_dir=, or --data_dir)")
  cfg = cfg.replace(model=cfg.model.replace(vocab_size=len(vocab)))
  model = build_model(cfg.model)
  tx = make_optimizer(cfg.opt, cfg.total_steps)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          step_lib.abstract_state(model, tx))
  state, progress = checkpoint.load(workdir, which, abstract, final_step=cfg.total_steps)
  return TrainedModel(model, state.params, vocab, cfg, data_dir, int(progress["step"]), progress)
