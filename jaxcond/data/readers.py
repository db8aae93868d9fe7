"""Readers for the standard distribution files of the datasets the papers use.

Each reader returns host numpy arrays: images uint8 [N, H, W, ch] (NHWC) and labels int32 [N],
and raises a one-line `DataError` that names the file and the problem for bad input.

Formats:
- IDX (MNIST, Fashion-MNIST): big-endian header, magic 0x0000 08 <ndim>, `.gz` or raw.
- CIFAR-10/100 python pickles (`cifar-*-python.tar.gz` or its extracted folder), unpickled
  with an allow-list (dicts, lists, numpy arrays only); also the binary batches
  (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`, the files TFDS prepares from).
- SVHN cropped digits `.mat` (X [32, 32, 3, N], y [N, 1], label 10 means digit 0).
- `.npz` with keys x/y or images/labels (or x_<split>/y_<split>).
- ImageFolder trees `<split>/<class>/**/*.jpg` (TinyImageNet's `val/images` +
  `val_annotations.txt` too), as a folder or straight from a `.tar(.gz)` / `.zip` archive.
  Images are resized (shorter side, bilinear) and center-cropped like torchvision's
  `Resize(r)` + `CenterCrop(r)` (the IDC / M3D ImageNet preprocessing); JPEGs are first
  scaled down in the DCT domain (`Image.draft`) unless `draft=False`.
- Uncompressed tars indexed in place (`index_tar` -> `FileSlice`s), the way ImageNet's own
  tars are read (`jaxcond.data.imagenet`).
- scikit-learn `digits` (always offline; see registry for the uint8 rescaling and split).
"""
from __future__ import annotations

import concurrent.futures
import gzip
import io
import os
import pathlib
import pickle
import tarfile
import warnings
import zipfile
from typing import NamedTuple, Optional, Sequence

import numpy as np

from jaxcond import progress
from jaxcond.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
TEST_SPLIT_DIRS = ("test", "val", "validation")


def is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_SUFFIXES)


def is_archive(path) -> bool:
  return str(path).lower().endswith(ARCHIVE_SUFFIXES)


# --------------------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path) -> np.ndarray:
  """One IDX file (`.gz` or raw) -> ndarray with the header's shape (uint8 data only).

  The payload is read straight into the result array (peak host memory = one copy).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"{path}: file not found")
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      head = f.read(4)
      if len(head) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(head)} bytes, no header)")
      if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES or not 1 <= head[3] <= 4:
        raise DataError(f"{path}: not an IDX file of uint8 (magic 0x{head.hex()}, "
                        "expected 0x00000801 or 0x00000803)")
      ndim = head[3]
      raw_dims = f.read(4 * ndim)
      if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
      dims = tuple(int(d) for d in np.frombuffer(raw_dims, ">u4"))
      out = np.empty(dims, np.uint8)
      got = 0
      view = memoryview(out.reshape(-1))
      while got < out.size:
        n = f.readinto(view[got:got + (1 << 20)])   # chunks: gzip copies via a temp
        if not n:
          break
        got += n
      trailing = bool(f.read(1))
  except (EOFError, OSError, gzip.BadGzipFile) as e:
    raise DataError(f"{path}: truncated or corrupt gzip stream ({e})") from None
  if got < out.size or trailing:
    what = "truncated" if got < out.size else "has trailing bytes"
    raise DataError(f"{path}: {what}: header says {'x'.join(map(str, dims))} = "
                    f"{out.size} pixel bytes, file has {got}{'+' if trailing else ''}")
  return out


def _idx_file(folder: pathlib.Path, prefix: str, kind: str) -> pathlib.Path:
  """`train-images-idx3-ubyte.gz`, MNIST's `train-images.idx3-ubyte`, raw or gzipped."""
  rank = "idx3" if kind == "images" else "idx1"
  for sep in ("-", "."):
    for ext in (".gz", ""):
      p = folder / f"{prefix}-{kind}{sep}{rank}-ubyte{ext}"
      if p.is_file():
        return p
  raise DataError(f"{folder / f'{prefix}-{kind}-{rank}-ubyte.gz'}: file not found")


