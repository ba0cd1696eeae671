"""The entry points as a user meets them: bad input is one line naming the flag, not a traceback."""

import pathlib
import signal
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(*args, timeout=300):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.parametrize("module, flags, message", [
    ("scaling", ["--config.model.size=xl"], "config.model.size: a size name comes with its shape"),
    ("scaling", ["--config.model.n_layer=4"], "model.n_layer is set by --sizes here"),
    ("best_model", ["--config.data.epochs=-1"], "data.epochs must be a positive number, got -1.0"),
    ("scaling", ["--config.opt.lr=-0.1"], "opt.lr must be a positive number, got -0.1"),
    ("scaling", ["--config.opt.lr=fast"], "config.opt.lr='fast': cannot read it as float"),
    ("best_model", ["--arch=lstm", "--config.model.n_head=4"],
     "config.model.n_head: model has no field 'n_head' for the lstm family"),
    ("prepare_data", ["--max_files=0"], "--max_files must be 1 or more (None: every file), got 0"),
    ("prepare_data", ["--source=abc_dir", "--input_dir=/no/such/folder"], "/no/such/folder"),
])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, module, flags, message):
  proc = run("-m", f"experiments.{module}", f"--workdir={tmp_path / 'w'}", *flags) \
      if module != "prepare_data" else run("-m", f"experiments.{module}",
                                           f"--out_dir={tmp_path / 'c'}", *flags)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert message in proc.stderr and "Traceback" not in proc.stderr
  assert proc.stderr.startswith("error: ") or "\nerror: " in proc.stderr


_STOPPED = """
import pathlib
from experiments import cli
from abcjax.train.errors import RunStopped

def main(argv):
  raise RunStopped(pathlib.Path("runs/x"), 3, 24, {signum})

cli.run(main)
"""


def test_a_misspelt_config_field_is_an_unknown_flag(tmp_path):
  proc = run("-m", "experiments.scaling", f"--workdir={tmp_path}", "--config.opt.lrate=1")
  assert proc.returncode == 1 and "Unknown command line flag 'config.opt.lrate'" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_exits_as_its_signal_says(signum):
  proc = run("-c", _STOPPED.format(signum=int(signum)))
  assert proc.returncode == 128 + signum
  assert f"stopped: {signal.Signals(signum).name} stopped runs/x at step 3 of 24" in proc.stderr
  assert "Traceback" not in proc.stderr


_BUG = """
from experiments import cli

def main(argv):
  a, b = (1, 2, 3)  # a bug, not a user's mistake: its traceback stays

cli.run(main)
"""


def test_a_bug_keeps_its_traceback():
  proc = run("-c", _BUG)
  assert proc.returncode == 1 and "Traceback" in proc.stderr
  assert "ValueError: too many values to unpack" in proc.stderr


_SLEEPER = """
import pathlib, sys, time
from experiments import cli

def main(argv):
  spool = pathlib.Path(sys.argv[1])
  spool.write_text("half built")
  try:
    print("ready", flush=True)
    time.sleep(60)
  finally:
    spool.unlink()  # a build's cleanup, which SIGTERM must not skip

cli.run(main, unwind_sigterm=True)
"""


def test_sigterm_outside_training_unwinds_and_exits_143(tmp_path):
  spool = tmp_path / "spool"
  proc = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(spool)], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  assert proc.stdout.readline().strip() == "ready"
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 143 and "terminated" in stderr
  assert not spool.exists()
