"""The real images of a condensation run behind one object: the class bank or the stream.

A run needs three things from its real data, whichever way it arrives: the per-class
counts (checked against the config before compiling), the images that initialise the
synthetic set, and, every step, the real-data arguments of the compiled step
(`jaxcond.plan.build_step`). `RealSource` gives exactly those:

- `BankSource`: the training split on the devices as a sharded `data.ClassBank`; the step
  samples `batch_real` images per class inside the jit (DM / M3D authors' code draw a fresh
  real batch per class every iteration). Step arguments: `(bank,)`.
- `StreamSource`: a `data.ClassStream` reads each step's batch from disk (grain, device
  prefetch), for datasets that do not fit on the devices. Step arguments:
  `(real_u8, class_ids)`.

`open_source(d, info, s, mesh)` picks one from `dataset.streaming`. Each process loads only
the classes of its own devices' slots. `condense`, `bench`, `continual` and `nas` never
fork on bank vs stream: they call `initial_synthetic`, `arg_specs` (what the step is
compiled for), `step_args(step)` and `close`.

`WithPool(source, pool)`: the same source whose step arguments end with the trained feature
nets (`steps.Pool`, replicated on the devices), so a step that draws its net from a pool
(`pool.path`) gets the weights as an argument the same way it gets its data.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcond import data, parallel, steps
from jaxcond.configs import DataSettings

INIT_STREAM_STEP = 2 ** 31 - 1   # streaming: the step index whose draw initialises the set


class RealSource:
  """What a run asks of its real data (module docstring). `counts`: training images per
  class, every process's classes; `identity`: which files these are (config.json)."""
  streaming = False
  counts: np.ndarray
  identity: str = ""

  def initial_synthetic(self, s: steps.StepSettings, init: str, sharding) -> jax.Array:
    """The initial synthetic set `[C_pad, ipc, H, W, ch]` (`steps.init_from_real`)."""
    raise NotImplementedError

  def arg_specs(self, s: steps.StepSettings) -> tuple:
    """The real-data arguments the step is compiled for (arrays or ShapeDtypeStructs)."""
    raise NotImplementedError

  def start(self, step: int, stop: int) -> None:
    """Prepares to deliver steps `step .. stop - 1` (a stream opens its reader here)."""

  def step_args(self, step: int) -> tuple:
    """The real-data arguments of step `step` (in order: a stream yields steps in turn)."""
    raise NotImplementedError

  def close(self) -> None:
    """Stops background readers (idempotent)."""


class BankSource(RealSource):
  """The training split on the devices (`data.ClassBank`), sampled inside the step."""

  def __init__(self, bank: data.ClassBank, counts: np.ndarray, identity: str = ""):
    self.bank, self.counts, self.identity = bank, np.asarray(counts), identity

  def initial_synthetic(self, s, init, sharding):
    fn = jax.jit(steps.init_synthetic(s, init, data.sample_real), out_shardings=sharding)
    return fn(self.bank)

  def arg_specs(self, s):
    return (self.bank,)

  def step_args(self, step):
    return (self.bank,)


