"""Is this file the dataset the config names? Known identities of standard distribution files.

MNIST and Fashion-MNIST share a format (IDX, 28×28, 10 classes), and CIFAR-10 and CIFAR-100
differ only in file names and label keys, so a wrong `dataset.path` loads without any error
and condenses the wrong data. `check(info, kind, path, split)` runs before the files are
decoded and returns a one-line identity for `config.json`:

- `"mnist (published files: content signature verified)"`: the files are the published ones;
- `"cifar10 (modified copy: JPEG ImageFolder tree ..., not the published pickles)"`,
  `"mnist (unrecognised copy: ...)"`: allowed, and named as such;
- raises `DataError` naming the file when the files are another known dataset's.

Signatures:
- IDX (both datasets): sha256 of the first 8 images' pixel bytes followed by the first 100
  label bytes of a split, first 16 hex digits (`idx_signature`). It does not depend on
  gzip or on the file names, so raw and re-compressed copies of the published files match.
  Computed from the published files (whose .gz md5s equal the ones the dataset authors
  publish: MNIST train-images f68b3c2dcbeaaa9fbdd348bbdeb94873, Fashion-MNIST
  train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d).
- CIFAR: the md5s the CIFAR page publishes for `cifar-10-python.tar.gz` /
  `cifar-100-python.tar.gz` / the binary archives, and of the extracted python batches;
  otherwise the layout (`data_batch_N` + `batches.meta` is CIFAR-10's, `train` + `meta` is
  CIFAR-100's) tells the two apart.
"""
from __future__ import annotations

import gzip
import hashlib
import pathlib
import tarfile

from jaxcond.data import readers
from jaxcond.errors import DataError

PRETTY = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
          "cifar100": "CIFAR-100"}

# (dataset, split) -> idx_signature of the published files.
IDX_SIGNATURES = {
    ("mnist", "train"): "d75e5bd316e167e7",
    ("mnist", "test"): "dc1f66d4b7c239bf",
    ("fashion_mnist", "train"): "81efae1734344350",
    ("fashion_mnist", "test"): "8c6ee3a870eae547",
}

# md5 -> (dataset, what) for published CIFAR archives and extracted python batches.
CIFAR_MD5 = {
    "c58f30108f718f92721af3b95e74349a": ("cifar10", "cifar-10-python.tar.gz"),
    "c32a1d4ab5d03f1284b67883e8d87530": ("cifar10", "cifar-10-binary.tar.gz"),
    "eb9058c3a382ffc7106e4002c42a8d85": ("cifar100", "cifar-100-python.tar.gz"),
    "03b5dce01913d631647c71ecec9e9cb8": ("cifar100", "cifar-100-binary.tar.gz"),
    "40351d587109b95175f43aff81a1287e": ("cifar10", "test_batch"),
    "c99cafc152244af753f735de768cd75f": ("cifar10", "data_batch_1"),
    "f0ef6b0ae62326f3e7ffdfab6717acfc": ("cifar100", "test"),
    "16019d7e3df5f24257cddd939b257f8d": ("cifar100", "train"),
}
_CIFAR_LAYOUT = {"cifar10": ("data_batch_1", "test_batch", "batches.meta",
                             "data_batch_1.bin", "test_batch.bin", "batches.meta.txt"),
                 "cifar100": ("meta", "fine_label_names.txt", "train.bin", "test.bin")}


def _pretty(name: str) -> str:
  return PRETTY.get(name, name)


def idx_signature(images_file, labels_file) -> str:
  """sha256[:16] of the first 8 images' pixels + the first 100 labels (module doc)."""
  def head(path, skip, n):
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
      with opener(path, "rb") as f:
        return f.read(skip + n)[skip:]
    except (OSError, EOFError) as e:
      raise DataError(f"{path}: truncated or corrupt file ({e})") from None
  return hashlib.sha256(head(images_file, 16, 8 * 28 * 28) +
                        head(labels_file, 8, 100)).hexdigest()[:16]


