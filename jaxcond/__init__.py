"""jaxcond: dataset condensation by distribution matching (DM, M3D, DDM) in JAX.

Importing the package is cheap: submodules load on first attribute access, so
`from jaxcond import mmd` pulls in jax and nothing heavier (no TFDS, no orbax).
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "mmd", "nets", "augment", "synthetic", "objectives", "data", "parallel",
    "condense", "evaluate", "checkpoint", "report", "bench", "configs", "backend",
    "synthetic_io", "export", "progress",
)


def load(path, **expect):
  """Reads a `synthetic.npz` written by `jaxcond.condense` (no shapes or config needed):
  `jaxcond.load("runs/x/synthetic.npz").x` -> [N, H, W, ch] normalised images, `.y` labels,
  `.class_names`, `.pixels()` uint8. See `jaxcond.synthetic_io`."""
  from jaxcond import synthetic_io  # pylint: disable=g-import-not-at-top
  return synthetic_io.load(path, **expect)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"jaxcond.{name}")
  raise AttributeError(f"module 'jaxcond' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))
