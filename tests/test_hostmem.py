"""Allocator settings: the environment helpers and the entry points' one-time restart."""

import os
import subprocess
import sys

from abcjax import hostmem

_PROBE = ("import os, sys; from abcjax import hostmem; pid = os.getpid(); "
          "hostmem.reexec_with_tuned_malloc('__main__'); "
          "print(os.environ.get('MALLOC_ARENA_MAX'), os.environ.get('MALLOC_MMAP_MAX_'), "
          "os.environ.get('MALLOC_TRIM_THRESHOLD_'), sys.argv[1:])")


def _run_probe(env):
  return subprocess.run([sys.executable, "-c", _PROBE, "--flag=1"], capture_output=True, text=True,
                        env=env, check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout.split()


def test_environment_helpers_keep_the_users_values():
  base = {"PATH": "/bin", "MALLOC_ARENA_MAX": "4"}
  tuned = hostmem.tuned_environ(base)
  assert tuned["MALLOC_ARENA_MAX"] == "4" and tuned["PATH"] == "/bin"
  assert hostmem.is_tuned(tuned) and not hostmem.is_tuned(base)
  assert hostmem.untuned_environ(tuned) == {"PATH": "/bin"}


def test_entry_point_restarts_once_with_the_settings():
  env = hostmem.untuned_environ()
  env.pop(hostmem.OPT_OUT, None)
  out = _run_probe(env)
  if not hostmem.applies():  # not glibc: nothing to tune, nothing restarted
    assert out[:3] == ["None"] * 3
    return
  assert out[:3] == [hostmem.MALLOC_ENV[k] for k in
                     ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")]
  assert out[3] == "['--flag=1']"  # same arguments after the restart


def test_opt_out_and_imports_do_not_restart():
  env = {**hostmem.untuned_environ(), hostmem.OPT_OUT: "0"}
  assert _run_probe(env)[:3] == ["None"] * 3
  before = dict(os.environ)
  hostmem.reexec_with_tuned_malloc("experiments.scaling")  # imported, not run: returns
  assert dict(os.environ) == before
