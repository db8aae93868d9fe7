"""A pool of trained feature nets on disk: what `python -m jaxcond.pool` writes and what
condensation reads (`pool.path`; DANCE arXiv 2406.01063, NCFM arXiv 2502.20653).

    POOL/pool.json          the manifest, written last: a pool without it is unfinished
    POOL/nets/000/init      net 0's variables right after construction (orbax)
    POOL/nets/000/final     net 0's variables after the last epoch (orbax)
    ...

The manifest records the model, the dataset, the training settings, each net's training
accuracy and the pool's `content_hash`: sha256 over every net's initial and final arrays
(`content_hash`), recomputed when the pool is read, so a condensation's trajectory names
exactly the weights it used and a resume with another pool is refused.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

import jax
import numpy as np

from jaxcond import files
from jaxcond.errors import ConfigError, DataError

MANIFEST = "pool.json"
FORMAT = "jaxcond-pool/1"
KINDS = ("init", "final")


def net_dir(path: str, i: int, kind: str) -> str:
  """POOL/nets/<i>/<kind>: one net's variables (`kind` init | final)."""
  return os.path.join(os.path.abspath(os.fspath(path)), "nets", f"{i:03d}", kind)


def _leaves(tree) -> list[tuple[str, np.ndarray]]:
  """(path, array) of a variables tree in a fixed order (sorted dict keys)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(p), np.asarray(a)) for p, a in flat]


def content_hash(inits: Sequence[Any], finals: Sequence[Any]) -> str:
  """sha256 (hex) over net 0's initial then final arrays, net 1's, ...: each leaf's path,
  dtype, shape and little-endian bytes."""
  h = hashlib.sha256()
  for i, (init, final) in enumerate(zip(inits, finals)):
    for kind, tree in (("init", init), ("final", final)):
      h.update(f"net {i} {kind}\n".encode())
      for name, a in _leaves(tree):
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(f"{name} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())
  return h.hexdigest()


def save_net(path: str, i: int, kind: str, variables) -> None:
  """Writes one net's variables (numpy or jax arrays) to `net_dir` with orbax."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  target = net_dir(path, i, kind)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(target, jax.tree.map(np.asarray, variables), force=True)
  ckpt.wait_until_finished()
  ckpt.close()


def load_net(path: str, i: int, kind: str):
  """One net's variables as numpy arrays (a plain dict tree)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  target = net_dir(path, i, kind)
  if not os.path.isdir(target):
    raise DataError(f"pool.path: {target} is missing; the pool is incomplete")
  ckpt = ocp.StandardCheckpointer()
  try:
    tree = ckpt.restore(target)
  finally:
    ckpt.close()
  return jax.tree.map(np.asarray, _plain(tree))


def _plain(tree):
  if isinstance(tree, dict) or hasattr(tree, "items"):
    return {str(k): _plain(v) for k, v in tree.items()}
  return tree


def write_manifest(path: str, record: dict) -> str:
  return files.write_json(os.path.join(os.fspath(path), MANIFEST), {"format": FORMAT,
                                                                    **record})


def read_manifest(path: str) -> dict:
  """The manifest of the pool at `path`; one-line ConfigError when there is none."""
  path = os.path.abspath(os.fspath(path))
  f = os.path.join(path, MANIFEST)
  if not os.path.exists(f):
    what = "does not exist" if not os.path.exists(path) else f"holds no {MANIFEST}"
    raise ConfigError(f"pool.path: {path} {what} (a finished pool of "
                      f"`python -m jaxcond.pool --workdir {path}`)")
  try:
    record = files.read_json(f)
  except ValueError as err:
    raise DataError(f"pool.path: {f} is not valid JSON ({err})") from None
  if record.get("format") != FORMAT:
    raise DataError(f"pool.path: {f} is not a {FORMAT} manifest "
                    f"(format {record.get('format')!r})")
  return record


def planned_size(path: str, size: int) -> int:
  """Nets of the pool `path` points at, for planning from shapes: the manifest's count when
  the pool exists, else `size` (`pool.size`); 0 without a path."""
  if not path:
    return 0
  if os.path.exists(os.path.join(os.fspath(path), MANIFEST)):
    return int(read_manifest(path)["size"])
  return int(size)


def load(path: str, *, model: dict | None = None) -> tuple[dict, dict]:
  """({"init": variables, "final": variables} stacked over the nets as numpy [P, ...],
  manifest). Checks the recomputed content hash against the manifest (DataError: the files
  changed) and, with `model` (the manifest's "model" entry this run would write: name,
  overrides, num_classes, image_shape), that the pool was trained with that net
  (ConfigError naming pool.path)."""
  manifest = read_manifest(path)
  if model is not None:
    trained = {k: manifest["model"].get(k) for k in model}
    if jsonable(trained) != jsonable(model):
      raise ConfigError(f"pool.path: {path} holds nets {_describe(manifest['model'])}; this "
                        f"run's net is {_describe(model)} (train a pool with this config)")
  n = int(manifest["size"])
  nets = {kind: [load_net(path, i, kind) for i in range(n)] for kind in KINDS}
  got = content_hash(nets["init"], nets["final"])
  if got != manifest["content_hash"]:
    raise DataError(f"pool.path: the weights in {path} do not match its manifest (content "
                    f"hash {got[:16]}..., manifest {manifest['content_hash'][:16]}...); the "
                    f"files changed after training")
  stacked = {kind: jax.tree.map(lambda *a: np.stack(a), *nets[kind]) for kind in KINDS}
  return stacked, manifest


def jsonable(x):
  """Tuples as lists, for comparing a record with what JSON gave back."""
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  return x


def _describe(m: dict) -> str:
  over = dict(m.get("overrides") or {})
  extra = (" " + ", ".join(f"{k} {v}" for k, v in sorted(over.items()))) if over else ""
  return (f"{m.get('name')}{extra} for {m.get('num_classes')} classes of "
          f"{'x'.join(str(v) for v in m.get('image_shape') or ())} images")
