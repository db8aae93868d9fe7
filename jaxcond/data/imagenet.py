"""ImageNet-1K (ILSVRC-2012) in the layouts people have, read in place: no sorting step.

Layouts (`find_layout`), each split found on its own under the dataset folder:

- train: `ILSVRC2012_img_train.tar`, the official tar of 1000 class tars `<wnid>.tar`, read
  in place: headers are indexed (`readers.index_tar`, a class tar only when its class is
  wanted) and each JPEG is read by the decode thread that needs it; nothing is extracted.
  Or a folder of `<wnid>/` folders: `train/`, or Kaggle's `ILSVRC/Data/CLS-LOC/train/`.
- validation (`split="test"`): `ILSVRC2012_img_val.tar` or a flat folder (`val/`, Kaggle's
  `ILSVRC/Data/CLS-LOC/val/`) of `ILSVRC2012_val_00000001.JPEG`..., labelled by
  `LOC_val_solution.csv` (the Kaggle mirror: `ImageId,PredictionString`, the prediction
  string starts with the wnid) or by the devkit (`ILSVRC2012_devkit_t12[.tar.gz]`); or a
  `val/` folder already sorted into `<wnid>/` folders.

The devkit's `data/ILSVRC2012_validation_ground_truth.txt` holds one ILSVRC2012_ID per
line, "in the ascending alphabetical order of the image file names" (devkit readme), so
line i labels `ILSVRC2012_val_%08d.JPEG` % i. ILSVRC2012_IDs are not class indices: the
devkit's `data/meta.mat` (`synsets` struct array: ILSVRC2012_ID, WNID, ..., num_children)
maps them to wnids; the 1000 classes are the synsets with `num_children == 0` (IDs 1..1000,
e.g. ID 1 is n02119789; the wnid's position in sorted order is the class index). Reading
`meta.mat` needs scipy; `LOC_val_solution.csv` does not and wins when both are present.

Rows are sorted by (wnid, file name) in every layout, the order of an extracted ImageFolder
tree, so every layout yields the same arrays and the same `holdout` images.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
import re
import tarfile
from typing import Optional, Sequence

import numpy as np

from jaxcond import progress
from jaxcond.data import cache, readers
from jaxcond.errors import DataError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META = "meta.mat"
LOC_CSV = "LOC_val_solution.csv"
KAGGLE = ("ILSVRC", "Data", "CLS-LOC")
WNID = re.compile(r"n\d{8}")
VAL_NAME = re.compile(r"ILSVRC2012_val_\d{8}")


@dataclasses.dataclass(frozen=True)
class Source:
  """Where one split's images are. kind: `class_tars` (the train tar), `flat_tar`,
  `flat_dir` (labels from a label file) or `class_dirs` (a `<wnid>/` folder per class)."""
  kind: str
  path: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Layout:
  root: pathlib.Path
  train: Optional[Source]
  val: Optional[Source]

  def split(self, split: str) -> Source:
    src = self.train if split == "train" else self.val
    if src is None:
      looked = (f"{TRAIN_TAR}, train/, {'/'.join(KAGGLE)}/train/" if split == "train" else
                f"{VAL_TAR}, val/, {'/'.join(KAGGLE)}/val/")
      raise DataError(f"{self.root}: no ImageNet {'train' if split == 'train' else 'validation'}"
                      f" images (looked for {looked})")
    return src


def _base(name: str) -> str:
  return name.replace("\\", "/").rsplit("/", 1)[-1]


def _stem(name: str) -> str:
  return _base(name).split(".", 1)[0]


def tar_kind(path) -> Optional[str]:
  """`class_tars` / `flat_tar` when an uncompressed tar looks like ImageNet's train / val
  tar, from its first 16 headers (seeks; never reads the data), else None."""
  path = pathlib.Path(path)
  if not path.is_file() or not path.name.lower().endswith(".tar"):
    return None
  names = []
  try:
    with tarfile.open(path, "r:") as tar:
      for m in tar:
        if m.isfile():
          names.append(_base(m.name))
        if len(names) >= 16:
          break
  except (tarfile.TarError, EOFError, OSError):
    return None
  if names and all(n.endswith(".tar") and WNID.fullmatch(n[:-4]) for n in names):
    return "class_tars"
  if names and all(VAL_NAME.fullmatch(_stem(n)) and readers.is_image(n) for n in names):
    return "flat_tar"
  return None


def _dir_kind(d: pathlib.Path) -> Optional[str]:
  """`class_dirs` when `d` holds `<wnid>/` folders, `flat_dir` when it holds images."""
  if not d.is_dir():
    return None
  for e in d.iterdir():
    if e.is_dir() and WNID.fullmatch(e.name):
      return "class_dirs"
    if e.is_file() and readers.is_image(e.name):
      return "flat_dir"
  return None


def find_layout(path) -> Optional[Layout]:
  """The ImageNet layout at `path` (a folder, or one of the official tars), or None when
  nothing there is specific to ImageNet (a plain ImageFolder tree is the `imagefolder`
  source's)."""
  p = pathlib.Path(path)
  if p.is_file():
    kind = tar_kind(p)
    if kind is None:
      return None
    beside = find_layout(p.parent) or Layout(p.parent, None, None)   # the other split
    if kind == "class_tars":
      return Layout(p.parent, Source(kind, p), beside.val)
    return Layout(p.parent, beside.train, Source(kind, p))
  if not p.is_dir():
    return None
  specific = False
  train = val = None
  for base in (p, p.joinpath(*KAGGLE)):
    if train is None:
      if tar_kind(base / TRAIN_TAR) == "class_tars":
        train, specific = Source("class_tars", base / TRAIN_TAR), True
      elif _dir_kind(base / "train") == "class_dirs":
        train = Source("class_dirs", base / "train")
        specific = specific or base != p
    if val is None:
      if tar_kind(base / VAL_TAR) == "flat_tar":
        val, specific = Source("flat_tar", base / VAL_TAR), True
      else:
        for name in ("val", "validation"):
          kind = _dir_kind(base / name)
          if kind:
            val = Source(kind, base / name)
            specific = specific or kind == "flat_dir" or base != p
            break
  return Layout(p, train, val) if specific else None


# ------------------------------------------------------------------------------ val labels
def read_loc_csv(text: str, where: str) -> dict:
  """Kaggle `LOC_val_solution.csv` -> {image id: wnid} (the first token of PredictionString)."""
  rows = csv.reader(io.StringIO(text))
  head = next(rows, None)
  names = [h.strip().lstrip("\ufeff") for h in (head or [])[:2]]   # a BOM from Excel & co.
  if names != ["ImageId", "PredictionString"]:
    raise DataError(f"{where}: expected the header ImageId,PredictionString, got {head!r}")
  out = {}
  for lineno, row in enumerate(rows, 2):
    if not row:
      continue
    toks = row[1].split() if len(row) > 1 else []
    if not toks or not WNID.fullmatch(toks[0]):
      raise DataError(f"{where}:{lineno}: PredictionString does not start with a wnid: {row!r}")
    out[row[0].strip()] = toks[0]
  return out


def read_meta_mat(data: bytes, where: str) -> dict:
  """Devkit `meta.mat` -> {ILSVRC2012_ID: wnid} of the low-level synsets (num_children 0)."""
  try:
    import scipy.io  # optional (jaxcond[extras]); only the devkit's .mat needs it
  except ImportError:
    raise DataError(f"{where}: reading the devkit's meta.mat needs scipy (pip install "
                    f"scipy), or put {LOC_CSV} next to the validation images") from None
  try:
    syn = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
    rows = zip(np.atleast_1d(syn["ILSVRC2012_ID"]), np.atleast_1d(syn["WNID"]),
               np.atleast_1d(syn["num_children"]))
    out = {int(i): str(w) for i, w, kids in rows if int(kids) == 0}
  except Exception as e:  # scipy raises many types on a foreign file
    raise DataError(f"{where}: not the devkit's meta.mat (no synsets ILSVRC2012_ID / WNID / "
                    f"num_children: {type(e).__name__}: {e})") from None
  bad = [w for w in out.values() if not WNID.fullmatch(w)]
  if not out or bad:
    raise DataError(f"{where}: no leaf synsets with WordNet ids (e.g. {bad[:1]})")
  return out


def read_devkit(ground_truth: str, meta: dict, where: str) -> dict:
  """Ground-truth IDs (line i = `ILSVRC2012_val_%08d` % i) + meta -> {image id: wnid}."""
  out = {}
  for i, tok in enumerate(ground_truth.split(), 1):
    if not tok.isdigit() or int(tok) not in meta:
      raise DataError(f"{where}:{i}: {tok!r} is not an ILSVRC2012_ID of a class in {META}")
    out[f"ILSVRC2012_val_{i:08d}"] = meta[int(tok)]
  return out


def _label_dirs(layout: Layout) -> list:
  """Next to the validation images, up to three folders above them, and the layout root."""
  val = layout.split("test").path
  dirs = []
  for d in [val.parent, *list(val.parent.parents)[:3], layout.root]:
    if d not in dirs:
      dirs.append(d)
  return dirs


def label_files(layout: Layout) -> list:
  """Candidate label files, in the order they are tried: each `LOC_val_solution.csv`, then
  devkit folders (ground truth + meta.mat) and devkit archives. Stat only, no reading."""
  dirs = _label_dirs(layout)
  found = [("loc", d / LOC_CSV) for d in dirs if (d / LOC_CSV).is_file()]
  for d in dirs:
    for sub in (d / DEVKIT / "data", d / "data", d):
      if (sub / GROUND_TRUTH).is_file() and (sub / META).is_file():
        found.append(("devkit", sub))
    found.extend(("devkit_archive", a) for a in sorted(d.glob(f"{DEVKIT}*.t*")) if a.is_file())
  return found


def _devkit_archive(arc: pathlib.Path):
  """(ground truth, meta.mat) bytes from `ILSVRC2012_devkit_t12.tar.gz`, or None."""
  found = {}
  try:
    with tarfile.open(arc, "r:*") as tar:
      for m in tar:
        if m.isfile() and _base(m.name) in (GROUND_TRUTH, META):
          found[_base(m.name)] = tar.extractfile(m).read()
  except (tarfile.TarError, EOFError, OSError) as e:
    raise DataError(f"{arc}: unreadable devkit archive ({e})") from None
  return (found[GROUND_TRUTH], found[META]) if len(found) == 2 else None


def val_labels(layout: Layout) -> tuple:
  """-> ({image id: wnid}, where): the first of `label_files` that holds labels."""
  for kind, f in label_files(layout):
    if kind == "loc":
      return read_loc_csv(f.read_text(), str(f)), str(f)
    if kind == "devkit":
      gt, meta = f / GROUND_TRUTH, f / META
      return read_devkit(gt.read_text(), read_meta_mat(meta.read_bytes(), str(meta)),
                         str(gt)), str(gt)
    got = _devkit_archive(f)
    if got:
      where = f"{f}:{GROUND_TRUTH}"
      return read_devkit(got[0].decode(), read_meta_mat(got[1], f"{f}:{META}"), where), where
  dirs = _label_dirs(layout)
  raise DataError(f"{layout.split('test').path}: validation images without labels: put "
                  f"{LOC_CSV} or the devkit ({DEVKIT}.tar.gz, or its data/{GROUND_TRUTH} and "
                  f"data/{META}) in {dirs[0]} or {layout.root}")


# ------------------------------------------------------------------------------------ rows
def split_identity(layout: Layout, split: str, wanted: Sequence[str]) -> dict:
  """What determines `split_rows` (the cache key), from file stats only: the tar's path, size
  and mtime, or the folders' mtimes, plus the label files of a flat validation set."""
  src = layout.split(split)
  ident = {"layout": src.kind, "names": list(wanted)}
  if src.kind in ("class_tars", "flat_tar"):
    ident.update(cache.file_identity(src.path))
  elif src.kind == "class_dirs":
    ident.update(dir=str(src.path.resolve()),
                 mtimes=[(src.path / w).stat().st_mtime_ns if (src.path / w).is_dir() else None
                         for w in wanted])
  else:
    ident.update(dir=str(src.path.resolve()), mtime=src.path.stat().st_mtime_ns)
  if src.kind in ("flat_tar", "flat_dir"):
    ident["labels"] = [cache.file_identity(f) for _, f in label_files(layout)]
  return ident


def split_rows(layout: Layout, split: str, wanted: Sequence[str]) -> tuple:
  """Images of the `wanted` wnids -> (rows [(wnid, src, where)] sorted by wnid then file
  name, where). src is a path or a `readers.FileSlice`. Images of other classes are never
  read, and the train tar's other class tars are not even indexed (per-host loading)."""
  src = layout.split(split)
  want = set(wanted)
  rows = []
  if src.kind == "class_tars":
    tars = {}
    for name, sl in readers.index_tar(src.path):
      base = _base(name)
      if base.endswith(".tar") and WNID.fullmatch(base[:-4]):
        tars[base[:-4]] = sl
    missing = [w for w in wanted if w not in tars]
    if missing:
      raise DataError(f"{src.path}: no class tar {missing[0]}.tar ({len(missing)} of the "
                      f"{len(wanted)} wanted classes missing)")
    with progress.Progress(f"indexing {src.path.name}", len(wanted), unit="class tars") as bar:
      for w in wanted:
        sl = tars[w]
        where = f"{src.path}:{w}.tar"
        for n, m in readers.index_tar(src.path, sl.offset, sl.offset + sl.size, where=where):
          if readers.is_image(n):
            rows.append((w, m, f"{where}/{n}"))
        bar.update(1)
  elif src.kind == "class_dirs":
    for w in wanted:
      d = src.path / w
      if not d.is_dir():
        raise DataError(f"{d}: class folder not found")
      rows.extend((w, f, str(f)) for f in d.rglob("*")
                  if f.is_file() and readers.is_image(f.name))
  else:
    labels, label_where = val_labels(layout)
    if src.kind == "flat_tar":
      items = [(n, m, f"{src.path}:{n}") for n, m in readers.index_tar(src.path)]
    else:
      items = [(f.name, f, str(f)) for f in src.path.iterdir() if f.is_file()]
    for name, s, where in items:
      if not readers.is_image(name):
        continue
      w = labels.get(_stem(name))
      if w is None:
        raise DataError(f"{label_where}: no label for {where}")
      if w in want:
        rows.append((w, s, where))
  rows.sort(key=lambda r: (r[0], r[2]))
  return rows, str(src.path)


class ImageNetIndex:
  """Per-class sources of one split, decoded only when read: the streaming index
  (`jaxcond.data.stream`'s interface: members, counts, read(c, j)) over the same layouts."""

  def __init__(self, layout: Layout, split: str, info, draft: bool = True):
    order = list(info.class_names)
    rows, self.where = split_rows(layout, split, order)
    label_of = {n: i for i, n in enumerate(order)}
    self.members = [[] for _ in order]
    for w, s, where in rows:
      self.members[label_of[w]].append((s, where))
    self.num_classes, self.class_names = len(order), order
    self.size, self.channels, self.draft = info.resolution, info.channels, draft
    self.image_shape = tuple(info.image_shape)
    self.counts = np.asarray([len(m) for m in self.members], np.int64)

  def read(self, c: int, j: int) -> np.ndarray:
    s, where = self.members[c][j]
    return readers.decode_image(s, self.size, self.channels, where, self.draft)
