"""Allocator settings: the environment helpers and the entry points' one-time restart."""

import os
import pathlib
import platform
import subprocess
import sys

import pytest

from abcjax import hostmem

REPO = pathlib.Path(__file__).resolve().parents[1]
KEYS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
ENTRY = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
print("start", os.getpid(), flush=True)
from abcjax import hostmem
hostmem.reexec_with_tuned_malloc(__name__, __file__)
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
  env = hostmem.untuned_environ()
  env.pop(hostmem.OPT_OUT, None)
  env.pop("ABCJAX_MALLOC_RESTARTED", None)
  env.update(env_changes)
  done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                        cwd=cwd, timeout=60)
  assert done.returncode == 0, done.stderr[-2000:]
  return [(line + " ").split(" ", 1) for line in done.stdout.splitlines()]


def expect_restart(lines):
  """Two starts in one process, then the settings and the same arguments."""
  if not hostmem.applies():  # not glibc, or an accelerator here: nothing to tune
    assert [kind for kind, _ in lines] == ["start", "env"]
    return
  assert [kind for kind, _ in lines] == ["start", "start", "env"]
  assert lines[0][1] == lines[1][1]  # same pid: exec, not a child
  assert lines[2][1].strip() == " ".join(hostmem.MALLOC_ENV[k] for k in KEYS) + " ['--flag=1']"


def expect_no_restart(lines, kinds=("start", "env")):
  assert [kind for kind, _ in lines] == list(kinds)
  assert lines[-1][1].startswith("None None None ")


def test_environment_helpers_keep_the_users_values():
  base = {"PATH": "/bin", "MALLOC_ARENA_MAX": "4"}
  tuned = hostmem.tuned_environ(base)
  assert tuned["MALLOC_ARENA_MAX"] == "4" and tuned["PATH"] == "/bin"
  assert hostmem.is_tuned(tuned) and not hostmem.is_tuned(base)
  assert hostmem.untuned_environ(tuned) == {"PATH": "/bin"}


def test_a_script_restarts_once_with_the_settings(programs):
  expect_restart(run([str(programs / "pkg" / "entry.py"), "--flag=1"], programs))


def test_a_module_restarts_once_with_the_settings(programs):
  expect_restart(run(["-W", "ignore", "-m", "pkg.entry", "--flag=1"], programs))


def test_host_programs_and_opt_out_are_not_restarted(programs):
  entry = str(programs / "pkg" / "entry.py")
  # runpy inside another program (as IPython's %run or a debugger would): the host stays.
  expect_no_restart(run([str(programs / "host.py"), entry, "--flag=1"], programs),
                    kinds=("host", "start", "env"))
  if hostmem.applies():
    expect_no_restart(run([entry, "--flag=1"], programs, **{hostmem.OPT_OUT: "0"}))


def test_imports_do_not_restart(monkeypatch):
  def fail(*args):
    raise AssertionError(f"execve called: {args}")
  monkeypatch.setattr(os, "execve", fail)
  hostmem.reexec_with_tuned_malloc("experiments.scaling", str(REPO / "experiments" / "scaling.py"))


def test_steps_are_paced_only_on_cpu_with_the_kept_heap(monkeypatch):
  import jax
  for key in KEYS:
    monkeypatch.delenv(key, raising=False)
  assert not hostmem.paces_steps()
  for key, value in hostmem.MALLOC_ENV.items():
    monkeypatch.setenv(key, value)
  assert hostmem.paces_steps() == (jax.default_backend() == "cpu" and sys.platform == "linux"
                                   and platform.libc_ver()[0] == "glibc")


def test_finish_step_waits_for_the_outputs_then_yields(monkeypatch):
  import jax
  events = []
  monkeypatch.setattr(jax, "block_until_ready", lambda x: events.append(("wait", x)))
  monkeypatch.setattr(hostmem.time, "sleep", lambda s: events.append(("sleep", s)))
  hostmem.finish_step("outputs")
  assert events == [("wait", "outputs"), ("sleep", hostmem.STEP_GAP_S)]
