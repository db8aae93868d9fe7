"""Streaming path: class-balanced real batches for data that do not fit device memory.

Same contract as `bank.sample_real` (DM / M3D authors' code: `batch_real` fresh images of
every class each iteration): every step yields uint8 `[slots_on_this_host, batch, H, W, ch]`
on the devices, with the class axis sharded like the bank, so the condense step cannot tell
which path produced its batch. Dummy slots (`pad_to`) are zeros with class_id -1.

Sampling: step s, class c draws `batch` distinct images with
`numpy.random.default_rng([seed, s, c]).choice(count_c, batch, replace=False)`, so a batch
is a pure function of (seed, step, class): resuming at step s gives the same batches as an
uninterrupted run. (The draws differ from the bank's jax.random draws.)

Reading: a grain `MapDataset` over flat (step, slot, j) positions, decoded by a grain thread
pool (Pillow releases the GIL), batched per step; a background thread puts each step's batch
on the devices (`jax.device_put` onto the class sharding, or
`jax.make_array_from_process_local_data` with several processes) and keeps `prefetch`
batches ready. Indexes: an ImageFolder tree (no decoding up front), a TFDS ArrayRecord
source (labels scanned once, cached), or in-memory arrays.
"""
from __future__ import annotations

import functools
import pathlib
import queue
import threading
from typing import Optional, Sequence

import jax
import numpy as np

from jaxcond.data import imagenet, load, readers, tfds_source
from jaxcond.data.bank import _class_axis_sharding, _class_list, local_class_slots
from jaxcond.data.registry import DatasetInfo, get_info
from jaxcond.errors import ConfigError, DataError