def md5(path, chunk: int = 1 << 22) -> str:
  h = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def check_idx(name: str, split: str, images_file, labels_file) -> str:
  """Identity of an IDX split for dataset `name`; DataError if it is another dataset's."""
  sig = idx_signature(images_file, labels_file)
  if IDX_SIGNATURES.get((name, split)) == sig:
    return f"{name} (published files: content signature verified)"
  for (other, other_split), ref in IDX_SIGNATURES.items():
    if ref == sig:
      if other == name:   # e.g. the test files placed where the train files belong
        raise DataError(f"{images_file}: holds the published {_pretty(name)} {other_split} "
                        f"split, but was read as the {split} split")
      raise DataError(f"{images_file}: these are the published {_pretty(other)} files, not "
                      f"{_pretty(name)} (content signature); point dataset.path at the "
                      f"{_pretty(name)} files or set dataset.name={other}")
  if name in ("mnist", "fashion_mnist"):
    return (f"{name} (unrecognised copy: {images_file} does not match the published "
            f"{_pretty(name)} {split} files)")
  return f"{name} (IDX files {images_file})"


def _cifar_layout(folder: pathlib.Path):
  """Which CIFAR the extracted folder's file names belong to, or None."""
  for sub in ("", "cifar-10-batches-py", "cifar-100-python", "cifar-10-batches-bin",
              "cifar-100-binary"):
    d = folder / sub
    if not d.is_dir():
      continue
    names = {p.name for p in d.iterdir()}
    hits = [ds for ds, files in _CIFAR_LAYOUT.items() if names & set(files)]
    if len(hits) == 1:
      return hits[0], d
  return None, None


def _archive_layout(p: pathlib.Path):
  try:
    with tarfile.open(p, "r:*") as tar:
      names = {n.rstrip("/").rsplit("/", 1)[-1] for n in tar.getnames()}
  except (tarfile.TarError, EOFError, OSError):
    return None            # the reader reports an unreadable archive in its own words
  hits = [ds for ds, files in _CIFAR_LAYOUT.items() if names & set(files)]
  return hits[0] if len(hits) == 1 else None


def check_cifar(name: str, path) -> str:
  """Identity of CIFAR pickles / binary batches (archive or folder) for `name`."""
  p = pathlib.Path(path)
  found = None
  if p.is_file():
    got = CIFAR_MD5.get(md5(p))
    if got:
      found = (got[0], f"published {got[1]} (md5 verified)")
    else:
      layout = _archive_layout(p)
      found = (layout, None) if layout else None
  else:
    layout, d = _cifar_layout(p)
    for probe in ("test_batch", "test"):
      f = (d or p) / probe
      if f.is_file() and md5(f) in CIFAR_MD5:
        got = CIFAR_MD5[md5(f)]
        found = (got[0], f"published {got[1]} (md5 verified)")
        break
    if found is None and layout is not None:
      found = (layout, None)
  if found is None:
    return f"{name} (unrecognised copy: {p} matches no published CIFAR file)"
  ds, what = found
  if ds != name:
    raise DataError(f"{p}: these are {_pretty(ds)} files"
                    f"{' (' + what + ')' if what else ' (file layout)'}, not {_pretty(name)}; "
                    f"point dataset.path at the {_pretty(name)} files or set "
                    f"dataset.name={ds}")
  if what is None:
    return f"{name} (unrecognised copy: {p} has {_pretty(name)}'s layout, md5 not published)"
  return f"{name} ({what})"


def check(info, kind: str, path, split: str = "train", files=None) -> str:
  """One-line identity of the data `resolve_source` found (module doc)."""
  name = info.name
  if kind == "digits":
    return "digits (scikit-learn's bundled copy)"
  if kind == "idx":
    if files is None:
      folder = pathlib.Path(path)
      prefix = {"train": "train", "test": "t10k"}.get(split, "t10k")
      files = {"images": readers._idx_file(folder, prefix, "images"),  # pylint: disable=protected-access
               "labels": readers._idx_file(folder, prefix, "labels")}  # pylint: disable=protected-access
    return check_idx(name, split, files["images"], files["labels"])
  if kind == "cifar":
    return check_cifar(name, path)
  if kind == "imagefolder":
    if name in ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn"):
      what = "pickles" if name.startswith("cifar") else "files"
      return (f"{name} (modified copy: image tree {pathlib.Path(path).name}, not the "
              f"published {_pretty(name)} {what})")
    return f"{name} (ImageFolder {path})"
  if kind == "npz" and name in PRETTY:
    return f"{name} (modified copy: .npz {pathlib.Path(path).name}, not the published files)"
  if kind == "tfds":
    return f"{name} (TFDS prepared copy in {path})"
  if kind == "imagenet":
    return f"{name} (ILSVRC-2012 files in {path})"
  return f"{name} ({kind} {path})"
