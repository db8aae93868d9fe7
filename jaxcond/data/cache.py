"""Decoded-array cache: decoding 60k JPEGs once is enough.

Files live in `$JAXCOND_CACHE` (default `~/.cache/jaxcond`) as uncompressed `.npz`, named by
a hash of everything that determines their content (source path, size, mtime, resolution,
channels, class list, format version). A cache that cannot be written or read is skipped,
never an error: the data are decoded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
import warnings
from typing import Callable, Optional

import numpy as np

FORMAT_VERSION = 1


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("JAXCOND_CACHE") or
                      pathlib.Path.home() / ".cache" / "jaxcond").expanduser()


def file_identity(path) -> dict:
  """Path, size and mtime: changes whenever the file is replaced or edited."""
  p = pathlib.Path(path).resolve()
  st = p.stat()
  return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_path(kind: str, ident: dict) -> pathlib.Path:
  blob = json.dumps({**ident, "v": FORMAT_VERSION}, sort_keys=True, default=str)
  digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
  return cache_dir() / f"{kind}-{digest}.npz"


def load(path: pathlib.Path) -> Optional[dict]:
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except Exception as e:  # a half-written or foreign file: decode again
    warnings.warn(f"jaxcond: ignoring unreadable cache file {path} ({e})")
    return None


def save(path: pathlib.Path, arrays: dict) -> None:
  """Atomic write (temp file + rename) so concurrent readers never see half a file."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except OSError as e:
    warnings.warn(f"jaxcond: could not write cache file {path} ({e})")


def cached(kind: str, ident: dict, compute: Callable[[], dict], enabled: bool = True) -> dict:
  """Return `compute()`'s dict of arrays, read from / written to the cache when enabled."""
  if not enabled:
    return compute()
  path = cache_path(kind, ident)
  hit = load(path)
  if hit is not None:
    return hit
  out = compute()
  save(path, out)
  return out