class ArrayIndex:
  """Per-class view of host arrays (images uint8 [N, H, W, ch], labels [N])."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int):
    labels = np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise DataError(f"labels: value outside the class range [0, {num_classes})")
    self.images, self.num_classes = images, num_classes
    self.image_shape = tuple(images.shape[1:])
    self.members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    self.counts = np.asarray([len(m) for m in self.members], np.int64)

  def read(self, c: int, j: int) -> np.ndarray:
    return self.images[self.members[c][j]]


class ImageFolderIndex:
  """Per-class file lists of an ImageFolder tree; images are decoded only when read."""

  def __init__(self, root, split: str, info: DatasetInfo, draft: bool = True):
    root = pathlib.Path(root)
    split_dir, entries = readers.list_imagefolder_dir(root, split)
    found = sorted({c for c, _ in entries})
    if info.class_names is None and split != "train" and (root / "train").is_dir():
      found = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    order = readers.resolve_class_order(found, info.class_names, info.num_classes, split_dir)
    label_of = {n: i for i, n in enumerate(order)}
    self.members = [[] for _ in order]
    for c, f in entries:
      if c in label_of and f is not None:
        self.members[label_of[c]].append(f)
    self.num_classes, self.class_names, self.where = len(order), order, split_dir
    self.size, self.channels, self.draft = info.resolution, info.channels, draft
    self.image_shape = tuple(info.image_shape)
    self.counts = np.asarray([len(m) for m in self.members], np.int64)

  def read(self, c: int, j: int) -> np.ndarray:
    f = self.members[c][j]
    return readers.decode_image(f, self.size, self.channels, str(f), draft=self.draft)


class TFDSIndex:
  """Per-class record ids of a TFDS ArrayRecord split (labels scanned once and cached)."""

  def __init__(self, builder: str, split: str, data_dir, info: DatasetInfo,
               use_cache: bool = True, draft: bool = True):
    self.src = tfds_source.open_source(builder, split, data_dir)
    lmap = tfds_source.label_map(self.src, info.class_names, info.num_classes)
    labels = lmap[tfds_source.scan_labels(self.src, use_cache=use_cache)]
    self.members = [np.flatnonzero(labels == c) for c in range(info.num_classes)]
    self.num_classes, self.size, self.channels = info.num_classes, info.resolution, info.channels
    self.image_shape = tuple(info.image_shape)
    self.counts = np.asarray([len(m) for m in self.members], np.int64)
    self._fit = tfds_source._fit_array
    self.draft = draft
    self._where = f"{self.src.dataset_info.data_dir}[{split}]"

  def read(self, c: int, j: int) -> np.ndarray:
    rid = int(self.members[c][j])
    im = self.src[rid]["image"]
    where = f"{self._where} record {rid}"
    if isinstance(im, (bytes, bytearray)):
      return readers.decode_image(im, self.size, self.channels, where, draft=self.draft)
    return self._fit(np.asarray(im), self.size, self.channels, where)


def make_index(name: str, split: str = "train", *, source: str = "auto", path=None,
               resolution: Optional[int] = None, class_list=None, cache: bool = True,
               draft: bool = True):
  """Index for streaming: lazy over ImageFolder folders, ImageNet's own layouts and TFDS,
  else arrays via load_split. draft: JPEG draft decoding (`readers.decode_image`)."""
  info = get_info(name, resolution=resolution, class_list=class_list)
  kind, p, builder = load.resolve_source(info, source, path)
  split = load._SPLITS.get(str(split).lower(), split)
  if kind == "imagefolder" and pathlib.Path(p).is_dir():
    return ImageFolderIndex(p, split, info, draft)
  if kind == "imagenet":
    return imagenet.ImageNetIndex(imagenet.find_layout(pathlib.Path(p)), split, info, draft)
  if kind == "tfds":
    last = None
    for tsplit in ((split,) if split != "test" else ("test", "validation")):
      try:
        return TFDSIndex(builder, tsplit, p, info, use_cache=cache, draft=draft)
      except DataError as e:
        last = e
    raise last
  x, y = load.load_split(name, split, source=source, path=path, resolution=resolution,
                         class_list=class_list, cache=cache, draft=draft)
  return ArrayIndex(x, y, info.num_classes)


class ClassStream:
  """Iterator of (step, uint8 device array [local slots, batch, H, W, ch]).

  classes: class ids in slot order (default all); pad_to: total slots; sharding: NamedSharding
  of the 5-d batch (class axis first) - this process reads only the classes in its slots.
  `counts` / `class_ids` (global, numpy) mirror the bank's fields for masking dummies.
  """

  def __init__(self, index, *, batch: int, seed: int, classes: Optional[Sequence[int]] = None,
               pad_to: Optional[int] = None, sharding=None, start_step: int = 0,
               num_steps: Optional[int] = None, prefetch: int = 2, num_threads: int = 8):
    cl = _class_list(classes, index.num_classes)
    slots = len(cl) if pad_to is None else int(pad_to)
    if slots < len(cl):
      raise ConfigError(f"pad_to: {pad_to} is smaller than the {len(cl)} classes")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
      raise ConfigError(f"batch_real: expected a positive int, got {batch!r}")
    self.class_ids = np.asarray([cl[s] if s < len(cl) else -1 for s in range(slots)], np.int32)
    self.counts = np.asarray([index.counts[c] if c >= 0 else 0 for c in self.class_ids], np.int32)
    self.local = (local_class_slots(sharding, slots) if sharding is not None
                  else np.arange(slots))
    for s in self.local:
      c = self.class_ids[s]
      if c >= 0 and self.counts[s] < batch:
        raise ConfigError(f"batch_real: {batch} exceeds class {c} ({self.counts[s]} images); "
                          "sampling is without replacement")
    self.index, self.batch, self.seed = index, int(batch), int(seed)
    self.sharding, self.slots = sharding, slots
    self.start_step, self.num_steps = int(start_step), num_steps
    self.prefetch, self.num_threads = max(1, int(prefetch)), max(1, int(num_threads))
    self.shape = (len(self.local), self.batch) + tuple(index.image_shape)
    self._thread, self._stop, self._queue = None, threading.Event(), None
    self.indices_at = functools.lru_cache(maxsize=16)(self._indices_at)

  def _indices_at(self, step: int) -> tuple:
    """Per local slot, the `batch` positions (within its class) drawn at `step`."""
    out = []
    for s in self.local:
      c = int(self.class_ids[s])
      if c < 0:
        out.append(None)
      else:
        g = np.random.default_rng([self.seed, int(step), c])
        out.append(g.choice(int(self.counts[s]), self.batch, replace=False))
    return tuple(out)

  def _read_flat(self, i: int) -> np.ndarray:
    per_step = len(self.local) * self.batch
    step, r = divmod(int(i), per_step)
    row, j = divmod(r, self.batch)
    pos = self.indices_at(step)[row]
    if pos is None:
      return np.zeros(self.shape[2:], np.uint8)
    return self.index.read(int(self.class_ids[self.local[row]]), int(pos[j]))

  def batch_at(self, step: int) -> np.ndarray:
    """The host batch of one step (synchronous; what the iterator puts on device)."""
    per_step = len(self.local) * self.batch
    flat = [self._read_flat(step * per_step + k) for k in range(per_step)]
    return np.stack(flat).reshape(self.shape)

  def _grain_iter(self):
    import grain
    per_step = len(self.local) * self.batch
    stop = None if self.num_steps is None else self.start_step + self.num_steps
    end = (stop if stop is not None else 2 ** 40) * per_step
    ds = grain.MapDataset.range(self.start_step * per_step, end).map(self._read_flat)
    opts = grain.ReadOptions(num_threads=self.num_threads,
                             prefetch_buffer_size=max(per_step, self.prefetch * per_step))
    return iter(ds.to_iter_dataset(opts).batch(per_step))

  def _put(self, host: np.ndarray):
    if self.sharding is None:
      return jax.device_put(host)
    if jax.process_count() > 1:
      gshape = (self.slots,) + host.shape[1:]
      return jax.make_array_from_process_local_data(self.sharding, host, gshape)
    return jax.device_put(host, self.sharding)

  def device_fields(self):
    """(counts, class_ids) as device arrays sharded on the class axis, like a ClassBank's."""
    if self.sharding is None:
      return jax.device_put(self.counts), jax.device_put(self.class_ids)
    small = _class_axis_sharding(self.sharding)
    if jax.process_count() > 1:
      put = lambda x: jax.make_array_from_process_local_data(small, x[self.local], x.shape)
    else:
      put = lambda x: jax.device_put(x, small)
    return put(self.counts), put(self.class_ids)

  def __iter__(self):
    q: queue.Queue = queue.Queue(maxsize=self.prefetch)
    self._queue = q
    self._stop.clear()

    def producer():
      step = self.start_step
      try:
        for flat in self._grain_iter():
          if self._stop.is_set():
            return
          q.put((step, self._put(np.asarray(flat).reshape(self.shape))))
          step += 1
        q.put(None)
      except BaseException as e:  # surface reader errors in the consumer thread
        q.put(e)

    self._thread = threading.Thread(target=producer, daemon=True, name="jaxcond-stream")
    self._thread.start()
    while True:
      item = q.get()
      if item is None:
        return
      if isinstance(item, BaseException):
        raise item
      yield item

  def close(self):
    """Stop the prefetch thread: set the flag, then drain so a blocked put returns."""
    self._stop.set()
    while self._queue is not None and self._thread is not None and self._thread.is_alive():
      try:
        self._queue.get(timeout=0.1)
      except queue.Empty:
        pass
    self._thread = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
