"""jaxcond: dataset condensation by distribution matching (DM, M3D, DDM) in JAX.

Importing the package is cheap: submodules load on first attribute access, so
`from jaxcond import mmd` pulls in jax and nothing heavier (no TFDS, no orbax).
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "mmd", "nets", "augment", "synthetic", "objectives", "data", "parallel",
    "condense", "evaluate", "checkpoint", "report", "bench", "configs",
)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"jaxcond.{name}")
  raise AttributeError(f"module 'jaxcond' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))
