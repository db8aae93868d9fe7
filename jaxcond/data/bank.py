"""Device-resident class bank: real images as uint8, bucketed by class, sharded by class.

DM/M3D/DDM draw, every iteration and for every class c, a fresh batch of real images of
class c (DM and M3D authors' code, `get_images(c, batch_real)`). Here that draw happens inside
the jitted step: the training set sits on device as `images[C, M, H, W, ch]` (M = largest
class, shorter classes zero-padded, `counts[C]` real images each) and `sample_real` picks
`batch` distinct indices per class from the key `fold_in(key, class_id)`.

Choices:
- Sampling without replacement: uniform scores per slot, +inf-like for slots >= count, the
  `batch` smallest win (argsort per class; stays local to each device under sharding).
  Requires batch <= count for every real class: `check_batch` raises ConfigError before
  compiling (the reference silently returns fewer images, which a static-shape step
  cannot). If it is not called and batch > count, the extra entries repeat the class's own
  images (never padding); batch > M is a ConfigError.
- Dummy classes (`pad_to`) have count 0, class_id -1 and zero images; callers mask them.
- `max_per_class` caps M by keeping a random subset (seeded by the class id) of big classes.
- Multi-process (untested here, single-host CI): each process passes the images of the
  classes in its own slots (`local_class_slots`); the arrays are assembled with
  `jax.make_array_from_process_local_data`, and M is the max over processes.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcond import rng
from jaxcond.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class ClassBank:
  """images uint8 [C, M, H, W, ch]; counts int32 [C]; class_ids int32 [C] (-1 = dummy)."""
  images: jax.Array
  counts: jax.Array
  class_ids: jax.Array

  @property
  def num_slots(self) -> int:
    return self.images.shape[0]

  @property
  def per_class(self) -> int:
    return self.images.shape[1]

  @property
  def image_shape(self) -> tuple:
    return tuple(self.images.shape[2:])


jax.tree_util.register_dataclass(ClassBank, data_fields=["images", "counts", "class_ids"],
                                 meta_fields=[])


def _class_axis_sharding(sharding: NamedSharding) -> NamedSharding:
  spec = tuple(sharding.spec)
  return NamedSharding(sharding.mesh, P(spec[0] if spec else None))


def local_class_slots(sharding: NamedSharding, num_slots: int) -> np.ndarray:
  """Slot indices (positions on the class axis) held by this process's devices."""
  shape = (num_slots,)
  try:
    idx_map = _class_axis_sharding(sharding).addressable_devices_indices_map(shape)
  except ValueError as e:
    raise ConfigError(f"pad_to: {num_slots} class slots cannot be sharded over "
                      f"{sharding.mesh.shape} ({e})") from None
  slots = set()
  for idx in idx_map.values():
    slots.update(range(*idx[0].indices(num_slots)))
  return np.asarray(sorted(slots), np.int64)


def _validate(images, labels, num_classes):
  if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
    desc = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
    raise DataError(f"images: expected uint8 [N, H, W, ch], got {desc}")
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"labels: expected integer [N], got {labels.dtype} {labels.shape}")
  if len(labels) != len(images):
    raise DataError(f"labels: {len(labels)} labels for {len(images)} images")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
    raise DataError(f"labels: value {bad} outside the class range [0, {num_classes})")
  return labels.astype(np.int64)


def _class_list(classes, num_classes):
  if classes is None:
    return list(range(num_classes))
  cl = [int(c) for c in np.asarray(classes).reshape(-1)]
  if not cl or len(set(cl)) != len(cl) or min(cl) < 0 or max(cl) >= num_classes:
    raise ConfigError(f"classes: expected distinct indices in [0, {num_classes}), got {classes!r}")
  return cl


