"""CPU tuning: the allocator settings and the entry points' one-time restart, step pacing, and the
backward-pass choice; and that none of it is on unless asked for."""

import os
import pathlib
import platform
import subprocess
import sys

import pytest

from abcjax import cpu_tuning

REPO = pathlib.Path(__file__).resolve().parents[1]
KEYS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
ENTRY = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
print("start", os.getpid(), flush=True)
from abcjax import cpu_tuning
cpu_tuning.reexec_with_tuned_malloc(__name__, __file__)
print("env", *[os.environ.get(k) for k in {KEYS!r}], sys.argv[1:], flush=True)
"""
HOST = """
import runpy, sys
print("host", flush=True)
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.fixture()
def programs(tmp_path):
  (tmp_path / "pkg").mkdir()
  (tmp_path / "pkg" / "__init__.py").write_text("")
  (tmp_path / "pkg" / "entry.py").write_text(ENTRY)
  (tmp_path / "host.py").write_text(HOST)
  return tmp_path


def run(args, cwd, **env_changes):
  env = cpu_tuning.untuned_environ()
  env.pop(cpu_tuning.OPT_OUT, None)
  env.pop("ABCJAX_MALLOC_RESTARTED", None)
  env.update(env_changes)
  done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                        cwd=cwd, timeout=60)
  assert done.returncode == 0, done.stderr[-2000:]
  return [(line + " ").split(" ", 1) for line in done.stdout.splitlines()]


def expect_restart(lines):
  """Two starts in one process, then the settings and the same arguments."""
  if not cpu_tuning.applies():  # not glibc, or an accelerator here: nothing to tune
    assert [kind for kind, _ in lines] == ["start", "env"]
    return
  assert [kind for kind, _ in lines] == ["start", "start", "env"]
  assert lines[0][1] == lines[1][1]  # same pid: exec, not a child
  assert lines[2][1].strip() == " ".join(cpu_tuning.MALLOC_ENV[k] for k in KEYS) + " ['--flag=1']"


def expect_no_restart(lines, kinds=("start", "env")):
  assert [kind for kind, _ in lines] == list(kinds)
  assert lines[-1][1].startswith("None None None ")


def test_environment_helpers_keep_the_users_values():
  base = {"PATH": "/bin", "MALLOC_ARENA_MAX": "4"}
  tuned = cpu_tuning.tuned_environ(base)
  assert tuned["MALLOC_ARENA_MAX"] == "4" and tuned["PATH"] == "/bin"
  assert cpu_tuning.is_tuned(tuned) and not cpu_tuning.is_tuned(base)
  assert cpu_tuning.untuned_environ(tuned) == {"PATH": "/bin"}


def test_a_script_restarts_once_with_the_settings(programs):
  expect_restart(run([str(programs / "pkg" / "entry.py"), "--flag=1"], programs))


def test_a_module_restarts_once_with_the_settings(programs):
  expect_restart(run(["-W", "ignore", "-m", "pkg.entry", "--flag=1"], programs))


def test_host_programs_and_opt_out_are_not_restarted(programs):
  entry = str(programs / "pkg" / "entry.py")
  # runpy inside another program (as IPython's %run or a debugger would): the host stays.
  expect_no_restart(run([str(programs / "host.py"), entry, "--flag=1"], programs),
                    kinds=("host", "start", "env"))
  if cpu_tuning.applies():
    expect_no_restart(run([entry, "--flag=1"], programs, **{cpu_tuning.OPT_OUT: "0"}))


def test_imports_do_not_restart(monkeypatch):
  def fail(*args):
    raise AssertionError(f"execve called: {args}")
  monkeypatch.setattr(os, "execve", fail)
  cpu_tuning.reexec_with_tuned_malloc("experiments.scaling", str(REPO / "experiments" / "scaling.py"))


def test_steps_are_paced_only_on_cpu_with_the_kept_heap(monkeypatch):
  import jax
  for key in KEYS:
    monkeypatch.delenv(key, raising=False)
  assert not cpu_tuning.paces_steps()
  for key, value in cpu_tuning.MALLOC_ENV.items():
    monkeypatch.setenv(key, value)
  assert cpu_tuning.paces_steps() == (jax.default_backend() == "cpu" and sys.platform == "linux"
                                   and platform.libc_ver()[0] == "glibc")


def test_finish_step_waits_for_the_outputs_then_yields(monkeypatch):
  import jax
  events = []
  monkeypatch.setattr(jax, "block_until_ready", lambda x: events.append(("wait", x)))
  monkeypatch.setattr(cpu_tuning.time, "sleep", lambda s: events.append(("sleep", s)))
  cpu_tuning.finish_step("outputs")
  assert events == [("wait", "outputs"), ("sleep", cpu_tuning.STEP_GAP_S)]


def test_pacing_is_finish_step_where_steps_are_paced(monkeypatch):
  for key in KEYS:
    monkeypatch.delenv(key, raising=False)
  assert cpu_tuning.pacing() is None
  for key, value in cpu_tuning.MALLOC_ENV.items():
    monkeypatch.setenv(key, value)
  assert cpu_tuning.pacing() is (cpu_tuning.finish_step if cpu_tuning.paces_steps() else None)


def test_cpu_backward_on_one_cpu_device_only(monkeypatch):
  import jax
  assert cpu_tuning.cpu_backward() == (jax.default_backend() == "cpu" and jax.device_count() == 1)
  monkeypatch.setattr(jax, "device_count", lambda *a: 2)
  assert not cpu_tuning.cpu_backward()
  monkeypatch.setattr(jax, "device_count", lambda *a: 1)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not cpu_tuning.cpu_backward()


LIBRARY_USER = """
import os, sys
sys.path.insert(0, {repo!r})
os.execve = lambda *args: sys.exit("execve called")
import abcjax, abcjax.benchmark, abcjax.scaling.sweep, abcjax.train.loop
from abcjax.models import get_config
from abcjax.train import presets
print(*[os.environ.get(k) for k in {keys!r}], presets.make("cpu", "gpt", "tiny").model.cpu_backward,
      get_config("gpt", "tiny", vocab_size=9).cpu_backward)
"""


def test_importing_the_library_tunes_nothing(tmp_path):
  """A program that imports abcjax runs as it was started: no restart, no allocator settings,
  and configs that ask for JAX's own backward passes."""
  script = tmp_path / "user.py"
  script.write_text(LIBRARY_USER.format(repo=str(REPO), keys=KEYS))
  assert run([str(script)], tmp_path) == [["None", "None None False False "]]