class StreamSource(RealSource):
  """Real batches read from disk every step (`data.ClassStream`)."""
  streaming = True

  def __init__(self, index, counts: np.ndarray, *, batch: int, seed: int, pad_to: int,
               sharding, identity: str = ""):
    self.index, self.counts, self.identity = index, np.asarray(counts), identity
    self.batch, self.seed, self.pad_to, self.sharding = batch, seed, pad_to, sharding
    self._stream = self._batches = None
    self._ids = None

  def _open(self, batch: int, **kwargs) -> data.ClassStream:
    return data.ClassStream(self.index, batch=batch, seed=self.seed, pad_to=self.pad_to,
                            sharding=self.sharding, **kwargs)

  def class_ids(self) -> jax.Array:
    if self._ids is None:
      self._ids = self._open(1).device_fields()[1]
    return self._ids

  def initial_synthetic(self, s, init, sharding):
    init_stream = self._open(steps.init_count(s, init))
    # A step index no training step uses, so the init images are an independent draw.
    real0 = init_stream.batch_at(INIT_STREAM_STEP)
    mesh = self.sharding.mesh
    real0 = parallel.global_from_local(real0, mesh, (self.pad_to,) + real0.shape[1:])
    ids = init_stream.device_fields()[1]
    return jax.jit(steps.init_from_real(s, init), out_shardings=sharding)(real0, ids)

  def arg_specs(self, s):
    real = jax.ShapeDtypeStruct((self.pad_to, self.batch) + tuple(s.image_shape),
                                jnp.uint8, sharding=self.sharding)
    return real, self.class_ids()

  def start(self, step, stop):
    self._stream = self._open(self.batch, start_step=step, num_steps=max(stop - step, 1))
    self._batches = iter(self._stream) if step < stop else None

  def step_args(self, step):
    got, real = next(self._batches)
    if got != step:
      raise RuntimeError(f"stream yielded step {got}, expected {step}")
    return real, self.class_ids()

  def close(self):
    if self._stream is not None:
      self._stream.close()
      self._stream = None


class WithPool(RealSource):
  """`source` with the pool's weights (`steps.Pool`, on the devices) after its arguments."""

  def __init__(self, source: RealSource, pool):
    self.source, self.pool = source, pool
    self.streaming, self.counts, self.identity = source.streaming, source.counts, \
        source.identity

  def initial_synthetic(self, s, init, sharding):
    return self.source.initial_synthetic(s, init, sharding)

  def arg_specs(self, s):
    return (*self.source.arg_specs(s), self.pool)

  def start(self, step, stop):
    self.source.start(step, stop)

  def step_args(self, step):
    return (*self.source.step_args(step), self.pool)

  def close(self):
    self.source.close()


def place_pool(pool, mesh):
  """Host arrays of a pool (`pool_files.load`) -> float32 arrays replicated on `mesh`: the
  few nets' weights are small next to the bank, and every device embeds with them."""
  rep = parallel.replicated(mesh)
  return jax.tree.map(lambda a: jax.device_put(np.asarray(a, np.float32), rep), pool)


def global_counts(labels, num_classes: int, local_ids) -> np.ndarray:
  """Training images per class, combined over processes (each loads only its classes)."""
  counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
  mine = np.zeros_like(counts)
  mine[local_ids] = counts[local_ids]
  return parallel.host_allgather(mine).sum(axis=0)


def open_source(d: DataSettings, info, s: steps.StepSettings, mesh, *,
                check_counts: Callable[[np.ndarray], None] = lambda counts: None
                ) -> RealSource:
  """The real data of `d` for settings `s` on `mesh`: a stream when `d.streaming`, else
  this process's classes loaded into the sharded bank. `check_counts(counts)` runs on the
  per-class counts before the bank is built (a config check that needs them)."""
  num_classes = info.num_classes
  c_pad = parallel.padded_num_classes(num_classes, mesh)
  sharding5 = parallel.class_sharding(mesh, 5)
  kw = dict(source=d.source or "auto", path=d.path or None, resolution=d.resolution or None)
  identity = data.dataset_identity(d.name, "train", **kw)
  if d.streaming:
    # The index only lists files; each process reads only the classes of its slots.
    index = data.make_index(d.name, "train", draft=d.jpeg_draft, **kw)
    counts = np.asarray(index.counts)
    check_counts(counts)
    return StreamSource(index, counts, batch=s.batch_real, seed=s.seed, pad_to=c_pad,
                        sharding=sharding5, identity=identity)
  local_ids = parallel.local_classes(num_classes, mesh)
  multiprocess = jax.process_count() > 1
  images, labels = data.split_loader(d)("train", local_ids if multiprocess else None)
  counts = global_counts(labels, num_classes, local_ids)
  check_counts(counts)
  # Slot i of the padded class axis holds class i; dummy slots (-1) come last. Each
  # process supplies only the classes on its own devices.
  bank = data.build_bank(images, labels, num_classes, pad_to=c_pad, sharding=sharding5)
  return BankSource(bank, counts, identity)
