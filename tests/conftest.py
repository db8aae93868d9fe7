"""Shared test setup: 8 fake CPU devices so sharding is exercised on any machine, one
persistent XLA compilation cache per test run, and the `experiment` fixture (a config as
`--config experiments/<file>.py:<arg>` gives it).

Many tests compile the same step (a resumed run, a second process, the same tiny config
under another workdir): jax's in-memory cache is keyed on the Python function, so each of
them compiled again. The persistent cache is keyed on the compiled program itself, so it is
exact: a hit returns the executable the miss built. It lives for one run (one directory
per run, shared by the xdist workers and the subprocesses they start); set
JAX_COMPILATION_CACHE_DIR to choose it, or JAXCOND_TEST_COMPILE_CACHE=0 to switch it off.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile

if os.environ.get("JAXCOND_TEST_COMPILE_CACHE", "1") != "0":
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # PYTEST_XDIST_TESTRUNUID is the same in every worker of one run; without xdist this
    # process owns the directory and removes it at the end (pytest_unconfigure).
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(), f"jaxcond-test-xla-cache-{run_id or os.getpid()}")
    os.environ["JAXCOND_TEST_CACHE_OWNER"] = run_id or str(os.getpid())
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", False)

from jaxcond import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SHARED_DATA = pathlib.Path(
    os.environ.get("JAXCOND_SHARED_DATA",
                   pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data():
  """Path to ../shared/data; skips with a message when the folder is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real-data folder {SHARED_DATA} not found (set JAXCOND_SHARED_DATA)")
  return SHARED_DATA


def load_experiment(spec: str, overrides=()):
  """`"cifar10.py:method=dm,ipc=10"` -> the ConfigDict of `--config experiments/<spec>`
  (`cli.load_config`, so tests read the experiment files exactly as the programs do)."""
  return cli.load_config(str(EXPERIMENTS / spec), overrides)


@pytest.fixture
def experiment():
  """`experiment("quickstart.py:method=m3d")` -> ConfigDict (`load_experiment`)."""
  return load_experiment


def sigterm_on_call(monkeypatch, owner, name: str, n: int) -> None:
  """Replaces `owner.name` so that its `n`-th call first sends SIGTERM to this process (a
  preemption notice arriving while that piece of work runs), then does its work."""
  real = getattr(owner, name)
  calls = []

  def signalled(*a, **k):
    calls.append(1)
    if len(calls) == n:
      os.kill(os.getpid(), signal.SIGTERM)
    return real(*a, **k)
  monkeypatch.setattr(owner, name, signalled)


# ------------------------------------------------------------------ programs in subprocesses

def subprocess_env(num_devices=1, **extra):
  """The environment of a program started by a test: this checkout first on the path,
  `num_devices` fake CPU devices, plus `extra` variables."""
  env = dict(os.environ)
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_NUM_CPU_DEVICES"] = str(num_devices)
  env["JAX_PLATFORMS"] = "cpu"
  env.update(extra)
  return env


def start_processes(args_per_process, *, num_devices=2):
  """The multi-process CPU harness: one program per argument list, all joined through one
  coordinator on a free local port (`--coordinator_address`, `--num_processes`,
  `--process_id` added), each with `num_devices` fake devices; returns the Popen objects
  (stdout and stderr piped apart; collect them with `communicate`)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  n = len(args_per_process)
  return [subprocess.Popen(
      [*args, f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={n}",
       f"--process_id={pid}"], cwd=ROOT, env=subprocess_env(num_devices=num_devices),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for pid, args in enumerate(args_per_process)]


def communicate(procs, timeout=600):
  """[(stdout, stderr)] of every process; kills those still running if one times out."""
  try:
    return [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def pytest_unconfigure(config):
  """Removes this run's compilation cache (the xdist controller, or a run without xdist)."""
  if hasattr(config, "workerinput"):
    return                      # an xdist worker: the controller cleans up
  owner = os.environ.get("JAXCOND_TEST_CACHE_OWNER")
  path = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
  if owner and os.path.basename(path).endswith(owner):
    shutil.rmtree(path, ignore_errors=True)
