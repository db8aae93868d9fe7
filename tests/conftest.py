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

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
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


def pytest_unconfigure(config):
  """Removes this run's compilation cache (the xdist controller, or a run without xdist)."""
  if hasattr(config, "workerinput"):
    return                      # an xdist worker: the controller cleans up
  owner = os.environ.get("JAXCOND_TEST_CACHE_OWNER")
  path = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
  if owner and os.path.basename(path).endswith(owner):
    shutil.rmtree(path, ignore_errors=True)
