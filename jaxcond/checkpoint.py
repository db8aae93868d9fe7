"""Orbax checkpoints of the condensation state: save, find the latest, restore.

A checkpoint at step `s` holds the state *after* `s` updates: the synthetic pixels, the
optimiser (momentum) state and a JSON `meta` item (step, config hash, the fields that
define the trajectory, versions). Everything else a step needs is a pure function of
`(seed, step)` (`jaxcond.rng`), so restoring the state and continuing at step `s`
reproduces an uninterrupted run exactly.

Saves are asynchronous (orbax `CheckpointManager`, v0 API): `save` returns once the
arrays are copied off the device; call `wait()` before reading the directory or exiting.
Partially written checkpoints (a process killed mid-save) live in temporary folders that
orbax never reports as steps, so the latest *complete* checkpoint is always the one used.
"""
from __future__ import annotations

import os
from typing import Any

import jax


class Checkpointer:
  """Thin wrapper over `orbax.checkpoint.CheckpointManager` for `{state, meta}` items."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               async_save: bool = True):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep if max_to_keep > 0 else None,
        enable_async_checkpointing=async_save, create=True,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts an asynchronous save of `state` (a pytree of jax arrays) and `meta` (JSON)."""
    ocp = self._ocp
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore_meta(self, step: int) -> dict:
    ocp = self._ocp
    return self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def saved_shapes(self, step: int) -> list[tuple]:
    """Shapes of the saved state arrays in tree-leaf order (to detect a checkpoint made
    with another padded class count, i.e. another device count)."""
    metadata = self._manager.item_metadata(step)["state"]
    return [tuple(m.shape) for m in
            jax.tree.leaves(metadata, is_leaf=lambda m: hasattr(m, "shape"))]

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `(state, meta)`; `abstract_state` is a tree of `jax.ShapeDtypeStruct`
    with shardings, so arrays come back already placed (and resharded if needed)."""
    ocp = self._ocp
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct` tree (with shardings) matching a tree of arrays."""
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
      tree)
