"""The synthetic-set file, `synthetic.npz`: one home for writing, reading and checking it.

A condensed set is only useful if other programs (and other people's tools) can read it
without knowing how it was made, so the file carries its own dataset facts. Format
(`format_version` 1; a plain numpy `.npz`, no pickled objects):

  x [N, H, W, ch] float32   the stored images, normalised ((pixels/255 − mean)/std),
  y [N] int32               grouped by class, class order 0..C−1
  x_decoded, y_decoded      multi-formation sets only (factor > 1, M3D/IDC, arXiv
                            2205.14959 §3): the decoded images networks train on
  mean, std [ch] float32    the normalisation of `x` (pixels in [0, 1] units)
  dataset, method, space    strings; `space` is the pixel space the set was optimised in
  factor, ipc, steps, seed  integers
  class_names [C]           strings (files written before this field get "0".."C−1")
  format_version            integer

`load(path)` needs no shape, class count or config: `jaxcond.load("runs/x/synthetic.npz")`
in a notebook returns a `SyntheticSet`. Programs pass what they expect (`num_classes`,
`image_shape`, `mean`, `std`, `dataset`) and get a one-line `DataError` naming the file when
it does not fit.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import zipfile
from typing import Sequence

import numpy as np

from jaxcond import files
from jaxcond.data import registry
from jaxcond.errors import DataError

FORMAT_VERSION = 1
_NPZ_MAGIC = b"PK"


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticSet:
  """A condensed set as numpy arrays plus the facts needed to use it (module doc)."""
  x: np.ndarray                 # [N, H, W, ch] normalised training images (decoded if any)
  y: np.ndarray                 # [N] int32
  stored: np.ndarray            # [M, H, W, ch] normalised stored images (M = C·ipc)
  stored_y: np.ndarray          # [M] int32
  mean: tuple
  std: tuple
  dataset: str = ""
  method: str = ""
  space: str = "normalized"
  factor: int = 1
  ipc: int = 0
  steps: int = 0
  seed: int = 0
  class_names: tuple = ()
  decoded: bool = False         # `x` holds decoded multi-formation images, not `stored`
  path: str = ""

  @property
  def num_classes(self) -> int:
    return len(self.class_names) if self.class_names else int(self.y.max()) + 1

  @property
  def image_shape(self) -> tuple:
    return tuple(int(s) for s in self.x.shape[1:])

  def pixels(self, which: str = "train") -> np.ndarray:
    """uint8 [N, H, W, ch] images, de-normalised and rounded: `which` "train" (what
    networks train on: decoded where there is a decoding) or "stored"."""
    x = self.x if which == "train" else self.stored
    return to_uint8(x, self.mean, self.std)

  def by_class(self, which: str = "train") -> list[np.ndarray]:
    """Per-class lists of normalised images, class order 0..C−1."""
    x, y = (self.x, self.y) if which == "train" else (self.stored, self.stored_y)
    return [x[y == c] for c in range(self.num_classes)]


def to_uint8(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """Normalised float images -> uint8 pixels (x·std + mean, clipped to [0, 1], ×255)."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  unit = np.clip(np.asarray(x, np.float32) * std + mean, 0.0, 1.0)
  return np.round(unit * 255.0).astype(np.uint8)


