"""Shared test setup: 8 fake CPU devices so sharding is exercised on any machine."""
import os
import pathlib

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", False)

SHARED_DATA = pathlib.Path(
    os.environ.get("JAXCOND_SHARED_DATA",
                   pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data():
  """Path to ../shared/data; skips with a message when the folder is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real-data folder {SHARED_DATA} not found (set JAXCOND_SHARED_DATA)")
  return SHARED_DATA
