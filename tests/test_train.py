import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from abcjax.models import get_config
from abcjax.train import loop, presets
from abcjax.train.config import Config, config_mismatch, override
from tests.tiny_corpus import build_tiny_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return build_tiny_corpus(tmp_path_factory.mktemp("tiny"))


# Short names of the config paths these tests change.
PATHS = {"lr": "opt.lr", "warmup_frac": "opt.warmup_frac", "grad_clip": "opt.grad_clip",
         "tokens": "data.tokens", "epochs": "data.epochs", "batch_size": "data.batch_size",
         "data_dir": "data.data_dir", "eval_every": "eval.every", "eval_batch_size": "eval.batch_size",
         "seed": "run.seed", "log_every": "run.log_every", "checkpoint_every": "run.checkpoint_every"}


def tiny_config(data_dir, arch="gpt", **changes) -> Config:
  """The table's tiny size at 1/6 (GPT) or 1/4 (recurrent) width on the cpu preset's recipe,
  24 steps of 8 x 32 tokens; `changes` by short name (PATHS) or as model fields."""
  cfg = presets.make("cpu", arch, "tiny", backend="cpu")
  width = {"gpt": 1 / 6}.get(arch, 0.25)
  model = get_config(arch, "tiny", block_size=32).scale_width(width)
  cfg = override(cfg.replace(model=model), {
      "data.data_dir": str(data_dir), "data.batch_size": 8, "data.tokens": 24 * 8 * 32,
      "opt.lr": 3e-3, "opt.warmup_frac": 0.1, "eval.every": 12, "eval.batch_size": 8,
      "run.log_every": 1, "run.checkpoint_every": 6, "run.progress": False})
  return override(cfg, {PATHS.get(k, f"model.{k}"): v for k, v in changes.items()})