def normalize_uint8(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """uint8 pixels -> normalised float32, (x/255 − mean)/std: the one host-side copy of the
  normalisation (the jitted one is `jaxcond.data.normalize`)."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  return (np.asarray(x, np.float32) / 255.0 - mean) / std


RAW_PIXEL_LIMIT = 10.0   # raw pixels reach 255; [0, 1] pixels and normalised data far less


def check_normalized(x, what: str = "images") -> None:
  """One-line DataError unless `x` holds normalised images, `(pixels/255 − mean)/std`: a
  float dtype, finite, and neither raw [0, 255] pixels nor [0, 1] pixels. Both of those
  are never negative, where normalised images are; a condensed set may hold values far
  outside the real data's range (DM's image learning rate is 1), so only non-negative
  arrays are judged by their range.

  Library entry points that train or test networks on images call it (`jaxcond.evaluate`):
  raw pixels train without any error but score far lower (on digits, uint8 images gave
  62–79 % where the normalised ones give 83–86 %). Normalise with `normalize_uint8`.
  """
  a = np.asarray(x)
  fix = "normalise them with jaxcond.synthetic_io.normalize_uint8(x, mean, std)"
  if not np.issubdtype(a.dtype, np.floating):
    raise DataError(f"{what}: {a.dtype} images; expected normalised float images "
                    f"((pixels/255 - mean)/std): {fix}")
  if a.size == 0:
    return
  lo, hi = float(np.min(a)), float(np.max(a))
  if not (np.isfinite(lo) and np.isfinite(hi)):
    raise DataError(f"{what}: non-finite values (NaN or Inf) in the images")
  if lo >= 0.0 and hi > RAW_PIXEL_LIMIT:
    raise DataError(f"{what}: values up to {hi:.4g}, which look like raw [0, 255] pixels, "
                    f"not normalised images: {fix}")
  if lo >= 0.0 and hi <= 1.0:
    raise DataError(f"{what}: every value is in [0, 1], which looks like unnormalised "
                    f"pixels (normalised images have negative values): {fix} (or "
                    f"(x - mean)/std for [0, 1] pixels)")


def make(stored: np.ndarray, decoded: np.ndarray | None = None, *, mean, std,
         dataset: str = "", method: str = "", space: str = "normalized", factor: int = 1,
         steps: int = 0, seed: int = 0, class_names: Sequence[str] = ()) -> SyntheticSet:
  """Builds a set from per-class arrays: `stored` [C, ipc, H, W, ch] and optionally
  `decoded` [C, n, H, W, ch], both normalised."""
  stored = np.asarray(stored, np.float32)
  c, ipc = stored.shape[:2]
  hwc = stored.shape[2:]
  stored_y = np.repeat(np.arange(c, dtype=np.int32), ipc)
  x, y = stored.reshape((c * ipc,) + hwc), stored_y
  if decoded is not None:
    decoded = np.asarray(decoded, np.float32)
    n = decoded.shape[1]
    x, y = decoded.reshape((c * n,) + hwc), np.repeat(np.arange(c, dtype=np.int32), n)
  names = tuple(str(n) for n in class_names) or tuple(str(i) for i in range(c))
  if len(names) != c:
    raise ValueError(f"{len(names)} class names for {c} classes")
  return SyntheticSet(x=x, y=y, stored=stored.reshape((c * ipc,) + hwc), stored_y=stored_y,
                      mean=tuple(float(m) for m in np.ravel(mean)),
                      std=tuple(float(s) for s in np.ravel(std)), dataset=str(dataset),
                      method=str(method), space=str(space), factor=int(factor), ipc=int(ipc),
                      steps=int(steps), seed=int(seed), class_names=names,
                      decoded=decoded is not None)


def save(path, sset: SyntheticSet) -> str:
  """Writes `sset` to `path` atomically (`jaxcond.files`: the old file or the new one,
  never a partial one; StorageError naming the file when the storage refuses it)."""
  path = os.fspath(path)
  arrays = {
      "x": np.asarray(sset.stored, np.float32), "y": np.asarray(sset.stored_y, np.int32),
      "mean": np.asarray(sset.mean, np.float32), "std": np.asarray(sset.std, np.float32),
      "factor": np.int64(sset.factor), "space": np.str_(sset.space),
      "method": np.str_(sset.method), "dataset": np.str_(sset.dataset),
      "ipc": np.int64(sset.ipc), "steps": np.int64(sset.steps), "seed": np.int64(sset.seed),
      "class_names": np.asarray(sset.class_names, dtype=np.str_),
      "format_version": np.int64(FORMAT_VERSION),
  }
  if sset.decoded:
    arrays["x_decoded"] = np.asarray(sset.x, np.float32)
    arrays["y_decoded"] = np.asarray(sset.y, np.int32)
  return files.write_npz(path, **arrays)


def _canonical(name: str) -> str:
  try:
    return registry.canonical_name(name)
  except Exception:  # pylint: disable=broad-except  (unknown names compare as written)
    return str(name).strip().lower()


def _read_arrays(p) -> dict:
  """The arrays of the .npz at `p` (a local path or a bucket URL, `jaxcond.files`)."""
  if not files.exists(p):
    raise DataError(f"{p}: synthetic set not found")
  if files.isdir(p):
    raise DataError(f"{p}: is a folder, expected a synthetic.npz file")
  src = io.BytesIO(files.read_bytes(p)) if files.is_remote(p) else p
  if isinstance(src, io.BytesIO):
    head = src.getvalue()[:4]
  else:
    with open(src, "rb") as f:
      head = f.read(4)
  if not head.startswith(_NPZ_MAGIC):
    kind = "an empty file" if not head else "not a zip archive"
    raise DataError(f"{p}: not a .npz synthetic set ({kind}; expected the synthetic.npz "
                    "that jaxcond.condense writes)")
  try:
    with np.load(src, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except (zipfile.BadZipFile, EOFError) as err:
    raise DataError(f"{p}: truncated or corrupt .npz ({err})") from None
  except ValueError as err:
    if "pickled" in str(err):
      raise DataError(f"{p}: holds pickled Python objects, which jaxcond never writes "
                      "(not a synthetic set)") from None
    raise DataError(f"{p}: unreadable .npz ({err})") from None
  except Exception as err:  # pylint: disable=broad-except  (zlib / OS errors of bad files)
    raise DataError(f"{p}: unreadable .npz ({type(err).__name__}: {err})") from None


def _scalar(arrays, key, default):
  if key not in arrays:
    return default
  v = arrays[key]
  return v.item() if v.ndim == 0 else default


def load(path, *, num_classes: int | None = None, image_shape: Sequence[int] | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         dataset: str | None = None) -> SyntheticSet:
  """Reads and checks a synthetic.npz; every expectation given is checked (module doc).

  Raises `DataError` (one line, naming the file) for a missing, truncated or non-npz file,
  missing arrays, shapes or labels that do not fit, non-finite pixels, or a set made for
  another dataset / normalisation.
  """
  p = os.fspath(path) if files.is_remote(path) else pathlib.Path(path)
  arrays = _read_arrays(p)
  for k in ("x", "y"):
    if k not in arrays:
      raise DataError(f"{p}: missing array {k!r} (has {sorted(arrays)}); not a jaxcond "
                      "synthetic set?")
  has_dec = "x_decoded" in arrays
  if has_dec and "y_decoded" not in arrays:
    raise DataError(f"{p}: has 'x_decoded' but no 'y_decoded'")
  pairs = [("x", "y")] + ([("x_decoded", "y_decoded")] if has_dec else [])
  for xk, yk in pairs:
    x, y = arrays[xk], arrays[yk]
    if x.ndim != 4:
      raise DataError(f"{p}: {xk} has shape {x.shape}, expected [N, H, W, channels]")
    if image_shape is not None and tuple(x.shape[1:]) != tuple(int(s) for s in image_shape):
      raise DataError(f"{p}: {xk} has images of shape {tuple(x.shape[1:])}, expected "
                      f"{tuple(image_shape)} for this dataset")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
      raise DataError(f"{p}: labels {yk} shape {y.shape} does not match {xk} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer):
      raise DataError(f"{p}: labels {yk} must be integers, got {y.dtype}")
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
      raise DataError(f"{p}: {xk} must hold finite floats")
  x, y = (arrays["x_decoded"], arrays["y_decoded"]) if has_dec else (arrays["x"], arrays["y"])
  names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else ()
  c = num_classes if num_classes is not None else (len(names) or
                                                    (int(y.max()) + 1 if y.size else 0))
  if names and len(names) != c:
    raise DataError(f"{p}: made for {len(names)} classes, expected {c}")
  if y.size and (y.min() < 0 or y.max() >= c):
    raise DataError(f"{p}: labels span [{y.min()}, {y.max()}], outside the dataset's "
                    f"{c} classes")
  missing = sorted(set(range(c)) - set(np.unique(y).tolist()))
  if missing:
    raise DataError(f"{p}: no images for class(es) {missing[:10]} of {c}")
  ch = x.shape[-1]
  stats = {}
  for key, ref in (("mean", mean), ("std", std)):
    got = (np.asarray(arrays[key], np.float64).reshape(-1) if key in arrays
           else np.full(ch, 0.0 if key == "mean" else 1.0))
    if got.shape != (ch,):
      raise DataError(f"{p}: normalisation {key} has {got.size} values for {ch} channels")
    if ref is not None and (len(ref) != ch or not np.allclose(got, ref, atol=1e-4)):
      raise DataError(f"{p}: normalisation {key} {got.tolist()} differs from the dataset's "
                      f"{list(ref)} (set made for another dataset?)")
    stats[key] = tuple(float(v) for v in got)
  made_for = str(_scalar(arrays, "dataset", ""))
  if dataset is not None and made_for and _canonical(made_for) != _canonical(dataset):
    raise DataError(f"{p}: made for dataset {made_for!r}, config says {dataset!r}")
  stored, stored_y = arrays["x"], arrays["y"]
  ipc = int(_scalar(arrays, "ipc", 0)) or (stored.shape[0] // max(1, c))
  return SyntheticSet(
      x=x.astype(np.float32), y=y.astype(np.int32), stored=stored.astype(np.float32),
      stored_y=stored_y.astype(np.int32), mean=stats["mean"], std=stats["std"],
      dataset=made_for, method=str(_scalar(arrays, "method", "")),
      space=str(_scalar(arrays, "space", "normalized")),
      factor=int(_scalar(arrays, "factor", 1)), ipc=ipc,
      steps=int(_scalar(arrays, "steps", 0)), seed=int(_scalar(arrays, "seed", 0)),
      class_names=names or tuple(str(i) for i in range(c)), decoded=has_dec, path=str(p))
