"""TFDS ArrayRecord sources, read without TensorFlow (see docs/data.md).

`tfds.data_source` gives random access to a prepared ArrayRecord dataset. Images are read
with `SkipDecoding` and decoded here with Pillow (resize + center crop, as for IDC / M3D), so
a label scan never decodes an image and ImageNet can be resized on the fly.

tensorflow_datasets is imported inside the functions only: `import jaxcond.data` stays light.

Preparing data: `prepare(name, data_dir, manual_dir=...)` calls `download_and_prepare` with
`file_format="array_record"`. TFDS's built-in `mnist`/`cifar10`/`imagenet2012` builders read
their archives through `tf.io.gfile`, so preparing them needs TensorFlow installed (once);
reading the result afterwards does not. ImageNet must be given as `manual_dir` (the
ILSVRC2012 tars). A builder of one's own (a `GeneratorBasedBuilder` yielding PIL images)
prepares without TensorFlow.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Optional, Sequence

import numpy as np

from jaxcond import progress
from jaxcond.data import cache, readers
from jaxcond.errors import DataError

_READ_CHUNK = 1024


def _tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DataError(f"tensorflow_datasets is not installed ({e}); pip install 'jaxcond[tfds]'") \
        from None
  return tfds


def default_data_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("TFDS_DATA_DIR") or
                      pathlib.Path.home() / "tensorflow_datasets").expanduser()


def find_prepared(tfds_name: str, data_dir) -> Optional[pathlib.Path]:
  """The `<data_dir>/<name>[/<config>]/<version>/dataset_info.json` folder, newest version."""
  base = pathlib.Path(data_dir) / tfds_name.split("/")[0]
  if not base.is_dir():
    return None
  infos = sorted(base.glob("*/dataset_info.json")) + sorted(base.glob("*/*/dataset_info.json"))
  return infos[-1].parent if infos else None


def open_source(tfds_name: str, split: str, data_dir, *, skip_image_decoding: bool = True):
  """`tfds.data_source(...)` with download disabled; errors become one-line DataErrors."""
  tfds = _tfds()
  data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
  decoders = None
  if skip_image_decoding:
    decoders = {"image": tfds.decode.SkipDecoding()}
  try:
    src = tfds.data_source(tfds_name, split=split, data_dir=str(data_dir), download=False,
                           decoders=decoders)
  except Exception as e:  # DatasetNotFoundError, AssertionError, NotImplementedError, ...
    msg = str(e).splitlines()[0][:200]
    raise DataError(f"{data_dir}: TFDS dataset {tfds_name!r} split {split!r} not readable "
                    f"as ArrayRecord ({type(e).__name__}: {msg})") from None
  return src


def _features(src):
  feats = src.dataset_info.features
  for key in ("image", "label"):
    if key not in feats:
      raise DataError(f"{src.dataset_info.data_dir}: TFDS features have no {key!r} key "
                      f"(have {list(feats.keys())})")
  return feats


def label_map(src, class_names: Optional[Sequence[str]], num_classes: int):
  """Source label -> dataset label (-1: not in this dataset), matching by class names.

  Lets an ImageNet subset be read from `imagenet2012` (1000 WordNet-id labels), and keeps
  identity when the source has exactly the dataset's classes.
  """
  names = list(_features(src)["label"].names)
  where = src.dataset_info.data_dir
  if class_names is not None and set(class_names) <= set(names):
    m = np.full(len(names), -1, np.int64)
    for i, n in enumerate(class_names):
      m[names.index(n)] = i
    return m
  if len(names) == num_classes:
    return np.arange(num_classes)
  raise DataError(f"{where}: TFDS labels have {len(names)} classes, expected {num_classes}")


def scan_labels(src, *, use_cache: bool = True) -> np.ndarray:
  """All labels of a source as int32 [N] (images are not decoded); cached per source."""
  info_file = pathlib.Path(src.dataset_info.data_dir) / "dataset_info.json"
  ident = {"tfds": str(pathlib.Path(src.dataset_info.data_dir).resolve()),
           "split": str(src.split), "n": len(src)}
  if info_file.is_file():
    ident.update(cache.file_identity(info_file))

  def compute():
    labels = np.empty(len(src), np.int32)
    for s in range(0, len(src), _READ_CHUNK):
      rows = src.__getitems__(list(range(s, min(s + _READ_CHUNK, len(src)))))
      labels[s:s + len(rows)] = [int(r["label"]) for r in rows]
    return {"labels": labels}

  return cache.cached("tfds-labels", ident, compute, use_cache)["labels"]


def read_images(src, indices: Sequence[int], size: int, channels: int,
                num_threads: Optional[int] = None, draft: bool = True) -> np.ndarray:
  """Records -> uint8 [n, size, size, ch]; encoded images decoded + resized with Pillow
  (`draft`: JPEG draft decoding, `readers.decode_image`)."""
  where = f"{src.dataset_info.data_dir}[{src.split}]"
  out = np.empty((len(indices), size, size, channels), np.uint8)
  bar = progress.Progress(f"reading {where}", len(indices), unit="images")
  for s in range(0, len(indices), _READ_CHUNK):
    idx = [int(i) for i in indices[s:s + _READ_CHUNK]]
    rows = src.__getitems__(idx)
    imgs = [r["image"] for r in rows]
    if imgs and isinstance(imgs[0], (bytes, bytearray)):
      out[s:s + len(idx)] = readers.decode_many(
          imgs, [f"{where} record {i}" for i in idx], size, channels, num_threads,
          draft=draft)
    else:
      for j, (i, im) in enumerate(zip(idx, imgs)):
        out[s + j] = _fit_array(np.asarray(im), size, channels, f"{where} record {i}")
    bar.update(len(idx))
  bar.close()
  return out


def _fit_array(a: np.ndarray, size: int, channels: int, where: str) -> np.ndarray:
  if a.ndim == 2:
    a = a[..., None]
  if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
    raise DataError(f"{where}: image is {a.dtype} {a.shape}, expected uint8 HxWxC")
  if a.shape == (size, size, channels):
    return a
  from PIL import Image
  img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
  img = readers.resize_center_crop(img.convert("L" if channels == 1 else "RGB"), size)
  arr = np.asarray(img, np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr


def load_tfds(tfds_name: str, split: str, data_dir, *, size: int, channels: int,
              class_names: Optional[Sequence[str]], num_classes: int,
              classes: Optional[Sequence[int]] = None, use_cache: bool = True,
              draft: bool = True):
  """Whole split (or only `classes`) -> (images uint8 [N, size, size, ch], labels int32 [N])."""
  src = open_source(tfds_name, split, data_dir)
  lmap = label_map(src, class_names, num_classes)
  raw = scan_labels(src, use_cache=use_cache)
  if raw.size and (raw.min() < 0 or raw.max() >= len(lmap)):
    raise DataError(f"{src.dataset_info.data_dir}: label {raw.max()} outside the "
                    f"{len(lmap)} TFDS classes")
  labels = lmap[raw]
  keep = labels >= 0
  if classes is not None:
    keep &= np.isin(labels, np.asarray(classes))
  idx = np.flatnonzero(keep)
  info_file = pathlib.Path(src.dataset_info.data_dir) / "dataset_info.json"
  ident = {"tfds": str(pathlib.Path(src.dataset_info.data_dir).resolve()), "split": split,
           "size": size, "channels": channels, "n": len(src), "draft": bool(draft),
           "idx": hashlib.sha256(idx.tobytes()).hexdigest()}
  if info_file.is_file():
    ident.update(cache.file_identity(info_file))
  out = cache.cached("tfds", ident, lambda: {"images": read_images(src, idx, size, channels,
                                                             draft=draft)},
                     use_cache)
  return out["images"], labels[idx].astype(np.int32), str(src.dataset_info.data_dir)


def prepare(tfds_name: str, data_dir, *, manual_dir=None, file_format: str = "array_record"):
  """`download_and_prepare` an ArrayRecord copy (see module docstring for what needs TF)."""
  tfds = _tfds()
  try:
    builder = tfds.builder(tfds_name, data_dir=str(data_dir), file_format=file_format)
    cfg = tfds.download.DownloadConfig(manual_dir=str(manual_dir)) if manual_dir else None
    builder.download_and_prepare(download_config=cfg)
  except Exception as e:
    msg = str(e).splitlines()[0][:200] if str(e) else ""
    raise DataError(f"{data_dir}: preparing TFDS {tfds_name!r} failed ({type(e).__name__}: "
                    f"{msg}); built-in builders need TensorFlow for preparation") from None
  return builder
