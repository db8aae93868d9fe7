"""Class-axis parallelism: a 1-D device mesh over classes, padding, multi-host start.

Condensation is independent per class (docs/design.md): every class has its own real
batch, synthetic images and objective, and only the scalar loss is summed. So the class
axis `C` of every class-leading array (`[C, ...]`) is sharded over a 1-D mesh with axis
name `"classes"`, while the random network parameters are replicated. When the device
count does not divide the number of classes (10 classes on 8 devices), the class axis is
padded with dummy classes (class id -1) that callers mask out of the loss.

Multi-host: each process owns the contiguous block of the padded class axis that lives
on its local devices, loads only those classes, and contributes them to global arrays.
Nothing here depends on the number of devices in a way that changes results: per-class
keys fold in the *global* class id (`jaxcond.rng.class_keys`).
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcond.errors import ConfigError

AXIS = "classes"


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None) -> bool:
  """Starts `jax.distributed` when asked to; returns whether this is a multi-process run.

  Arguments default to the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID`). Nothing happens without a coordinator address or with one process,
  so single-machine runs never touch the distributed runtime. On CPU the cross-process
  collectives use gloo (jax's default `jax_cpu_collectives_implementation`).

  `coordinator_address="auto"`: JAX finds the coordinator, the process count and this
  process's index itself (`jax.distributed.initialize()` without arguments: Cloud TPU VM
  slices, GKE TPU, SLURM, Open MPI, Kubernetes), so every worker runs the same command.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if coordinator_address == "auto":
    if jax.distributed.is_initialized():
      return jax.process_count() > 1
    try:
      jax.distributed.initialize(local_device_ids=local_device_ids)
    except (ValueError, RuntimeError) as err:
      first = (str(err).strip().splitlines() or [type(err).__name__])[0]
      raise ConfigError(f"coordinator_address: auto found no cluster to join ({first}); give "
                        f"--coordinator_address=HOST:PORT --num_processes=N "
                        f"--process_id=I") from None
    return jax.process_count() > 1
  if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and os.environ.get("JAX_PROCESS_ID"):
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if not coordinator_address or not num_processes or num_processes <= 1:
    return False
  if process_id is None:
    raise ConfigError("process_id: required when num_processes > 1 "
                      "(flag --process_id or env JAX_PROCESS_ID)")
  if not 0 <= process_id < num_processes:
    raise ConfigError(f"process_id: {process_id} is outside [0, {num_processes})")
  if jax.distributed.is_initialized():
    return True
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=local_device_ids)
  return True


def make_mesh(num_devices: int | None = None) -> Mesh:
  """1-D mesh with axis "classes" over the first `num_devices` devices (None/0 = all).

  In a multi-process run the mesh always spans every device of every process.
  """
  devices = jax.devices()
  if num_devices:
    if num_devices < 0 or num_devices > len(devices):
      raise ConfigError(f"num_devices: {num_devices} requested but "
                        f"{len(devices)} device(s) are available")
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ConfigError("num_devices: must be 0 (all devices) in a multi-process run")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def padded_num_classes(num_classes: int, mesh: Mesh) -> int:
  """Smallest multiple of the mesh size that holds `num_classes` (dummy classes pad it)."""
  n = mesh.size
  return -(-num_classes // n) * n


def class_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Shards the leading (class) axis of an `ndim`-dimensional array: P("classes", None, ...)."""
  return NamedSharding(mesh, P(AXIS, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def padded_class_ids(num_classes: int, mesh: Mesh) -> np.ndarray:
  """Global class id per slot of the padded class axis; dummy slots are -1 (at the end)."""
  ids = np.full((padded_num_classes(num_classes, mesh),), -1, np.int32)
  ids[:num_classes] = np.arange(num_classes, dtype=np.int32)
  return ids


def local_slots(num_classes: int, mesh: Mesh) -> tuple[int, int]:
  """[start, stop) of the padded class axis held by this process's devices.

  The slots of one process are contiguous because `jax.make_mesh` orders devices by
  process; this is checked, since per-host loading relies on it.
  """
  c_pad = padded_num_classes(num_classes, mesh)
  index_map = class_sharding(mesh, 1).addressable_devices_indices_map((c_pad,))
  starts = sorted(idx[0].start or 0 for idx in index_map.values())
  stops = sorted(idx[0].stop if idx[0].stop is not None else c_pad
                 for idx in index_map.values())
  start, stop = starts[0], stops[-1]
  if stop - start != len(index_map) * (c_pad // mesh.size):
    raise RuntimeError("this process's devices do not hold a contiguous block of classes")
  return start, stop


def local_classes(num_classes: int, mesh: Mesh) -> np.ndarray:
  """Real (non-dummy) global class ids this process holds, in slot order."""
  start, stop = local_slots(num_classes, mesh)
  ids = padded_class_ids(num_classes, mesh)[start:stop]
  return ids[ids >= 0]


def global_from_local(local: np.ndarray | jax.Array, mesh: Mesh, global_shape) -> jax.Array:
  """Builds a class-sharded global array from this process's block of the class axis.

  `local` is `[stop - start, ...]` for this process's slots (see `local_slots`). With one
  process this is just `device_put` with the class sharding.
  """
  sharding = class_sharding(mesh, len(global_shape))
  if jax.process_count() == 1:
    return jax.device_put(local, sharding)
  return jax.make_array_from_process_local_data(sharding, np.asarray(local),
                                                tuple(global_shape))


def to_host(x: jax.Array) -> np.ndarray:
  """The full value of a (possibly multi-process sharded) array as numpy on every process."""
  if jax.process_count() == 1 or getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_allgather(x) -> np.ndarray:
  """Stacks a small host value from every process: `[num_processes, ...]`."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x[None]
  return np.asarray(multihost_utils.process_allgather(x))


def broadcast_from_first(x) -> np.ndarray:
  """Process 0's value of a small host array, on every process (itself with one process)."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x
  return np.asarray(multihost_utils.broadcast_one_to_all(x))


def sync(name: str) -> None:
  """Barrier across processes (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
