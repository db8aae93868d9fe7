"""`load_split`: one entry point over every source, with sensible default paths.

Where data are looked for (first hit wins), unless `path=` is given:
  1. each folder in `$JAXCOND_DATA_DIR` (os.pathsep-separated), then `~/.cache/jaxcond/data`,
     under the dataset's folder names (`mnist`, `fashion_mnist`, `cifar10` or `cifar10_jpeg`
     or `cifar-10-batches-py`, `tiny-imagenet-200`, `imagenet`, ...);
  2. TFDS data dirs `$TFDS_DATA_DIR`, `~/tensorflow_datasets` holding a prepared ArrayRecord
     copy of the dataset's TFDS builder.
`source="auto"` picks the reader by what exists there (IDX files, CIFAR pickles or their
archive, SVHN `.mat`, `.npz`, a TFDS folder, ImageNet's own tars / flat validation set
(`jaxcond.data.imagenet`), an ImageFolder tree or archive). `digits` needs no files.
Returned labels are the dataset's class indices (0..num_classes-1) even when `classes=`
restricts loading to a subset (per-host loading, §"sharded bank" in docs/data.md).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import tarfile
import zipfile
from typing import Optional, Sequence

import numpy as np

from jaxcond.data import cache as cache_lib
from jaxcond.data import identity
from jaxcond.data import imagenet
from jaxcond.data import readers
from jaxcond.data import tfds_source
from jaxcond.data.registry import DatasetInfo, get_info
from jaxcond.errors import ConfigError, DataError

SOURCES = ("auto", "tfds", "idx", "cifar", "svhn", "imagefolder", "imagenet", "npz", "digits")
_SPLITS = {"train": "train", "test": "test", "val": "test", "validation": "test",
           "extra": "extra", "all": "all"}

_EXTRA_FOLDERS = {
    "fashion_mnist": ("fashion-mnist", "fmnist", "FashionMNIST"),
    "cifar10": ("cifar-10", "cifar10_jpeg", "cifar-10-batches-py", "CIFAR10"),
    "cifar100": ("cifar-100", "cifar-100-python", "CIFAR100"),
    "svhn": ("SVHN",),
    "mnist": ("MNIST",),
    "tinyimagenet": ("tiny-imagenet-200", "tiny_imagenet"),
    "imagenet1k": ("imagenet", "ILSVRC2012", "imagenet2012"),
}
_IMAGENET_FOLDERS = ("imagenet", "imagenet1k", "ILSVRC2012", "imagenet2012")


def data_roots() -> list:
  env = os.environ.get("JAXCOND_DATA_DIR", "")
  roots = [pathlib.Path(r).expanduser() for r in env.split(os.pathsep) if r]
  return roots + [pathlib.Path.home() / ".cache" / "jaxcond" / "data"]


def folder_names(info: DatasetInfo) -> tuple:
  names = (info.name,) + _EXTRA_FOLDERS.get(info.name, ())
  if info.imagenet_ids is not None:
    names += tuple(n for n in _IMAGENET_FOLDERS if n not in names)
  if info.tfds_name and info.tfds_name not in names:
    names += (info.tfds_name,)                          # <TFDS data dir>/<builder>
  return names


def _archive_kind(p: pathlib.Path) -> Optional[str]:
  """Peek at the first members: CIFAR batches or an image tree."""
  cifar = {"data_batch_1", "test_batch", "batches.meta", "data_batch_1.bin", "test_batch.bin",
           "batches.meta.txt", "fine_label_names.txt"}
  try:
    if p.suffix.lower() == ".zip":
      with zipfile.ZipFile(p) as z:
        names = z.namelist()[:256]
    else:
      names = []
      with tarfile.open(p, "r|*") as tar:
        for m in tar:
          names.append(m.name)
          if len(names) >= 256:
            break
  except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
    raise DataError(f"{p}: unreadable or truncated archive ({e})") from None
  for n in names:
    parts = n.rstrip("/").split("/")
    if parts[-1] in cifar or (len(parts) >= 2 and parts[-2] in readers.CIFAR_DIRS):
      return "cifar"
  if any(readers.is_image(n) for n in names):
    return "imagefolder"
  return None


def detect(info: DatasetInfo, p: pathlib.Path):
  """(kind, path) of the data found at `p`, or None."""
  if info.imagenet_ids is not None and imagenet.find_layout(p) is not None:
    return "imagenet", p                 # before the archive peek: never stream a 147 GB tar
  if p.is_file():
    low = p.name.lower()
    if low.endswith(".npz"):
      return "npz", p
    if low.endswith(".mat"):
      return "svhn", p
    if "ubyte" in low:
      return "idx", p.parent
    if readers.is_archive(p):
      kind = _archive_kind(p)
      return (kind, p) if kind else None
    return None
  if not p.is_dir():
    return None
  if any(p.glob("*idx[13]-ubyte*")):
    return "idx", p
  for sub in readers.CIFAR_DIRS:
    if (p / sub).is_dir():
      return "cifar", p / sub
  if any((p / f).is_file() for f in ("data_batch_1", "test_batch", "data_batch_1.bin",
                                     "test_batch.bin", "train.bin")) or \
      ((p / "meta").is_file() and (p / "train").is_file()):
    return "cifar", p
  if any(p.glob("*_32x32.mat")):
    return "svhn", p
  if any(p.glob("*.npz")):
    return "npz", p
  if info.tfds_name:
    if tfds_source.find_prepared(info.tfds_name, p) is not None:
      return "tfds", p                                  # p is a TFDS data dir
    if p.name == info.tfds_name.split("/")[0] and \
        tfds_source.find_prepared(info.tfds_name, p.parent) is not None:
      return "tfds", p.parent                           # p is <data_dir>/<builder>
  if (p / "train").is_dir():
    return "imagefolder", p
  for a in sorted(f for f in p.iterdir() if f.is_file() and readers.is_archive(f)):
    found = detect(info, a)
    if found:
      return found
  return None


def resolve_source(info: DatasetInfo, source: str = "auto", path=None):
  """-> (kind, path, tfds_builder_or_None); ConfigError / DataError when nothing fits."""
  if not isinstance(source, str):
    raise ConfigError(f"dataset.source: expected a string, got {source!r}")
  kind, _, builder = source.partition(":")
  if kind not in SOURCES or (builder and kind != "tfds"):
    raise ConfigError(f"dataset.source: unknown source {source!r}; one of {', '.join(SOURCES)} "
                      "or tfds:<builder_name>")
  if kind == "digits" or (kind == "auto" and info.name == "digits" and path is None):
    return "digits", None, None
  if kind == "tfds":
    builder = builder or info.tfds_name
    if builder is None:
      raise ConfigError(f"dataset.source: {info.name} has no TFDS builder; pass tfds:<name>")
    if path is not None:
      return "tfds", pathlib.Path(path), builder
    for root in data_roots() + [tfds_source.default_data_dir()]:
      if tfds_source.find_prepared(builder, root) is not None:
        return "tfds", root, builder
    return "tfds", tfds_source.default_data_dir(), builder
  if path is not None:
    p = pathlib.Path(path).expanduser()
    if not p.exists():
      raise DataError(f"{p}: not found")
    if kind != "auto":
      return kind, p, info.tfds_name
    cands = [p] + ([p / n for n in folder_names(info)] if p.is_dir() else [])
  else:
    cands = [r / n for r in data_roots() for n in folder_names(info)]
  for c in cands:
    found = detect(info, c)
    if found and (kind == "auto" or found[0] == kind):
      return found[0], found[1], info.tfds_name
  if kind == "auto" and path is None and info.tfds_name:
    root = tfds_source.default_data_dir()
    if tfds_source.find_prepared(info.tfds_name, root) is not None:
      return "tfds", root, info.tfds_name
  if path is not None:
    what = "any format" if kind == "auto" else kind
    raise DataError(f"{path}: no {info.name} data found ({what})")
  raise DataError(f"no {info.name} data found in {', '.join(str(r) for r in data_roots())} "
                  f"(folders {', '.join(folder_names(info))}); set JAXCOND_DATA_DIR or dataset.path")


def _check_classes(classes, num_classes: int):
  if classes is None:
    return None
  try:
    arr = np.asarray(classes)
    ok = arr.ndim == 1 and arr.size > 0 and np.issubdtype(arr.dtype, np.integer)
  except Exception:
    ok = False
  if not ok:
    raise ConfigError(f"classes: expected a non-empty list of class indices, got {classes!r}")
  if arr.min() < 0 or arr.max() >= num_classes or len(np.unique(arr)) != len(arr):
    raise ConfigError(f"classes: indices must be distinct and in [0, {num_classes}), "
                      f"got {classes!r}")
  return sorted(int(c) for c in arr)


def _decode_ident(info: DatasetInfo, draft: bool) -> dict:
  """The decode settings every decoded-array cache key holds: size, channels, draft mode."""
  return {"res": info.resolution, "ch": info.channels, "draft": bool(draft)}


def _subset_present(info: DatasetInfo, classes, found) -> bool:
  """Per-host loading from a tree that holds (at least) the wanted registry classes."""
  return info.class_names is not None and classes is not None and \
      {info.class_names[c] for c in classes} <= set(found)


def _imagefolder_from_dir(info, split, root: pathlib.Path, classes, use_cache, num_threads,
                          draft):
  split_dir, entries = readers.list_imagefolder_dir(root, split)
  found = sorted({c for c, _ in entries})
  if info.class_names is None and split != "train" and (root / "train").is_dir():
    order_src = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    order = readers.resolve_class_order(order_src, None, info.num_classes, root / "train")
    extra = set(found) - set(order)
    if extra:
      raise DataError(f"{split_dir}: class folders {sorted(extra)[:3]} not in the train split")
  elif _subset_present(info, classes, found):
    order = list(info.class_names)       # a partial tree serves the classes it holds
  else:
    order = readers.resolve_class_order(found, info.class_names, info.num_classes, split_dir)
  wanted = [order[c] for c in (classes if classes is not None else range(len(order)))]
  label_of = {n: order.index(n) for n in wanted}
  rows = [(label_of[c], f) for c, f in entries if c in label_of and f is not None]
  counts = np.bincount([r[0] for r in rows], minlength=len(order))
  for n in wanted:
    if counts[label_of[n]] == 0:
      raise DataError(f"{split_dir / n}: class {label_of[n]} ({n}) has no images in "
                      f"split {split!r}")
  mtimes = [(split_dir / n).stat().st_mtime_ns for n in wanted if (split_dir / n).is_dir()]
  ident = {"dir": str(split_dir.resolve()), **_decode_ident(info, draft),
           "names": wanted, "mtimes": mtimes,
           "files": hashlib.sha256("\n".join(str(f) for _, f in rows).encode()).hexdigest()}

  def compute():
    imgs = readers.decode_many([f for _, f in rows], [str(f) for _, f in rows],
                               info.resolution, info.channels, num_threads,
                               what=f"decoding {info.name} {split} images", draft=draft)
    return {"images": imgs, "labels": np.asarray([r[0] for r in rows], np.int32)}

  out = cache_lib.cached("imagefolder", ident, compute, use_cache)
  return out["images"], out["labels"], str(split_dir)


def _imagefolder_from_archive(info, split, p: pathlib.Path, classes, use_cache, num_threads,
                              draft):
  """Decode every split of the archive in one pass, cache each, return the requested one.

  With `classes` (per-host loading) only those classes' images are read and decoded, and
  they are cached as their own entry."""
  names = list(info.class_names or [])
  subset = None if classes is None or not names else [names[c] for c in classes]
  ident = {**cache_lib.file_identity(p), **_decode_ident(info, draft), "dataset": info.name,
           "names": names, **({"subset": subset} if subset is not None else {})}
  hit = cache_lib.load(cache_lib.cache_path("imagefolder-archive", {**ident, "split": split})) \
      if use_cache else None
  if hit is None:
    splits = ("train",) + readers.TEST_SPLIT_DIRS
    scanned = readers.scan_imagefolder_archive(p, splits, keep=subset)
    if not scanned:
      raise DataError(f"{p}: no <split>/<class>/<image> entries in the archive")
    order_ref = scanned.get("train") or next(iter(scanned.values()))
    found = sorted({r[0] for r in order_ref})
    order = list(names) if _subset_present(info, classes, found) else \
        readers.resolve_class_order(found, info.class_names, info.num_classes, f"{p}:train")
    wanted = order if classes is None else [order[c] for c in classes]
    if subset is not None and subset != wanted:   # folders are not the registry names
      scanned = readers.scan_imagefolder_archive(p, splits, keep=wanted)
    label_of = {n: order.index(n) for n in wanted}
    test_dir = next((d for d in readers.TEST_SPLIT_DIRS if d in scanned), None)
    results = {}
    for name, canon in (("train", "train"), (test_dir, "test")):
      if name is None or name not in scanned:
        continue
      rows = [r for r in scanned[name] if r[0] in label_of]
      imgs = readers.decode_many([r[2] for r in rows], [f"{p}:{r[1]}" for r in rows],
                                 info.resolution, info.channels, num_threads,
                                 what=f"decoding {info.name} {canon} images", draft=draft)
      labels = np.asarray([label_of[r[0]] for r in rows], np.int32)
      results[canon] = {"images": imgs, "labels": labels}
      if use_cache:
        cache_lib.save(cache_lib.cache_path("imagefolder-archive", {**ident, "split": canon}),
                       results[canon])
    if split not in results:
      raise DataError(f"{p}: archive has no labelled {split!r} split")
    hit = results[split]
  return hit["images"], hit["labels"], str(p)


def _imagenet(info, split, p: pathlib.Path, classes, use_cache, num_threads, draft):
  """ImageNet's own layouts (`jaxcond.data.imagenet`): only the wanted classes are indexed,
  read and decoded; cached per split and class list."""
  layout = imagenet.find_layout(p)
  if layout is None:
    raise DataError(f"{p}: no ImageNet train tar, validation tar, flat validation folder or "
                    f"Kaggle ILSVRC/Data/CLS-LOC tree")
  order = list(info.class_names)
  wanted = [order[c] for c in (classes if classes is not None else range(len(order)))]
  ident = {**imagenet.split_identity(layout, split, wanted), **_decode_ident(info, draft)}
  where = str(layout.split(split).path)

  def compute():
    rows, _ = imagenet.split_rows(layout, split, wanted)
    label_of = {n: i for i, n in enumerate(order)}
    imgs = readers.decode_many([r[1] for r in rows], [r[2] for r in rows], info.resolution,
                               info.channels, num_threads,
                               what=f"decoding {info.name} {split} images", draft=draft)
    return {"images": imgs, "labels": np.asarray([label_of[r[0]] for r in rows], np.int32)}

  out = cache_lib.cached("imagenet", ident, compute, use_cache)
  return out["images"], out["labels"], where


def _finish(info: DatasetInfo, x, y, classes, where: str, split: str):
  """Shape / label-range / empty-class checks, then the per-host class filter."""
  if x.ndim != 4 or x.shape[1:] != tuple(info.image_shape):
    got = "x".join(map(str, x.shape[1:])) if x.ndim == 4 else f"{x.ndim}-d"
    raise DataError(f"{where}: images are {got}, {info.name} expects "
                    f"{'x'.join(map(str, info.image_shape))}")
  if len(x) != len(y):
    raise DataError(f"{where}: {len(y)} labels for {len(x)} images")
  if y.size and (y.min() < 0 or y.max() >= info.num_classes):
    bad = int(y[(y < 0) | (y >= info.num_classes)][0])
    raise DataError(f"{where}: label {bad} outside the class range [0, {info.num_classes})")
  if classes is not None:
    keep = np.isin(y, np.asarray(classes))
    x, y = x[keep], y[keep]
  counts = np.bincount(y, minlength=info.num_classes)
  for c in (classes if classes is not None else range(info.num_classes)):
    if counts[c] == 0:
      name = info.class_names[c] if info.class_names else str(c)
      raise DataError(f"{where}: class {c} ({name}) has no images in split {split!r}")
  return np.ascontiguousarray(x, np.uint8), y.astype(np.int32)


def holdout_mask(labels, per_class: int, num_classes: int) -> np.ndarray:
  """True for the last `per_class` images of each class, in the split's own order.

  A fixed rule rather than a seeded draw, so condensation and every later evaluation of
  the same config agree on the held-out images whatever their seeds, and loading only
  some classes (per-host loading) holds out the same images.
  """
  labels = np.asarray(labels)
  mask = np.zeros(labels.shape, bool)
  if per_class <= 0:
    return mask
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    if members.size:
      mask[members[-per_class:]] = True
  return mask


def _apply_holdout(info: DatasetInfo, x, y, holdout: int, split: str, classes, where: str):
  """train -> train minus the held-out images; test -> the held-out images instead."""
  counts = np.bincount(y, minlength=info.num_classes)
  for c in (classes if classes is not None else range(info.num_classes)):
    if counts[c] <= holdout:
      name = info.class_names[c] if info.class_names else str(c)
      raise DataError(f"dataset.holdout: class {c} ({name}) has {counts[c]} training images "
                      f"in {where}; holding out {holdout} would leave none to condense from")
  held = holdout_mask(y, holdout, info.num_classes)
  keep = held if split == "test" else ~held
  return x[keep], y[keep]


def split_loader(ds):
  """`load(split, classes=None)` for the dataset settings `ds` (anything with `name`,
  `source`, `path`, `resolution`, `holdout`, optionally `jpeg_draft`: `configs.DataSettings`
  or a config's `dataset`): the one place a program turns its dataset fields into
  `load_split` calls."""
  draft = bool(getattr(ds, "jpeg_draft", True))   # a settings object without the field: on

  def load(split: str, classes: Optional[Sequence[int]] = None):
    return load_split(ds.name, split, source=ds.source or "auto", path=ds.path or None,
                      resolution=ds.resolution or None, holdout=int(ds.holdout),
                      classes=None if classes is None else [int(c) for c in classes],
                      draft=draft)
  return load


def load_split(name: str, split: str, *, source: str = "auto", path=None,
               resolution: Optional[int] = None, classes: Optional[Sequence[int]] = None,
               cache: bool = True, class_list=None, num_threads: Optional[int] = None,
               holdout: int = 0, draft: bool = True):
  """One split as host arrays: (images uint8 [N, H, W, ch], labels int32 [N]).

  source: auto | tfds | tfds:<builder> | idx | cifar | svhn | imagefolder | imagenet | npz |
    digits.
  classes: load only these class indices (per-host loading); labels stay global. Only
    those classes' images are read and decoded (folders, archives, ImageNet tars, TFDS).
  cache: keep decoded ImageFolder / ImageNet / TFDS arrays in `$JAXCOND_CACHE` (default
    ~/.cache/jaxcond); the key holds the resolution, channels and `draft`.
  num_threads: decode threads, default `readers.decode_threads()` (the CPUs this process
    may use, or `$JAXCOND_DECODE_THREADS`).
  draft: JPEG draft decoding (`readers.decode_image`): scale down in the DCT domain before
    the resize; False decodes at full size (the pixels differ slightly, docs/data.md).
  split: train | test (val/validation are aliases of test) | extra (SVHN) | all (digits).
  holdout: > 0 carves a validation set out of the training split, the last `holdout`
    images of every class (`holdout_mask`): `train` returns the rest and `test` returns
    those images instead of the test split, so settings can be chosen without the test set.
  """
  info = get_info(name, resolution=resolution, class_list=class_list)
  if not isinstance(split, str) or split.lower() not in _SPLITS:
    raise ConfigError(f"split: expected train or test, got {split!r}")
  split = _SPLITS[split.lower()]
  if isinstance(holdout, bool) or not isinstance(holdout, (int, np.integer)) or holdout < 0:
    raise ConfigError(f"dataset.holdout: expected an integer >= 0, got {holdout!r}")
  if holdout and split not in ("train", "test"):
    raise ConfigError(f"dataset.holdout: applies to the train and test splits, not {split!r}")
  classes = _check_classes(classes, info.num_classes)
  if holdout:
    x, y = load_split(name, "train", source=source, path=path, resolution=resolution,
                      classes=classes, cache=cache, class_list=class_list,
                      num_threads=num_threads, draft=draft)
    return _apply_holdout(info, x, y, int(holdout), split, classes,
                          f"{info.name} train split")
  kind, p, builder = resolve_source(info, source, path)
  if split in ("extra", "all") and {"extra": "svhn", "all": "digits"}[split] != kind:
    owner = "SVHN" if split == "extra" else "digits"
    raise ConfigError(f"split: {split!r} exists only for {owner}")
  if kind == "digits":
    x, y = readers.read_digits(split)
    where = "sklearn digits"
  elif kind == "idx":
    identity.check(info, kind, p, split)   # MNIST vs Fashion-MNIST, before decoding
    x, y, files = readers.read_idx_split(p, split)
    where = str(files["images"])
    if y.size and y.max() >= info.num_classes:
      where = str(files["labels"])
  elif kind == "cifar":
    if info.name not in ("cifar10", "cifar100"):
      raise ConfigError(f"dataset.source: CIFAR pickles found at {p}, but dataset is {info.name}")
    identity.check(info, kind, p, split)   # CIFAR-10 vs CIFAR-100, before decoding
    x, y, _ = readers.read_cifar(p, split, info.name)
    where = str(p)
  elif kind == "svhn":
    x, y, f = readers.read_svhn(p, split)
    where = str(f)
  elif kind == "npz":
    x, y, f = readers.read_npz(p, split)
    where = str(f)
  elif kind == "imagefolder":
    p = pathlib.Path(p)
    if p.is_file():
      x, y, where = _imagefolder_from_archive(info, split, p, classes, cache, num_threads,
                                              draft)
    else:
      x, y, where = _imagefolder_from_dir(info, split, p, classes, cache, num_threads, draft)
  elif kind == "imagenet":
    if info.imagenet_ids is None:
      raise ConfigError(f"dataset.source: ImageNet files found at {p}, but dataset is "
                        f"{info.name}")
    x, y, where = _imagenet(info, split, pathlib.Path(p), classes, cache, num_threads, draft)
  elif kind == "tfds":
    last = None
    for tsplit in ((split,) if split != "test" else ("test", "validation")):
      try:
        x, y, where = tfds_source.load_tfds(
            builder, tsplit, p, size=info.resolution, channels=info.channels,
            class_names=info.class_names, num_classes=info.num_classes, classes=classes,
            use_cache=cache, draft=draft)
        break
      except DataError as e:
        last = e
    else:
      raise last
  else:  # pragma: no cover - resolve_source only returns the kinds above
    raise ConfigError(f"dataset.source: {kind!r}")
  return _finish(info, x, y, classes, where, split)


def dataset_identity(name: str, split: str = "train", *, source: str = "auto", path=None,
                     resolution: Optional[int] = None, class_list=None) -> str:
  """What the files `load_split` would read are (`jaxcond.data.identity`): one line for
  config.json, e.g. "cifar10 (modified copy: image tree ..., not the published pickles)".
  Raises DataError when they are another known dataset's files. Reads only file heads
  (IDX) or hashes archives (CIFAR), never decodes."""
  info = get_info(name, resolution=resolution, class_list=class_list)
  split = _SPLITS.get(str(split).lower(), "train")
  kind, p, _ = resolve_source(info, source, path)
  if kind == "idx" and split not in ("train", "test"):
    split = "train"
  return identity.check(info, kind, p, split)