def build_bank(images: np.ndarray, labels: np.ndarray, num_classes: int, *,
               classes: Optional[Sequence[int]] = None, pad_to: Optional[int] = None,
               sharding: Optional[NamedSharding] = None,
               max_per_class: Optional[int] = None) -> ClassBank:
  """Bucket a split by class into a (sharded) device bank.

  classes: class ids in slot order (default all); images of other classes are ignored.
  pad_to: total number of class slots (>= len(classes)), e.g. a multiple of the device count.
  sharding: NamedSharding of the 5-D images array, class axis first (P("classes", ...)).
  """
  if isinstance(images, jax.Array):
    images = np.asarray(images)
  labels = _validate(images, labels, num_classes)
  cl = _class_list(classes, num_classes)
  slots = len(cl) if pad_to is None else int(pad_to)
  if slots < len(cl):
    raise ConfigError(f"pad_to: {pad_to} is smaller than the {len(cl)} classes")
  if max_per_class is not None and int(max_per_class) < 1:
    raise ConfigError(f"max_per_class: expected a positive int, got {max_per_class!r}")
  multi = sharding is not None and jax.process_count() > 1
  local = local_class_slots(sharding, slots) if multi else np.arange(slots)
  local_real = [s for s in local if s < len(cl)]

  order = np.argsort(labels, kind="stable")
  bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
  members = {}
  for s in local_real:
    c = cl[s]
    idx = order[bounds[c]:bounds[c + 1]]
    if idx.size == 0:
      raise DataError(f"labels: class {c} has no images")
    if max_per_class is not None and idx.size > max_per_class:
      pick = np.random.default_rng(c).choice(idx.size, int(max_per_class), replace=False)
      idx = idx[np.sort(pick)]
    members[s] = idx
  m = max((len(v) for v in members.values()), default=1)
  if multi:
    m = int(np.max(multihost_utils.process_allgather(np.int32(m))))

  rows = np.zeros((len(local), m) + images.shape[1:], np.uint8)
  counts = np.zeros(len(local), np.int32)
  ids = np.full(len(local), -1, np.int32)
  for r, s in enumerate(local):
    if s in members:
      idx = members[s]
      rows[r, :len(idx)] = images[idx]
      counts[r], ids[r] = len(idx), cl[s]

  if sharding is None:
    return ClassBank(jnp.asarray(rows), jnp.asarray(counts), jnp.asarray(ids))
  if len(tuple(sharding.spec)) > 5:
    raise ConfigError(f"sharding: spec {sharding.spec} has more axes than the 5-d bank")
  small = _class_axis_sharding(sharding)
  try:
    if multi:
      if np.any(np.diff(local) != 1):
        raise ConfigError("sharding: this process's class slots are not contiguous")
      gshape = (slots, m) + images.shape[1:]
      put = lambda x, sh, shape: jax.make_array_from_process_local_data(sh, x, shape)
      return ClassBank(put(rows, sharding, gshape), put(counts, small, (slots,)),
                       put(ids, small, (slots,)))
    return ClassBank(jax.device_put(rows, sharding), jax.device_put(counts, small),
                     jax.device_put(ids, small))
  except ValueError as e:
    raise ConfigError(f"pad_to/sharding: {slots} class slots cannot be sharded as "
                      f"{sharding.spec} over mesh {dict(sharding.mesh.shape)} "
                      f"({str(e).splitlines()[0][:120]})") from None


def check_batch(bank_or_counts, batch: int, class_ids=None) -> None:
  """ConfigError unless 1 <= batch <= the smallest real class (call before compiling).

  Accepts a ClassBank or a counts array (then count-0 entries are taken as dummies).
  """
  if isinstance(bank_or_counts, ClassBank):
    counts, class_ids = bank_or_counts.counts, bank_or_counts.class_ids
  else:
    counts = bank_or_counts
  counts = _host(counts)
  real = _host(class_ids) >= 0 if class_ids is not None else counts > 0
  if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
    raise ConfigError(f"batch_real: expected a positive int, got {batch!r}")
  if not real.any():
    raise ConfigError("batch_real: the bank has no real classes")
  small = int(np.argmin(np.where(real, counts, np.iinfo(np.int32).max)))
  if batch > counts[small]:
    cid = int(_host(class_ids)[small]) if class_ids is not None else small
    raise ConfigError(f"batch_real: {batch} exceeds the smallest class (class {cid} has "
                      f"{int(counts[small])} images); sampling is without replacement")


def _host(x) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def sample_real(bank: ClassBank, key: jax.Array, batch: int) -> jax.Array:
  """`batch` distinct images per class: uint8 [C, batch, H, W, ch] (jittable).

  Class slot c uses `fold_in(key, class_ids[c])`, so the draw of a class does not depend on
  which device or slot holds it (sharded == unsharded).
  """
  m = bank.images.shape[1]
  if not isinstance(batch, (int, np.integer)) or not 1 <= batch <= m:
    raise ConfigError(f"batch_real: {batch!r} must be in [1, {m}] (largest class in the bank)")
  keys = rng.class_keys(key, bank.class_ids)
  slot = jnp.arange(m)
  j = jnp.arange(batch)

  def one(images, count, k):
    scores = jnp.where(slot < count, jax.random.uniform(k, (m,)), 2.0)
    # The `batch` smallest scores, valid slots first. A sort, not lax.top_k: GSPMD keeps a
    # batched sort on each device but all-gathers top_k's operand (seen on CPU).
    idx = jnp.argsort(scores)[:batch]
    idx = jnp.where(j < count, idx, idx[j % jnp.maximum(count, 1)])
    return images[idx]

  return jax.vmap(one)(bank.images, bank.counts, keys)


def normalize(x: jax.Array, mean, std) -> jax.Array:
  """uint8 -> float32 (x / 255 - mean) / std per channel (as DM's code); fuses into the step."""
  mean = jnp.asarray(mean, jnp.float32).reshape(-1)
  std = jnp.asarray(std, jnp.float32).reshape(-1)
  ch = x.shape[-1]
  if mean.shape[0] not in (1, ch) or std.shape[0] not in (1, ch):
    raise ConfigError(f"normalize: mean/std have {mean.shape[0]}/{std.shape[0]} entries "
                      f"for {ch} channels")
  return (jnp.asarray(x).astype(jnp.float32) / 255.0 - mean) / std