def read_idx_split(folder, split: str):
  """MNIST / Fashion-MNIST split from a folder of IDX files -> (images [N,H,W,1], labels, file)."""
  folder = pathlib.Path(folder)
  if folder.is_file():
    folder = folder.parent
  prefix = {"train": "train", "test": "t10k"}[split]
  xf, yf = _idx_file(folder, prefix, "images"), _idx_file(folder, prefix, "labels")
  x, y = read_idx(xf), read_idx(yf)
  if x.ndim != 3:
    raise DataError(f"{xf}: expected a 3-d IDX image file, got {x.ndim}-d")
  if y.ndim != 1:
    raise DataError(f"{yf}: expected a 1-d IDX label file, got {y.ndim}-d")
  if len(x) != len(y):
    raise DataError(f"{yf}: {len(y)} labels for {len(x)} images in {xf.name}")
  return x[..., None], y.astype(np.int32), {"images": xf, "labels": yf}


# ------------------------------------------------------------------------------------- CIFAR
class _SafeUnpickler(pickle.Unpickler):
  """CIFAR batches hold only dicts, lists, bytes and numpy arrays: allow nothing else."""
  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
              ("numpy._core.multiarray", "scalar"), ("copy_reg", "_reconstructor"),
              ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
              ("_codecs", "encode"), ("numpy._core.numeric", "_frombuffer"),
              ("numpy.core.numeric", "_frombuffer")}

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
    return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
  try:
    obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
  except Exception as e:  # pickle raises many types on garbage input
    raise DataError(f"{where}: not a CIFAR python pickle ({type(e).__name__}: {e})") from None
  if not isinstance(obj, dict):
    raise DataError(f"{where}: not a CIFAR python pickle (top level is {type(obj).__name__})")
  return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


_CIFAR_FILES = {
    ("cifar10", "train"): [f"data_batch_{i}" for i in range(1, 6)],
    ("cifar10", "test"): ["test_batch"],
    ("cifar100", "train"): ["train"],
    ("cifar100", "test"): ["test"],
}
_CIFAR_META = {"cifar10": ("batches.meta", "label_names", "batches.meta.txt"),
               "cifar100": ("meta", "fine_label_names", "fine_label_names.txt")}
CIFAR_DIRS = ("cifar-10-batches-py", "cifar-100-python", "cifar-10-batches-bin", "cifar-100-binary")


def _cifar_members(path: pathlib.Path, wanted: Sequence[str]) -> dict:
  """Basename -> bytes for the wanted batch files, from an archive or a folder."""
  found = {}
  if path.is_file():
    try:
      with tarfile.open(path, "r:*") as tar:
        for m in tar:
          base = m.name.rsplit("/", 1)[-1]
          if m.isfile() and base in wanted and base not in found:
            found[base] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as e:
      raise DataError(f"{path}: unreadable tar archive ({e})") from None
  else:
    for sub in ("",) + CIFAR_DIRS:
      for base in wanted:
        p = path / sub / base
        if base not in found and p.is_file():
          found[base] = p.read_bytes()
  return found


def _cifar_binary(blob: bytes, dataset: str, where: str):
  """Binary batches: per record [coarse label (CIFAR-100)] label, then 3072 pixel bytes."""
  head = 1 if dataset == "cifar10" else 2
  rec = head + 3072
  if len(blob) % rec:
    raise DataError(f"{where}: truncated CIFAR binary batch ({len(blob)} bytes is not a "
                    f"multiple of {rec})")
  arr = np.frombuffer(blob, np.uint8).reshape(-1, rec)
  return arr[:, head:], arr[:, head - 1].astype(np.int64)


