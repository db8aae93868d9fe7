"""Orbax checkpoints of the condensation state: save, find the latest, restore, and tell
a damaged checkpoint from a good one.

A checkpoint at step `s` holds the state *after* `s` updates: the synthetic pixels, the
optimiser (momentum) state and a JSON `meta` item (step, config hash, the fields that
define the trajectory, versions, and a checksum of every array). Everything else a step
needs is a pure function of `(seed, step)` (`jaxcond.rng`), so restoring the state and
continuing at step `s` reproduces an uninterrupted run exactly.

Saves are asynchronous (orbax `CheckpointManager`, v0 API): `save` returns once the
arrays are copied off the device; call `wait()` before reading the directory or exiting.
Partially written checkpoints (a process killed mid-save) live in temporary folders that
orbax never reports as steps, so an interrupted save is never used. A save the storage
refuses (full disk, quota, read-only, permission lost) raises `files.StorageError`; the
previous checkpoints stay as they were.

A finished checkpoint can still be damaged afterwards (a file truncated or overwritten
by a dying machine, a metadata file lost). Such a checkpoint either fails to restore, or
restores other numbers than were saved: tensorstore does not check array bytes, so the
`checksums` stored in `meta` (two 32-bit sums of each array's bits, one weighted by the
element's position) are compared after every restore, and a mismatch is `DamagedError`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcond import files
from jaxcond.errors import JaxcondError


class DamagedError(JaxcondError):
  """A checkpoint's files do not restore, or restore other values than were saved."""


class _QuietOrbax(logging.Filter):
  """Orbax logs a failed background save with its traceback before the error reaches
  `wait()`, and warns about each missing file of a damaged checkpoint; the caller reports
  both in one line, so these records are dropped (errors always, warnings while a
  checkpoint is being restored)."""

  def __init__(self):
    super().__init__()
    self.level = logging.ERROR

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.levelno >= self.level and "orbax" in (record.pathname or ""))


_QUIET = _QuietOrbax()


def _unraisable(hook):
  """A `sys.unraisablehook` that drops the "Event loop is closed" RuntimeError a failed
  tensorstore read leaves behind in orbax's asyncio callbacks (a traceback with no use
  after the restore error was reported), and passes everything else to `hook`."""
  def quiet(unraisable):
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
      return
    hook(unraisable)
  quiet.jaxcond_quiet = True
  return quiet


@contextlib.contextmanager
def _restoring():
  """Orbax's warnings about a damaged checkpoint's files stay quiet while restoring."""
  old, _QUIET.level = _QUIET.level, logging.WARNING
  try:
    yield
  finally:
    _QUIET.level = old