def read_losses(workdir):
  with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line)["train_loss"] for line in f]


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_loss_falls(data_dir, tmp_path, arch):
  results = loop.train(tiny_config(data_dir, arch), tmp_path / arch)
  losses = read_losses(tmp_path / arch)
  assert len(losses) == 24
  assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.3
  assert results["finished"] and results["steps"] == 24
  assert results["best_val_loss"] < math.log(60)
  assert results["test_bpc"] == pytest.approx(results["test_loss"] / math.log(2))
  for name in ("config.json", "results.json", "metrics.jsonl"):
    assert (tmp_path / arch / name).exists()
  assert list((tmp_path / arch / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_is_bit_for_bit(data_dir, tmp_path):
  cfg = tiny_config(data_dir, dropout=0.1)
  loop.train(cfg, tmp_path / "straight")
  first = loop.train(cfg, tmp_path / "resumed", max_steps=12)
  assert first["finished"] is False and first["step"] == 12
  loop.train(cfg, tmp_path / "resumed")
  assert read_losses(tmp_path / "straight") == read_losses(tmp_path / "resumed")
  a = loop.load_trained(tmp_path / "straight", "final")
  b = loop.load_trained(tmp_path / "resumed", "final")
  assert a.step == b.step == 24
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The optimizer state too: the latest checkpoints of both runs hold identical states.
  trainer_a, trainer_b = loop.Trainer(cfg, tmp_path / "straight"), loop.Trainer(cfg, tmp_path / "resumed")
  sa = trainer_a.ckpt.restore(trainer_a.abstract_state)[0]
  sb = trainer_b.ckpt.restore(trainer_b.abstract_state)[0]
  for x, y in zip(jax.tree.leaves(sa.opt_state), jax.tree.leaves(sb.opt_state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  trainer_a.ckpt.close()
  trainer_b.ckpt.close()


class Killed(Exception):
  """A kill: the run stops where it is, with no checkpoint of its own."""


def test_resume_after_a_kill_between_checkpoints(data_dir, tmp_path, monkeypatch):
  """Killed right after the step saved for its evaluation (a new best), and again during the
  final test evaluation: each rerun resumes from the newest step and ends as an unbroken run."""
  cfg = tiny_config(data_dir, eval_every=4, checkpoint_every=8)
  straight = loop.train(cfg, tmp_path / "straight")
  assert loop.load_trained(tmp_path / "straight", "best").step == straight["best_step"]
  made = loop.step_lib.make_train_step

  def make_killed_step(*args, **kwargs):
    step, calls = made(*args, **kwargs), []

    def killed_step(state, batch):
      calls.append(1)
      if len(calls) == 14:
        raise Killed
      return step(state, batch)
    return killed_step

  monkeypatch.setattr(loop.step_lib, "make_train_step", make_killed_step)
  with pytest.raises(Killed):
    loop.train(cfg, tmp_path / "killed")
  monkeypatch.undo()
  best = loop.load_trained(tmp_path / "killed", "best")
  assert (best.step, best.progress["best_step"]) == (12, 12)  # saved for its evaluation alone
  with pytest.raises(FileNotFoundError, match="no 'final' checkpoint yet"):
    loop.load_trained(tmp_path / "killed", "final")
  paused = loop.train(cfg, tmp_path / "killed", max_steps=2)  # resumed at 12, stopped at 14
  assert (paused["best_step"], paused["step"]) == (12, 14)
  resumed = loop.train(cfg, tmp_path / "killed")
  assert read_losses(tmp_path / "straight") == read_losses(tmp_path / "killed")
  (tmp_path / "killed" / "results.json").unlink()  # killed during the final test evaluation
  again = loop.train(cfg, tmp_path / "killed")
  for results in (resumed, again):
    for key in ("steps", "best_step", "best_val_loss", "test_loss", "final_test_loss"):
      assert results[key] == straight[key], key
  for which in ("best", "final"):
    a, b = (loop.load_trained(tmp_path / run, which) for run in ("straight", "killed"))
    assert a.step == b.step
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_training_is_plain_jax_unless_asked(data_dir, tmp_path, monkeypatch):
  """By default no step is paced (even with the allocator settings in the environment) and the
  model is differentiated by JAX itself. An after_step hook runs after every train step and eval
  batch, with cpu_tuning's pacing it is recorded, and the numbers stay the same bit for bit."""
  from abcjax import cpu_tuning
  cfg = tiny_config(data_dir)
  for key, value in cpu_tuning.MALLOC_ENV.items():
    monkeypatch.setenv(key, value)
  paced = []
  real = cpu_tuning.finish_step
  monkeypatch.setattr(cpu_tuning, "finish_step", lambda out: (paced.append(1), real(out)))
  loop.train(cfg, tmp_path / "plain")
  assert not paced
  saved = json.loads((tmp_path / "plain" / "config.json").read_text())
  assert saved["config"]["model"]["cpu_backward"] is False
  assert (saved["paced_steps"], saved["after_step"], saved["malloc_tuned"]) == (False, None, True)

  outputs = []
  loop.train(cfg, tmp_path / "hooked", after_step=lambda out: (outputs.append(out), real(out)))
  assert read_losses(tmp_path / "plain") == read_losses(tmp_path / "hooked")
  # 24 train steps (their state) and the eval batches (their loss sums) of 2 validations, 2 tests.
  kinds = [type(o).__name__ for o in outputs]
  assert kinds.count("TrainState") == 24 and kinds[:12] == ["TrainState"] * 12
  assert kinds.count("tuple") >= 4 and kinds.count("tuple") + 24 == len(kinds)
  hooked = json.loads((tmp_path / "hooked" / "config.json").read_text())
  assert hooked["paced_steps"] is False and hooked["after_step"].endswith("<lambda>")

  monkeypatch.setattr(cpu_tuning, "finish_step", real)
  trainer = loop.Trainer(cfg, tmp_path / "paced", after_step=cpu_tuning.pacing())
  trainer.ckpt.close()
  record = json.loads((tmp_path / "paced" / "config.json").read_text())
  assert record["paced_steps"] == cpu_tuning.paces_steps()
  assert record["after_step"] == ("abcjax.cpu_tuning.finish_step" if record["paced_steps"] else None)


def test_finished_run_is_not_retrained(data_dir, tmp_path):
  cfg = tiny_config(data_dir, tokens=6 * 8 * 32)
  first = loop.train(cfg, tmp_path)
  mtime = (tmp_path / "metrics.jsonl").stat().st_mtime_ns
  assert loop.train(cfg, tmp_path) == first
  assert (tmp_path / "metrics.jsonl").stat().st_mtime_ns == mtime


def test_other_config_in_same_workdir_is_refused(data_dir, tmp_path):
  loop.train(tiny_config(data_dir, tokens=6 * 8 * 32), tmp_path)
  with pytest.raises(loop.ConfigMismatch, match=r"lr: saved 0.003 vs now 0.01"):
    loop.train(tiny_config(data_dir, tokens=6 * 8 * 32, lr=1e-2), tmp_path)


def test_resume_on_a_corpus_with_another_vocabulary_is_refused(data_dir, tmp_path):
  cfg = tiny_config(data_dir, tokens=6 * 8 * 32)
  loop.train(cfg, tmp_path / "run", max_steps=2)
  other = build_tiny_corpus(tmp_path / "other", count=60, seed=5)
  vocab = json.loads((other / "vocab.json").read_text())
  vocab["id_to_token"].append("~")  # one more character than the corpus trained on
  vocab["token_to_id"]["~"] = len(vocab["id_to_token"]) - 1
  (other / "vocab.json").write_text(json.dumps(vocab))
  with pytest.raises(loop.ConfigMismatch, match=r"vocabulary \(\d+ tokens\) is not that of"):
    loop.train(override(cfg, {"data.data_dir": str(other)}), tmp_path / "run")
  assert loop.train(cfg, tmp_path / "run")["finished"]  # the right corpus still resumes


@pytest.mark.parametrize("every", [1, 4])
def test_divergence_stops_with_last_good_checkpoint(data_dir, tmp_path, every):
  # every > 1: metrics stay on the device between syncs; a NaN is still caught at the next sync,
  # before anything is logged or checkpointed.
  cfg = tiny_config(data_dir, lr=1e12, warmup_frac=0.0, grad_clip=1e30, checkpoint_every=every,
                    log_every=every)
  with pytest.raises(loop.TrainingDiverged, match="last good checkpoint") as err:
    loop.train(cfg, tmp_path)
  assert int(err.value.args[0].split(" at step ")[1].split()[0]) <= 2 * every
  trainer = loop.Trainer(cfg, tmp_path)
  step = trainer.ckpt.latest_step()
  if every == 1:
    assert step is not None
  if step is not None:
    state = trainer.ckpt.restore(trainer.abstract_state)[0]
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  trainer.ckpt.close()
  losses = read_losses(tmp_path) if (tmp_path / "metrics.jsonl").exists() else []
  assert all(math.isfinite(l) for l in losses) and len(losses) == (step or 0) // every


def test_attention_kernel_is_a_runtime_field(data_dir):
  cfg = tiny_config(data_dir)
  saved = cfg.to_dict()
  assert config_mismatch(saved, tiny_config(data_dir, attention="xla")) == {}
  del saved["model"]["attention"]  # a run written before the field existed still resumes
  assert config_mismatch(saved, cfg) == {}
  with pytest.raises(ValueError, match="model.attention must be"):
    tiny_config(data_dir, attention="flash")


def test_cpu_backward_is_a_runtime_field(data_dir):
  """The same function either way: a run resumes with it on or off, or from before the field."""
  saved = tiny_config(data_dir).to_dict()
  assert config_mismatch(saved, tiny_config(data_dir, cpu_backward=True)) == {}
  del saved["model"]["cpu_backward"]
  assert config_mismatch(saved, tiny_config(data_dir, cpu_backward=True)) == {}
  assert override(tiny_config(data_dir), {"model.cpu_backward": "true"}).model.cpu_backward is True
  with pytest.raises(ValueError, match="cannot read it as bool"):
    override(tiny_config(data_dir), {"model.cpu_backward": "yes"})


_DEVICES_SCRIPT = """
import json, sys
import jax
from abcjax.train import loop
from abcjax.train.config import Config
cfg = Config.from_dict(json.loads(sys.argv[1]))
res = loop.train(cfg, sys.argv[2])
print(json.dumps({"devices": jax.device_count(), "val": res["best_val_loss"]}))
"""


def _script_env(devices=1):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))


def run_script(script, *args, devices=1):
  out = subprocess.run([sys.executable, "-c", script, *args], env=_script_env(devices),
                       capture_output=True, text=True, timeout=300, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_devices_match_one(data_dir, tmp_path):
  cfg = json.dumps(tiny_config(data_dir, tokens=8 * 8 * 32, eval_every=8).to_dict())
  one = run_script(_DEVICES_SCRIPT, cfg, str(tmp_path / "one"), devices=1)
  two = run_script(_DEVICES_SCRIPT, cfg, str(tmp_path / "two"), devices=2)
  assert (one["devices"], two["devices"]) == (1, 2)
  assert two["val"] == pytest.approx(one["val"], rel=1e-4)



_PROCESS_SCRIPT = """
import json, sys
import jax
from abcjax.train import distributed, loop
from abcjax.train.config import Config
cfg, workdir, address, pid, max_steps = sys.argv[1:]
distributed.initialize("on", address, 2, int(pid))
res = loop.train(Config.from_dict(json.loads(cfg)), workdir, max_steps=int(max_steps) or None)
print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                  "step": res.get("steps", res.get("step")), "val": res.get("best_val_loss")}))
"""


def run_two_processes(*args):
  """Runs _PROCESS_SCRIPT as processes 0 and 1 of one jax.distributed job on this machine."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    address = f"localhost:{s.getsockname()[1]}"
  procs = [subprocess.Popen([sys.executable, "-c", _PROCESS_SCRIPT, *args[:2], address, str(pid),
                             *args[2:]], env=_script_env(), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for pid in range(2)]
  outs = []
  for proc in procs:
    try:
      stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    assert proc.returncode == 0, stderr[-3000:]
    outs.append(json.loads(stdout.strip().splitlines()[-1]))
  return outs


def test_two_processes_match_one_and_resume(data_dir, tmp_path):
  # Orbax's barriers synchronise both processes at every save, evaluation steps included, and
  # at the deletion of steps it no longer keeps. The run stops at step 5 and resumes.
  cfg = json.dumps(tiny_config(data_dir, checkpoint_every=12).to_dict())
  one = run_script(_DEVICES_SCRIPT, cfg, str(tmp_path / "one"))
  first = run_two_processes(cfg, str(tmp_path / "two"), "5")
  assert [o["step"] for o in first] == [5, 5] and first[0]["processes"] == 2
  second = run_two_processes(cfg, str(tmp_path / "two"), "0")
  assert [o["step"] for o in second] == [24, 24] and second[0]["devices"] == 2
  assert second[0]["val"] == second[1]["val"] == pytest.approx(one["val"], rel=1e-4)


@pytest.mark.parametrize("change, field", [
    (dict(lr=-1.0), "opt.lr"), (dict(log_every=0), "run.log_every"), (dict(tokens=0), "data.tokens"),
    (dict(epochs=float("nan")), "data.epochs"), (dict(eval_batch_size=0), "eval.batch_size"),
    (dict(seed=-1), "run.seed"), (dict(dropout=1.0), "model.dropout"),
    (dict(checkpoint_every=-1), "run.checkpoint_every"), (dict(n_layer=-2), "model.n_layer")])
def test_bad_config_values_are_refused_by_name(data_dir, change, field):
  with pytest.raises(ValueError, match=rf"^{field} must be"):  # when the config is made
    tiny_config(data_dir, **change)


def test_custom_shape_trains_and_is_labelled_custom(data_dir, tmp_path):
  cfg = tiny_config(data_dir, n_layer=1, d_model=24, n_head=2, tokens=2 * 8 * 32)
  res = loop.train(cfg, tmp_path)  # the width given is the width trained
  assert (res["size"], res["n_layer"], res["d_model"], res["n_head"]) == ("custom", 1, 24, 2)
  with pytest.raises(ValueError, match="model has no field 'n_head' for the lstm family"):
    tiny_config(data_dir, arch="lstm", n_head=4)
  saved = tiny_config(data_dir).to_dict()
  assert config_mismatch(saved, tiny_config(data_dir)) == {}
  assert "model.n_layer" in config_mismatch(saved, tiny_config(data_dir, n_layer=4))


def test_stop_signal_saves_and_raises_run_stopped(data_dir, tmp_path, monkeypatch):
  import signal
  made = loop.step_lib.make_train_step

  def make_stopping_step(*args, **kwargs):
    step, calls = made(*args, **kwargs), []

    def stopping_step(state, batch):
      calls.append(1)
      if len(calls) == 3:  # as if Ctrl-C came during step 3
        signal.raise_signal(signal.SIGINT)
      return step(state, batch)
    return stopping_step

  monkeypatch.setattr(loop.step_lib, "make_train_step", make_stopping_step)
  cfg = tiny_config(data_dir)
  with pytest.raises(loop.RunStopped, match=r"SIGINT stopped .* at step 3 of 24") as info:
    loop.train(cfg, tmp_path / "run")
  assert info.value.signum == signal.SIGINT
  monkeypatch.undo()
  assert loop.train(cfg, tmp_path / "run")["steps"] == 24  # resumes from the step-3 checkpoint
  assert len(read_losses(tmp_path / "run")) == 24


def test_stop_signal_while_compiling_stops_before_the_first_step(data_dir, tmp_path, monkeypatch):
  # Ctrl-C while the state is built (or the step compiles) used to interrupt XLA's compiler, which
  # could crash the interpreter on its way out; now it is a stop request like any other.
  import signal
  restore = loop.Trainer._restore_or_init

  def interrupted_restore(self):
    signal.raise_signal(signal.SIGINT)
    return restore(self)

  monkeypatch.setattr(loop.Trainer, "_restore_or_init", interrupted_restore)
  cfg = tiny_config(data_dir)
  with pytest.raises(loop.RunStopped, match=r"SIGINT stopped .* at step 0 of 24, before a step"):
    loop.train(cfg, tmp_path / "run")
  assert not (tmp_path / "run" / "metrics.jsonl").exists() or not read_losses(tmp_path / "run")
  monkeypatch.undo()
  assert loop.train(cfg, tmp_path / "run")["steps"] == 24


def test_stop_signal_while_finishing_still_stops_the_command(data_dir, tmp_path, monkeypatch):
  import signal
  finish = loop.Trainer._finish

  def interrupted_finish(self, *args):
    signal.raise_signal(signal.SIGINT)
    return finish(self, *args)

  monkeypatch.setattr(loop.Trainer, "_finish", interrupted_finish)
  cfg = tiny_config(data_dir, tokens=4 * 8 * 32)
  with pytest.raises(loop.RunStopped, match=r"at step 4 of 4, saved"):
    loop.train(cfg, tmp_path / "run")
  monkeypatch.undo()
  assert loop.train(cfg, tmp_path / "run")["finished"]  # the finished run is kept, not retrained


def test_a_train_split_shorter_than_a_window_is_refused_before_anything_is_written(tmp_path):
  small = build_tiny_corpus(tmp_path / "small", count=3)
  with pytest.raises(ValueError, match=r"the train split of .* has \d+ tokens, fewer than block_size"):
    loop.train(tiny_config(small, block_size=512), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_run_loads_without_its_corpus_and_keeps_its_record(data_dir, tmp_path, monkeypatch):
  import shutil
  corpus_copy = tmp_path / "corpus"
  shutil.copytree(data_dir, corpus_copy)
  monkeypatch.chdir(tmp_path)
  cfg = tiny_config("corpus", tokens=2 * 8 * 32)  # a relative --data_dir
  loop.train(cfg, "run")
  record = json.loads((tmp_path / "run" / "config.json").read_text())
  assert record["data_dir"] == str(corpus_copy.resolve())
  # A finished run keeps its record when it is asked for again with another corpus folder.
  loop.train(override(cfg, {"data.data_dir": str(data_dir)}), "run")
  assert json.loads((tmp_path / "run" / "config.json").read_text()) == record
  shutil.rmtree(corpus_copy)  # the corpus moved away: the run's own vocab.json still loads it
  trained = loop.load_trained(tmp_path / "run", "best")
  assert trained.vocab.id_to_token == json.loads((data_dir / "vocab.json").read_text())["id_to_token"]
  assert loop.load_trained(tmp_path / "run", "best", data_dir=data_dir).data_dir == data_dir


def test_eval_batch_size_is_global_over_processes(data_dir, tmp_path, monkeypatch):
  """eval.batch_size, like data.batch_size, is the global batch: with two processes each walks
  half of it (as jax.distributed would give them), so both evaluate the same split once."""
  trainer = loop.Trainer(tiny_config(data_dir, eval_batch_size=8), tmp_path)
  seen = []
  real = loop.loader.eval_batches

  def recording(tokens, **kw):
    seen.append((kw["batch_size"], kw["process_index"], kw["process_count"]))
    return real(tokens, **kw)

  monkeypatch.setattr(loop.loader, "eval_batches", recording)
  params = trainer.abstract_state.params
  params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), params)
  one = trainer.evaluate(params, "val")
  monkeypatch.setattr(loop.jax, "process_count", lambda: 2)
  monkeypatch.setattr(trainer, "eval_step", lambda p, b, w: (np.float32(0), np.float32(0)))
  try:
    trainer.evaluate(params, "val")
  except ValueError:
    pass  # the stubbed step counts no tokens; only the batch split is checked here
  assert seen[0][:1] == (8,) and seen[1] == (4, 0, 2)
  assert one["tokens"] > 0
  trainer.ckpt.close()