def read_cifar(path, split: str, dataset: str):
  """CIFAR-10/100 split, pickles or binary batches -> (images [N,32,32,3], labels, names)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError(f"{path}: file not found")
  files = _CIFAR_FILES[(dataset, split)]
  bins = [f + ".bin" for f in files]
  meta_name, names_key, meta_txt = _CIFAR_META[dataset]
  found = _cifar_members(path, files + bins + [meta_name, meta_txt])
  binary = not all(f in found for f in files) and all(b in found for b in bins)
  if not binary:
    missing = [f for f in files if f not in found]
    if missing:
      raise DataError(f"{path}: CIFAR batch file {missing[0]!r} not found")
  label_key = "labels" if dataset == "cifar10" else "fine_labels"
  xs, ys = [], []
  for f in (bins if binary else files):
    where = f"{path}:{f}"
    if binary:
      x, y = _cifar_binary(found[f], dataset, where)
    else:
      d = _unpickle(found[f], where)
      if "data" not in d or label_key not in d:
        raise DataError(f"{where}: CIFAR batch without 'data'/'{label_key}' keys")
      x = np.asarray(d["data"])
      if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{where}: images are {x.dtype} {x.shape}, expected uint8 [N, 3072]")
      y = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
      if len(y) != len(x):
        raise DataError(f"{where}: {len(y)} labels for {len(x)} images")
    xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    ys.append(y)
  names = None
  if not binary and meta_name in found:
    meta = _unpickle(found[meta_name], f"{path}:{meta_name}")
    if names_key in meta:
      names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key])
  elif binary and meta_txt in found:
    names = tuple(n for n in found[meta_txt].decode().split() if n)
  return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys).astype(np.int32), names


# -------------------------------------------------------------------------------------- SVHN
def read_svhn(path, split: str):
  """SVHN cropped-digits `<split>_32x32.mat` -> (images [N,32,32,3], labels with 10 -> 0, file)."""
  path = pathlib.Path(path)
  f = path if path.is_file() else path / f"{split}_32x32.mat"
  if not f.is_file():
    raise DataError(f"{f}: file not found")
  import scipy.io  # optional dependency (jaxcond[extras])
  try:
    mat = scipy.io.loadmat(f)
  except Exception as e:  # scipy raises ValueError/TypeError/OSError on bad files
    raise DataError(f"{f}: unreadable .mat file ({type(e).__name__}: {e})") from None
  if "X" not in mat or "y" not in mat:
    raise DataError(f"{f}: SVHN .mat without 'X'/'y' variables")
  x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
  if x.ndim != 4 or x.shape[2] != 3:
    raise DataError(f"{f}: X has shape {x.shape}, expected [H, W, 3, N]")
  if x.shape[3] != len(y):
    raise DataError(f"{f}: {len(y)} labels for {x.shape[3]} images")
  y = y.astype(np.int64)
  y[y == 10] = 0
  return np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(np.uint8, copy=False), \
      y.astype(np.int32), f


# --------------------------------------------------------------------------------------- npz
def read_npz(path, split: str):
  """`.npz` with x/y, images/labels, or x_<split>/y_<split> -> (images, labels, file)."""
  path = pathlib.Path(path)
  f = path if path.is_file() else path / f"{split}.npz"
  if not f.is_file():
    raise DataError(f"{f}: file not found")
  try:
    with np.load(f, allow_pickle=False) as z:
      keys = set(z.files)
      for xk, yk in (("x", "y"), ("images", "labels"), (f"x_{split}", f"y_{split}"),
                     (f"{split}_images", f"{split}_labels")):
        if xk in keys and yk in keys:
          x, y = z[xk], z[yk]
          break
      else:
        raise DataError(f"{f}: no x/y or images/labels arrays (has {sorted(keys)})")
  except DataError:
    raise
  except Exception as e:
    raise DataError(f"{f}: unreadable .npz ({type(e).__name__}: {e})") from None
  if x.ndim == 3:
    x = x[..., None]
  if x.dtype != np.uint8:
    raise DataError(f"{f}: images are {x.dtype}, expected uint8 0..255")
  y = np.asarray(y).reshape(-1)
  if not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{f}: labels are {y.dtype}, expected integers")
  if len(y) != len(x):
    raise DataError(f"{f}: {len(y)} labels for {len(x)} images")
  return x, y.astype(np.int32), f


# ------------------------------------------------------------------------------------ digits
def read_digits(split: str):
  """scikit-learn digits, uint8 [N, 8, 8, 1] = round(v*255/16); every 5th per class is test."""
  from sklearn.datasets import load_digits
  d = load_digits()
  x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = d.target.astype(np.int32)
  test = np.zeros(len(y), bool)
  for c in range(10):
    test[np.flatnonzero(y == c)[4::5]] = True
  keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
  return x[keep], y[keep]


# ---------------------------------------------------------------------------- image decoding
THREADS_ENV = "JAXCOND_DECODE_THREADS"


def decode_threads() -> int:
  """Decode threads: `$JAXCOND_DECODE_THREADS`, else the CPUs this process may run on.

  `os.sched_getaffinity` counts the CPUs of the process's affinity mask (a container's or a
  `taskset`'s share), which `os.cpu_count` would overstate; no fixed cap, since a TPU VM host
  has 96-240 vCPUs."""
  env = os.environ.get(THREADS_ENV, "").strip()
  if env:
    if not env.isdigit() or int(env) < 1:
      raise ConfigError(f"{THREADS_ENV}: expected a positive integer, got {env!r}")
    return int(env)
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except (AttributeError, OSError):   # not Linux
    return max(1, os.cpu_count() or 1)


class FileSlice(NamedTuple):
  """`size` bytes at `offset` of the file `path`: a member of an uncompressed tar, read in place
  (no extraction) by whichever decode thread needs it."""
  path: str
  offset: int
  size: int

  def read(self) -> bytes:
    with open(self.path, "rb", buffering=0) as f:
      f.seek(self.offset)
      data = f.read(self.size)
    if len(data) != self.size:
      raise DataError(f"{self.path}: truncated ({len(data)} of {self.size} bytes at offset "
                      f"{self.offset})")
    return data


def resize_target(w: int, h: int, size: int) -> tuple:
  """torchvision Resize(size): the shorter side becomes `size`, the longer one
  `int(size * long / short)`."""
  if w <= h:
    return size, int(size * h / w)
  return int(size * w / h), size


def resize_center_crop(img, size: int, *, source_size=None, box=None):
  """torchvision Resize(size) (shorter side, bilinear) then CenterCrop(size), on a PIL image.

  source_size / box: after `Image.draft` the image is a DCT-scaled copy of a `source_size`
  original and `box` is that original's extent in its pixels; the output size and crop come
  from `source_size`, so a draft decode is cut exactly like the full one.
  """
  from PIL import Image
  w, h = source_size or img.size
  if (w, h) == (size, size) and img.size == (w, h):
    return img
  nw, nh = resize_target(w, h, size)
  if img.size != (nw, nh):
    img = img.resize((nw, nh), Image.BILINEAR, box=box)
  left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
  if (nw, nh) != (size, size):
    img = img.crop((left, top, left + size, top + size))
  return img


def decode_image(src, size: int, channels: int, where: Optional[str] = None,
                 draft: bool = True) -> np.ndarray:
  """Encoded bytes, a file path or a `FileSlice` -> uint8 [size, size, channels].

  draft: let the JPEG decoder scale down by 1/2, 1/4 or 1/8 in the DCT domain (`Image.draft`)
  to the smallest size that still covers the Resize target, then resize + centre crop as
  usual. A 500x375 ImageNet JPEG decoded for 64 px is 125x94 instead of 500x375, about
  half the time; the pixels move a little (docs/data.md, "Draft decoding"). Non-JPEGs and
  images smaller than twice the target decode as before.
  """
  from PIL import Image, UnidentifiedImageError  # optional, heavy
  try:
    if isinstance(src, FileSlice):
      src = src.read()
    with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as img:
      full, box = img.size, None
      if draft:
        got = img.draft(img.mode, resize_target(full[0], full[1], size))
        box = got[1] if got else None
      img = img.convert("L" if channels == 1 else "RGB")
      img = resize_center_crop(img, size, source_size=full, box=box)
      arr = np.asarray(img, dtype=np.uint8)
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
    raise DataError(f"{where or src}: cannot decode image ({e})") from None
  return arr[..., None] if arr.ndim == 2 else arr


def decode_many(srcs: Sequence, wheres: Sequence[str], size: int, channels: int,
                num_threads: Optional[int] = None, what: Optional[str] = None,
                draft: bool = True) -> np.ndarray:
  """Decode in a thread pool (Pillow releases the GIL while decoding) into one array.

  num_threads: default `decode_threads()` (the CPUs this process may use). `what` names the
  work in `jaxcond.progress` lines (counts, rate, ETA; decoding CIFAR-10's 60k JPEGs takes
  10-15 s on two cores, ImageNet hours); None prints nothing. draft: `decode_image`."""
  out = np.empty((len(srcs), size, size, channels), np.uint8)
  if not srcs:
    return out
  threads = num_threads or decode_threads()
  bar = progress.Progress(what or "decoding", len(srcs), unit="images", enabled=bool(what))

  def work(i):
    out[i] = decode_image(srcs[i], size, channels, wheres[i], draft)

  with bar:
    if threads <= 1 or len(srcs) < 64:
      for i in range(len(srcs)):
        work(i)
        bar.update(1)
    else:
      # chunks small enough that every thread gets work, large enough to amortise the pool
      chunk = int(min(256, max(16, len(srcs) // (4 * threads))))

      def work_chunk(start):
        stop = min(start + chunk, len(srcs))
        for i in range(start, stop):
          work(i)
        bar.update(stop - start)

      with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(work_chunk, range(0, len(srcs), chunk)))
  return out


# -------------------------------------------------------------------- uncompressed tar index
_ZERO_BLOCK = bytes(512)
_FILE_TYPES = (b"0", b"\0", b"7")                 # regular file, old-style regular, contiguous
_SKIP_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, FIFOs


class _UnusualHeader(Exception):
  """A pax / GNU long-name / sparse header: leave the archive to `tarfile`."""


def _octal(field: bytes) -> int:
  if field[:1] and field[0] & 0x80:                 # GNU base-256 (sizes >= 8 GiB)
    return int.from_bytes(field[1:], "big")
  digits = field.split(b"\0", 1)[0].strip()
  return int(digits, 8) if digits else 0


def _scan_ustar(f, start: int, end: Optional[int]) -> list:
  """Plain ustar / GNU headers -> [(name, data offset, size)]; 512-byte reads only. (The magic
  is checked, not the checksum: summing 512 bytes in Python would double the cost.)"""
  out, pos = [], start
  while end is None or pos + 512 <= end:
    f.seek(pos)
    h = f.read(512)
    if 0 < len(h) < 512:
      if pos == start:
        raise _UnusualHeader                       # not a tar at all: tarfile says so
      raise DataError(f"truncated archive (a header cut at byte {pos + len(h)})")
    if not h or h == _ZERO_BLOCK:
      break
    if h[257:262] != b"ustar":                     # v7 or not a header: tarfile decides
      raise _UnusualHeader
    try:
      size = _octal(h[124:136])
    except ValueError:
      raise _UnusualHeader from None
    kind = h[156:157]
    if kind not in _FILE_TYPES + _SKIP_TYPES:
      raise _UnusualHeader
    if kind in _FILE_TYPES:
      name = h[:100].split(b"\0", 1)[0]
      if h[257:263] == b"ustar\x00" and h[345]:     # POSIX ustar: prefix/name
        name = h[345:500].split(b"\0", 1)[0] + b"/" + name
      out.append((name.decode("utf-8", "surrogateescape"), pos + 512, size))
    pos += 512 + -(-size // 512) * 512
  return out


def index_tar(path, start: int = 0, end: Optional[int] = None, where=None) -> list:
  """Regular files of an uncompressed tar stored at bytes [start, end) of `path` (the whole
  file, or a class tar inside ImageNet's train tar) -> [(member name, FileSlice)].

  Reads only the 512-byte headers (seeking over the data), so indexing ImageNet's 1.28 M
  members reads about 0.7 GB of a 147 GB file; `FileSlice`s let the decode threads read each
  JPEG in place. Plain ustar / GNU headers are parsed here (a few microseconds each); an
  archive with pax or long-name headers is handed to `tarfile` (about 25 us a member).
  """
  path = pathlib.Path(path)
  where = where or str(path)
  try:
    with open(path, "rb", buffering=0) as f:
      try:
        rows = _scan_ustar(f, start, end)
      except _UnusualHeader:
        f.seek(start)
        rows = []
        with tarfile.open(fileobj=f, mode="r:") as tar:
          for m in tar:
            if end is not None and m.offset >= end:
              break
            if m.isfile():
              rows.append((m.name, m.offset_data, m.size))
  except DataError as e:
    raise DataError(f"{where}: {e}") from None
  except tarfile.ReadError as e:
    raise DataError(f"{where}: not an uncompressed tar archive ({e}); ImageNet's tars are read "
                    "in place, so they must not be re-compressed") from None
  except (tarfile.TarError, EOFError, OSError) as e:
    raise DataError(f"{where}: unreadable tar archive ({e})") from None
  limit = end if end is not None else path.stat().st_size
  out = []
  for name, off, size in rows:
    if off + size > limit:
      raise DataError(f"{where}: truncated archive (member {name} ends at byte {off + size}, "
                      f"the archive at {limit})")
    out.append((name, FileSlice(str(path), off, size)))
  return out


# ------------------------------------------------------------------------------ ImageFolder
def _parse_annotations(text: str) -> dict:
  """TinyImageNet `val_annotations.txt`: `<file>\\t<wnid>\\t...` -> {file: wnid}."""
  out = {}
  for line in text.splitlines():
    parts = line.split()
    if len(parts) >= 2:
      out[parts[0]] = parts[1]
  return out


def _labelled_split_dir(root: pathlib.Path, split: str) -> Optional[pathlib.Path]:
  cands = (split,) if split == "train" else TEST_SPLIT_DIRS
  for c in cands:
    d = root / c
    if d.is_dir() and ((d / "val_annotations.txt").is_file()
                       or any(s.is_dir() and s.name != "images" for s in d.iterdir())):
      return d
  return None


def list_imagefolder_dir(root, split: str):
  """Folder tree -> (split_dir, [(class_name, file_path), ...]) sorted by class then path."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DataError(f"{root}: folder not found")
  d = _labelled_split_dir(root, split)
  if d is None:
    raise DataError(f"{root}: no labelled '{split}' folder (looked for "
                    f"{', '.join((split,) if split == 'train' else TEST_SPLIT_DIRS)})")
  ann = d / "val_annotations.txt"
  if ann.is_file() and (d / "images").is_dir():
    mapping = _parse_annotations(ann.read_text())
    entries = []
    for f in sorted((d / "images").iterdir()):
      if is_image(f.name):
        if f.name not in mapping:
          raise DataError(f"{ann}: no annotation for {f.name}")
        entries.append((mapping[f.name], f))
    return d, sorted(entries, key=lambda e: (e[0], str(e[1])))
  entries = []
  for cdir in sorted(p for p in d.iterdir() if p.is_dir()):
    files = sorted(p for p in cdir.rglob("*") if p.is_file() and is_image(p.name))
    entries.extend((cdir.name, f) for f in files)
    if not files:
      entries.append((cdir.name, None))  # keep empty classes visible for the error
  return d, entries


def scan_imagefolder_archive(path, splits: Sequence[str], keep=None):
  """One pass over a tar/zip archive -> {split_dir_name: [(class, member_name, bytes)]}.

  keep: class folder names whose images are read (per-host loading); the other classes'
  rows carry None instead of bytes, so their names are still known. (TinyImageNet-style
  `images/` folders, whose classes come from an annotation file, are always read.)
  The tree may sit under any prefix (`cifar10/train/cat/0001.jpg`); the split folder is the
  first path component named train/test/val/validation with a class and a file below it.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"{path}: file not found")
  split_names = set(splits)
  files, anns = {}, {}
  bar = progress.Progress(f"reading {path.name}", None, unit="files")

  def visit(name: str, read):
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    for i, p in enumerate(parts[:-1]):
      if p in split_names:
        rest = parts[i + 1:]
        if rest == ["val_annotations.txt"]:
          anns[p] = _parse_annotations(read().decode())
        elif len(rest) >= 2 and is_image(rest[-1]):
          wanted = keep is None or rest[0] == "images" or rest[0] in keep
          files.setdefault(p, []).append((rest, name, read() if wanted else None))
          bar.update(1)
        return

  try:
    if path.suffix.lower() == ".zip":
      with zipfile.ZipFile(path) as z:
        for info in z.infolist():
          if not info.is_dir():
            visit(info.filename, lambda info=info: z.read(info))
    else:
      with tarfile.open(path, "r|*") as tar:
        for m in tar:
          if m.isfile():
            visit(m.name, lambda m=m: tar.extractfile(m).read())
  except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
    bar.close(ok=False)
    raise DataError(f"{path}: unreadable or truncated archive ({e})") from None
  bar.close()
  out = {}
  for split, items in files.items():
    ann = anns.get(split)
    rows = []
    for rest, name, data in items:
      if ann is not None and rest[0] == "images" and len(rest) == 2:
        if rest[1] not in ann:
          raise DataError(f"{path}:{split}/val_annotations.txt: no annotation for {rest[1]}")
        rows.append((ann[rest[1]], name, data))
      else:
        rows.append((rest[0], name, data))
    rows.sort(key=lambda r: (r[0], r[1]))
    out[split] = rows
  return out


def resolve_class_order(found: Sequence[str], class_names: Optional[Sequence[str]],
                        num_classes: int, where: str) -> list:
  """Label order for the folders found: the registry's names if all present, else sorted folders."""
  found_set = set(found)
  if class_names is not None and set(class_names) <= found_set:
    return list(class_names)
  if len(found_set) == num_classes:
    if class_names is not None:
      warnings.warn(f"jaxcond: {where}: class folders {sorted(found_set)[:3]}... are not the "
                    f"registry names {list(class_names[:3])}...; labels follow sorted folder names")
    return sorted(found_set)
  if class_names is not None:
    missing = [c for c in class_names if c not in found_set]
    raise DataError(f"{where}: {len(found_set)} class folders, expected {num_classes}; "
                    f"missing e.g. {missing[:3]}")
  raise DataError(f"{where}: {len(found_set)} class folders, expected {num_classes}")