class Checkpointer:
  """Thin wrapper over `orbax.checkpoint.CheckpointManager` for `{state, meta}` items.

  `directory` may be a local path or a bucket URL (`gs://...`)."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               async_save: bool = True):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self.directory = files.absolute(directory)
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep if max_to_keep > 0 else None,
        enable_async_checkpointing=async_save, create=True,
        cleanup_tmp_directories=True)
    absl_logger = logging.getLogger("absl")
    if _QUIET not in absl_logger.filters:
      absl_logger.addFilter(_QUIET)
    if not getattr(sys.unraisablehook, "jaxcond_quiet", False):
      sys.unraisablehook = _unraisable(sys.unraisablehook)
    self._pending: int | None = None      # step of the save not known to be finished
    # A failed save, kept: orbax reports an async failure once, and a later wait must not
    # take that save for finished (the run would name a checkpoint that is not there).
    self._failed: files.StorageError | None = None
    self._manager = self._open()

  def _open(self):
    ocp = self._ocp
    try:
      with _restoring():
        return ocp.CheckpointManager(
            self.directory, options=self._options,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})
    except OSError as err:
      if files.storage_errno(err) is None:
        raise
      raise files.StorageError(f"cannot open the checkpoints in {self.directory}: "
                               f"{files.describe(err)}") from None

  def reload(self) -> None:
    """Re-reads the directory (after a checkpoint was moved aside)."""
    with _restoring():
      self._manager.reload()

  def all_steps(self) -> list[int]:
    with _restoring():
      return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    with _restoring():
      return self._manager.latest_step()

  def step_dir(self, step: int) -> str:
    return files.join(self.directory, str(int(step)))

  # -- saving
  def _guard(self, fn, step: int | None):
    """`fn()` (a save, or the wait for one); a refusal of the storage becomes a
    StorageError that is kept, so every later save or wait raises it again."""
    try:
      return fn()
    except Exception as err:  # pylint: disable=broad-except  (orbax / tensorstore errors)
      if files.storage_errno(err) is None:
        raise
      which = f"the checkpoint of step {step}" if step is not None else "a checkpoint"
      self._failed = files.StorageError(f"cannot write {which} to {self.directory}: "
                                        f"{files.describe(err)}")
    raise self._failed from None

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts an asynchronous save of `state` (a pytree of jax arrays) and `meta` (JSON,
    to which the arrays' checksums are added). An earlier save that failed raises here."""
    ocp = self._ocp
    meta = {**meta, "checksums": checksums(state)}
    self.wait()
    self._pending = step
    self._guard(lambda: self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True), step)

  def wait(self) -> None:
    """Waits for the running save; StorageError when the storage refused it (again on
    every later call: a failed save never counts as finished)."""
    if self._failed is not None:
      raise self._failed
    self._guard(self._manager.wait_until_finished, self._pending)
    self._pending = None

  def close(self) -> None:
    """Waits for the running save and closes; a failed save raises StorageError once (orbax
    re-raises it from `close` too, which is then not reported again)."""
    failed = None
    try:
      self.wait()
    except files.StorageError as err:
      failed = err
    try:
      self._manager.close()
    except Exception as err:  # pylint: disable=broad-except  (orbax / tensorstore errors)
      if failed is None:
        if files.storage_errno(err) is None:
          raise
        raise files.StorageError(f"cannot write a checkpoint to {self.directory}: "
                                 f"{files.describe(err)}") from None
    if failed is not None:
      raise failed

  # -- restoring
  def restore_meta(self, step: int) -> dict:
    ocp = self._ocp
    with _restoring():
      return self._manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))["meta"]

  def saved_shapes(self, step: int) -> list[tuple]:
    """Shapes of the saved state arrays in tree-leaf order (to detect a checkpoint made
    with another padded class count, i.e. another device count)."""
    with _restoring():
      metadata = self._manager.item_metadata(step)["state"]
    shapes = [tuple(m.shape) for m in
              jax.tree.leaves(metadata, is_leaf=lambda m: hasattr(m, "shape"))]
    if not shapes:
      raise DamagedError(f"checkpoint step {step}: its array metadata is missing")
    return shapes

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `(state, meta)`; `abstract_state` is a tree of `jax.ShapeDtypeStruct`
    with shardings, so arrays come back already placed (and resharded if needed).
    DamagedError when the arrays do not match the checksums saved with them."""
    ocp = self._ocp
    with _restoring():
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    state, meta = out["state"], out["meta"]
    saved = meta.get("checksums") if isinstance(meta, dict) else None
    if saved is not None and checksums(state) != saved:
      raise DamagedError(f"checkpoint step {step}: its arrays do not match the checksums "
                         f"saved with them (damaged data files)")
    return state, meta

  def move_aside(self, step: int, to_dir: str) -> str:
    """Moves checkpoint `step` into `to_dir` (kept for inspection, never deleted); returns
    where it went."""
    files.makedirs(to_dir)
    dest = files.join(to_dir, str(int(step)))
    n = 1
    while files.exists(dest):
      dest = files.join(to_dir, f"{int(step)}.{n}")
      n += 1
    files.move(self.step_dir(step), dest)
    return dest


def damage_reason(err: BaseException) -> str:
  """Why a checkpoint did not restore, in a few words for one warning line."""
  text = str(err)
  first = (text.strip().splitlines() or [""])[0]
  if isinstance(err, DamagedError):
    return first.split(": ", 1)[-1]
  if isinstance(err, FileNotFoundError):
    missing = getattr(err, "filename", None) or first.removeprefix("File ").split(" ")[0]
    return f"a file is missing: {files.basename(str(missing))}"
  if isinstance(err, ValueError) and type(err).__name__ == "JSONDecodeError":
    return f"a metadata file is garbled ({first})"
  if isinstance(err, KeyError):
    return f"an item is missing ({first.strip(chr(34) + chr(39))})"
  for code in ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION"):
    if text.startswith(code) or f"{code}:" in first:
      return f"its array files are truncated or corrupt (tensorstore {code})"
  return files.describe(err)


def _bits(x) -> jax.Array:
  """The bits of every element of `x` as uint32 (64-bit values as two words)."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  size = x.dtype.itemsize
  if size == 4:
    return lax.bitcast_convert_type(x, jnp.uint32)
  if size == 2:
    return lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
  if size == 1:
    return lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
  return lax.bitcast_convert_type(x, jnp.uint32)   # [..., 2]


@jax.jit
def _sums(tree):
  out = []
  for x in jax.tree.leaves(tree):
    b = _bits(x)
    pos = jnp.zeros(b.shape, jnp.uint32)
    stride = 1
    for d in reversed(range(b.ndim)):
      pos = pos + lax.broadcasted_iota(jnp.uint32, b.shape, d) * jnp.uint32(stride % 2**32)
      stride *= b.shape[d]
    out.append(jnp.stack([jnp.sum(b, dtype=jnp.uint32),
                          jnp.sum(b * (pos + jnp.uint32(1)), dtype=jnp.uint32)]))
  return out


def checksums(tree: Any) -> list[list[int]]:
  """[plain, position-weighted] 32-bit sums of the bits of each array of `tree` (integer
  sums: exact and independent of how the array is sharded)."""
  out = []
  for s in _sums(tree):
    if not getattr(s, "is_fully_addressable", True):
      s = s.addressable_data(0)
    out.append([int(v) for v in np.asarray(jax.device_get(s))])
  return out


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct` tree (with shardings) matching a tree of arrays."""
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
      tree)
