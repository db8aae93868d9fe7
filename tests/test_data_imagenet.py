"""ImageNet-1K as it comes (jaxcond.data.imagenet), draft decoding, the tar index, decode threads.

Every layout is a small generated copy: a train tar of class tars, a flat validation folder
or tar labelled by the devkit (generated meta.mat) or by LOC_val_solution.csv, the Kaggle
tree. Image i of class k has red channel 40 k + 20, so labels can be read off the pixels.
"""
import gzip
import io
import os
import tarfile
import types

import numpy as np
import pytest
from PIL import Image

from jaxcond.data import imagenet, load_split, readers, registry, split_loader
from jaxcond.data.load import dataset_identity, resolve_source
from jaxcond.errors import ConfigError, DataError

WNIDS = registry.IMAGENET_WNIDS
# Three classes out of sorted order on purpose; their ImageNet-1K indices are the labels.
CLASSES = [WNIDS[7], WNIDS[2], WNIDS[500]]
IDX = sorted(WNIDS.index(w) for w in CLASSES)          # [2, 7, 500]
PER_CLASS = 4
# Validation image i (1-based) -> wnid; the devkit IDs below are NOT the sorted order.
VAL = [CLASSES[i % 3] for i in range(7)]
DEVKIT_ID = {CLASSES[0]: 3, CLASSES[1]: 1, CLASSES[2]: 2}   # ILSVRC2012_ID of each wnid


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXCOND_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("JAXCOND_DATA_DIR", str(tmp_path / "no_data_here"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))


def _red(wnid):
  return 40 * CLASSES.index(wnid) + 20


def _jpeg(red, seed, size=(40, 30)):
  """A landscape JPEG (draft-able at 8 px: 40x30 -> 20x15) of a class's red level."""
  w, h = size
  g = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
  a = np.stack([np.full((h, w), red, np.float32), g, np.full((h, w), 10 * seed, np.float32)], -1)
  buf = io.BytesIO()
  Image.fromarray(a.astype(np.uint8)).save(buf, format="JPEG", quality=95)
  return buf.getvalue()


def _train_files():
  return {w: [(f"{w}_{10 + j * 7}.JPEG", _jpeg(_red(w), j)) for j in range(PER_CLASS)]
          for w in CLASSES}


def _tar_bytes(members, fmt=tarfile.DEFAULT_FORMAT):
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


def _write_train_tar(root, fmt=tarfile.DEFAULT_FORMAT):
  root.mkdir(parents=True, exist_ok=True)
  inner = [(f"{w}.tar", _tar_bytes(files, fmt)) for w, files in _train_files().items()]
  path = root / imagenet.TRAIN_TAR
  path.write_bytes(_tar_bytes(inner, fmt))
  return path


def _write_train_tree(d):
  for w, files in _train_files().items():
    (d / w).mkdir(parents=True, exist_ok=True)
    for name, data in files:
      (d / w / name).write_bytes(data)


def _val_files():
  return [(f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg(_red(w), i)) for i, w in enumerate(VAL, 1)]


def _write_flat_val(d):
  d.mkdir(parents=True, exist_ok=True)
  for name, data in _val_files():
    (d / name).write_bytes(data)


def _meta_mat():
  """A devkit-shaped meta.mat: the 3 leaf synsets (IDs not in sorted order) + 1 internal node."""
  import scipy.io
  fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
            "wordnet_height", "num_train_images"]
  syn = np.empty((4,), dtype=[(f, "O") for f in fields])
  leaves = sorted(DEVKIT_ID.items(), key=lambda kv: kv[1])
  for i, (w, k) in enumerate(leaves):
    syn[i] = (k, w, f"words {k}", "gloss", 0, np.zeros((0,)), 0, PER_CLASS)
  syn[3] = (1001, "n00001740", "entity", "gloss", 3, np.array([1, 2, 3]), 19, 0)
  buf = io.BytesIO()
  scipy.io.savemat(buf, {"synsets": syn})
  return buf.getvalue()


def _ground_truth():
  return "".join(f"{DEVKIT_ID[w]}\n" for w in VAL)


def _write_devkit(root, archive=False):
  if archive:
    members = [(f"{imagenet.DEVKIT}/data/{imagenet.GROUND_TRUTH}", _ground_truth().encode()),
               (f"{imagenet.DEVKIT}/data/{imagenet.META}", _meta_mat()),
               (f"{imagenet.DEVKIT}/readme.txt", b"devkit")]
    (root / f"{imagenet.DEVKIT}.tar.gz").write_bytes(gzip.compress(_tar_bytes(members)))
  else:
    d = root / imagenet.DEVKIT / "data"
    d.mkdir(parents=True)
    (d / imagenet.GROUND_TRUTH).write_text(_ground_truth())
    (d / imagenet.META).write_bytes(_meta_mat())


def _write_loc_csv(root):
  lines = ["ImageId,PredictionString"]
  for i, w in reversed(list(enumerate(VAL, 1))):           # any row order
    lines.append(f"ILSVRC2012_val_{i:08d},{w} 1 2 30 20 {w} 3 4 10 10")
  (root / imagenet.LOC_CSV).write_text("\n".join(lines) + "\n")


def _expected_val():
  """(labels, reds) in the order every layout returns: by class index, then file name."""
  rows = sorted((WNIDS.index(w), i) for i, w in enumerate(VAL, 1))
  return np.asarray([r[0] for r in rows]), np.asarray([_red(WNIDS[r[0]]) for r in rows])


def _check_reds(x, y):
  reds = np.asarray([_red(WNIDS[c]) for c in y])
  assert np.abs(x[..., 0].reshape(len(x), -1).mean(1) - reds).max() < 6


def _load(split, path, **kw):
  kw.setdefault("classes", IDX)
  return load_split("imagenet1k", split, path=path, resolution=8, **kw)


# -------------------------------------------------------------------------- train tar
def test_train_tar_read_in_place_equals_the_extracted_tree(tmp_path):
  _write_train_tar(tmp_path / "imagenet")
  assert resolve_source(registry.get_info("imagenet1k"), path=tmp_path / "imagenet")[0] == \
      "imagenet"
  x, y = _load("train", tmp_path / "imagenet")
  assert x.shape == (3 * PER_CLASS, 8, 8, 3)
  assert np.bincount(y, minlength=501)[IDX].tolist() == [PER_CLASS] * 3 and len(set(y)) == 3
  _check_reds(x, y)
  _write_train_tree(tmp_path / "tree" / "train")          # what `tar x` + sorting would give
  for draft in (True, False):
    xt, yt = _load("train", tmp_path / "tree", draft=draft, source="imagefolder")
    xa, ya = _load("train", tmp_path / "imagenet", draft=draft)
    np.testing.assert_array_equal(ya, yt)
    np.testing.assert_array_equal(xa, xt)
  # the tar file itself as dataset.path
  x2, y2 = _load("train", tmp_path / "imagenet" / imagenet.TRAIN_TAR)
  np.testing.assert_array_equal(x2, x)
  assert dataset_identity("imagenet1k", path=tmp_path / "imagenet").startswith(
      "imagenet1k (ILSVRC-2012 files in")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_train_tar_formats(tmp_path, fmt):
  _write_train_tar(tmp_path / "imagenet", fmt)
  x, y = _load("train", tmp_path / "imagenet", cache=False)
  assert len(y) == 3 * PER_CLASS
  _check_reds(x, y)


def test_per_host_load_reads_only_its_classes(tmp_path, monkeypatch):
  """A host of a multi-host run indexes, reads and decodes only its own class tars."""
  path = _write_train_tar(tmp_path / "imagenet")
  indexed, read, decoded = [], [], []
  real_index, real_read, real_decode = readers.index_tar, readers.FileSlice.read, \
      readers.decode_image
  monkeypatch.setattr(readers, "index_tar",
                      lambda *a, **k: indexed.append(k.get("where", a[0])) or real_index(*a, **k))
  monkeypatch.setattr(readers.FileSlice, "read", lambda s: read.append(s) or real_read(s))
  monkeypatch.setattr(readers, "decode_image",
                      lambda src, *a, **k: decoded.append(a[2]) or real_decode(src, *a, **k))
  mine = WNIDS.index(CLASSES[2])
  x, y = _load("train", tmp_path / "imagenet", classes=[mine])
  assert y.tolist() == [mine] * PER_CLASS
  assert [str(i) for i in indexed] == [str(path), f"{path}:{CLASSES[2]}.tar"]
  assert len(decoded) == PER_CLASS and all(f"{CLASSES[2]}.tar/" in d for d in decoded)
  # every byte read lies inside this class's tar
  outer = {n: s for n, s in real_index(path)}
  mine_tar = outer[f"{CLASSES[2]}.tar"]
  assert len(read) == PER_CLASS
  assert all(mine_tar.offset <= s.offset and s.offset + s.size <= mine_tar.offset + mine_tar.size
             for s in read)


def test_missing_class_tar(tmp_path):
  _write_train_tar(tmp_path / "imagenet")
  with pytest.raises(DataError, match=rf"{imagenet.TRAIN_TAR}: no class tar {WNIDS[3]}.tar"):
    _load("train", tmp_path / "imagenet", classes=[3])


# ------------------------------------------------------------------------ validation
@pytest.mark.parametrize("labels", ["devkit", "devkit_archive", "loc_csv"])
@pytest.mark.parametrize("images", ["flat_dir", "flat_tar"])
def test_flat_validation_labels(tmp_path, labels, images):
  root = tmp_path / "imagenet"
  root.mkdir()
  if images == "flat_dir":
    _write_flat_val(root / "val")
  else:
    (root / imagenet.VAL_TAR).write_bytes(_tar_bytes(_val_files()))
  {"devkit": lambda: _write_devkit(root), "devkit_archive": lambda: _write_devkit(root, True),
   "loc_csv": lambda: _write_loc_csv(root)}[labels]()
  x, y = _load("test", root)
  labels_ref, _ = _expected_val()
  np.testing.assert_array_equal(y, labels_ref)
  _check_reds(x, y)
  # the same arrays as a validation folder already sorted into <wnid>/ folders
  tree = tmp_path / "sorted"
  for (name, data), w in zip(_val_files(), VAL):
    (tree / "val" / w).mkdir(parents=True, exist_ok=True)
    (tree / "val" / w / name).write_bytes(data)
  xs, ys = _load("test", tree, source="imagefolder")
  np.testing.assert_array_equal(ys, y)
  np.testing.assert_array_equal(xs, x)


def test_devkit_ids_map_through_meta_not_sorted_order():
  meta = imagenet.read_meta_mat(_meta_mat(), "meta.mat")
  assert meta == {k: w for w, k in DEVKIT_ID.items()}        # the internal node (1001) dropped
  labels = imagenet.read_devkit(_ground_truth(), meta, "gt.txt")
  assert labels == {f"ILSVRC2012_val_{i:08d}": w for i, w in enumerate(VAL, 1)}
  # reading ID k as the k-th wnid in sorted order would give another class for every ID here
  assert all(WNIDS[k - 1] != w for w, k in DEVKIT_ID.items())


def test_kaggle_layout(tmp_path):
  root = tmp_path / "imagenet-object-localization-challenge"
  base = root.joinpath(*imagenet.KAGGLE)
  _write_train_tree(base / "train")
  _write_flat_val(base / "val")
  (base / "test").mkdir()
  (base / "test" / "ILSVRC2012_test_00000001.JPEG").write_bytes(_jpeg(0, 0))  # unlabelled
  _write_loc_csv(root)
  x, y = _load("train", root)
  assert np.bincount(y, minlength=501)[IDX].tolist() == [PER_CLASS] * 3
  _check_reds(x, y)
  xv, yv = _load("test", root)
  np.testing.assert_array_equal(yv, _expected_val()[0])
  _check_reds(xv, yv)


def test_train_tar_with_flat_val_folder_and_subset_dataset(tmp_path):
  """imagenette etc. read their classes out of the full ImageNet files."""
  root = tmp_path / "imagenet"
  _write_train_tar(root)
  _write_flat_val(root / "val")
  _write_loc_csv(root)
  layout = imagenet.find_layout(root)
  assert (layout.train.kind, layout.val.kind) == ("class_tars", "flat_dir")
  index = imagenet.ImageNetIndex(layout, "test", registry.get_info("imagenet1k", resolution=8))
  assert index.counts[IDX].tolist() == [sum(w == WNIDS[c] for w in VAL) for c in IDX]
  x, _ = _load("test", root)
  np.testing.assert_array_equal(index.read(IDX[0], 0), x[0])
  # the train tar as dataset.path still finds the validation folder beside it
  np.testing.assert_array_equal(_load("test", root / imagenet.TRAIN_TAR, cache=False)[0], x)
  # a subset dataset (here imagenet100 with a 3-class list) labels by its own class order
  (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
  xs, ys = load_split("imagenet100", "train", path=root, resolution=8,
                      class_list=tmp_path / "classes.txt")
  assert np.bincount(ys).tolist() == [PER_CLASS] * 3
  assert np.abs(xs[..., 0].reshape(len(xs), -1).mean(1) - (40 * ys + 20)).max() < 6


def test_validation_errors(tmp_path):
  root = tmp_path / "imagenet"
  _write_flat_val(root / "val")
  with pytest.raises(DataError, match=r"validation images without labels: put "
                                      r"LOC_val_solution.csv or the devkit"):
    _load("test", root)
  _write_loc_csv(root)
  (root / "val" / "ILSVRC2012_val_00000099.JPEG").write_bytes(_jpeg(0, 0))
  with pytest.raises(DataError, match=r"LOC_val_solution.csv: no label for .*val_00000099"):
    _load("test", root)
  (root / "val" / "ILSVRC2012_val_00000099.JPEG").unlink()
  (root / imagenet.LOC_CSV).write_text("id,label\nx,y\n")
  with pytest.raises(DataError, match=r"expected the header ImageId,PredictionString"):
    _load("test", root)
  with pytest.raises(DataError, match=r"no ImageNet train images \(looked for "):
    _load("train", root)
  with pytest.raises(DataError, match=r"gt.txt:2: '9' is not an ILSVRC2012_ID"):
    imagenet.read_devkit("1\n9\n", {1: WNIDS[0]}, "gt.txt")
  with pytest.raises(DataError, match=r"meta.mat: not the devkit's meta.mat"):
    imagenet.read_meta_mat(b"garbage", "meta.mat")


def test_plain_imagefolder_tree_stays_imagefolder(tmp_path):
  _write_train_tree(tmp_path / "tree" / "train")
  info = registry.get_info("imagenet1k")
  assert imagenet.find_layout(tmp_path / "tree") is None
  assert resolve_source(info, path=tmp_path / "tree")[0] == "imagefolder"


# ------------------------------------------------------------------------ draft mode
def _photo_like(w=500, h=375, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  a = np.stack([128 + 90 * np.sin(xx / (30 + 10 * c) + yy / 47 + seed) for c in range(3)], -1)
  a += rng.normal(0, 12, a.shape)
  buf = io.BytesIO()
  Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def test_draft_decode_is_close_to_the_full_decode():
  blob = _photo_like()
  with Image.open(io.BytesIO(blob)) as img:
    assert img.draft("RGB", readers.resize_target(500, 375, 64))[1] == (0, 0, 125, 93.75)
  full = readers.decode_image(blob, 64, 3, draft=False).astype(int)
  fast = readers.decode_image(blob, 64, 3, draft=True).astype(int)
  assert full.shape == fast.shape == (64, 64, 3)
  diff = np.abs(full - fast)
  assert 0 < diff.mean() < 3 and diff.max() < 48
  gray = np.abs(readers.decode_image(blob, 64, 1, draft=True).astype(int) -
                readers.decode_image(blob, 64, 1, draft=False)).mean()
  assert gray < 3


def test_draft_changes_nothing_it_cannot_scale():
  png = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), np.uint8)).save(
      png, format="PNG")
  for blob, size in ((png.getvalue(), 64), (_photo_like(100, 75), 64), (_photo_like(), 224)):
    np.testing.assert_array_equal(readers.decode_image(blob, size, 3, draft=True),
                                  readers.decode_image(blob, size, 3, draft=False))


def test_cache_key_holds_the_draft_setting(tmp_path, monkeypatch):
  _write_train_tar(tmp_path / "imagenet")
  big = {w: [(n, _photo_like(60, 45, j)) for j, (n, _) in enumerate(files)]
         for w, files in _train_files().items()}
  inner = [(f"{w}.tar", _tar_bytes(files)) for w, files in big.items()]
  (tmp_path / "imagenet" / imagenet.TRAIN_TAR).write_bytes(_tar_bytes(inner))
  calls = []
  real = readers.decode_many
  monkeypatch.setattr(readers, "decode_many",
                      lambda *a, **k: calls.append(k["draft"]) or real(*a, **k))
  xd, _ = _load("train", tmp_path / "imagenet")
  xf, _ = _load("train", tmp_path / "imagenet", draft=False)
  assert calls == [True, False]
  assert len(list((tmp_path / "cache").glob("imagenet-*.npz"))) == 2
  assert not np.array_equal(xd, xf)
  xd2, _ = _load("train", tmp_path / "imagenet")               # from the cache
  xf2, _ = _load("train", tmp_path / "imagenet", draft=False)
  assert calls == [True, False]
  np.testing.assert_array_equal(xd2, xd)
  np.testing.assert_array_equal(xf2, xf)
  # split_loader takes the setting from the dataset settings (`jpeg_draft`, default on)
  ds = types.SimpleNamespace(name="imagenet1k", source="", path=str(tmp_path / "imagenet"),
                             resolution=8, holdout=0, jpeg_draft=False)
  xs, _ = split_loader(ds)("train", IDX)
  np.testing.assert_array_equal(xs, xf)
  del ds.jpeg_draft
  np.testing.assert_array_equal(split_loader(ds)("train", IDX)[0], xd)


# -------------------------------------------------------------------- archive subsets
def test_imagefolder_archive_decodes_only_the_wanted_classes(tmp_path, monkeypatch):
  members = [(f"tree/train/{w}/{n}", d) for w, files in _train_files().items() for n, d in files]
  members += [(f"tree/val/{w}/{n}", d) for (n, d), w in zip(_val_files(), VAL)]
  arc = tmp_path / "imagenet_subset.tar.gz"
  arc.write_bytes(gzip.compress(_tar_bytes(members)))
  decoded = []
  real = readers.decode_image
  monkeypatch.setattr(readers, "decode_image",
                      lambda src, *a, **k: decoded.append(a[2]) or real(src, *a, **k))
  x, y = load_split("imagenet1k", "train", path=arc, resolution=8, classes=[IDX[1]])
  assert y.tolist() == [IDX[1]] * PER_CLASS
  assert all(f"/{WNIDS[IDX[1]]}/" in d for d in decoded)
  assert len(decoded) == PER_CLASS + VAL.count(WNIDS[IDX[1]])   # both splits, one class


# ---------------------------------------------------------------------- the tar index
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_index_tar_matches_tarfile(tmp_path, fmt):
  names = ["a.JPEG", "dir/b.JPEG", "c" * 120 + ".JPEG", "d/" * 70 + "e.JPEG", "f.txt"]
  if fmt == tarfile.USTAR_FORMAT:                 # long names only as ustar prefix + name
    names = names[:2] + ["d/" * 60 + "e.JPEG", names[-1]]
  members = [(n, os.urandom(700 * i)) for i, n in enumerate(names)]
  p = tmp_path / "x.tar"
  p.write_bytes(_tar_bytes(members, fmt))
  got = readers.index_tar(p)
  assert [n for n, _ in got] == names
  assert [s.read() for _, s in got] == [d for _, d in members]


def test_index_tar_errors(tmp_path):
  data = _tar_bytes([("a.JPEG", b"x" * 5000), ("b.JPEG", b"y" * 5000)])
  p = tmp_path / "t.tar"
  p.write_bytes(data[:7000])
  with pytest.raises(DataError, match=r"t.tar: truncated archive \(member b.JPEG ends at byte "
                                      r"11144, the archive at 7000\)"):
    readers.index_tar(p)
  p.write_bytes(data[:5700])
  with pytest.raises(DataError, match=r"t.tar: truncated archive \(a header cut at byte 5700\)"):
    readers.index_tar(p)
  p.write_bytes(gzip.compress(data))
  with pytest.raises(DataError, match=r"t.tar: not an uncompressed tar archive"):
    readers.index_tar(p)
  (tmp_path / "short").write_bytes(b"z" * 10)
  with pytest.raises(DataError, match=r"short: truncated \(10 of 5000 bytes at offset 0\)"):
    readers.FileSlice(str(tmp_path / "short"), 0, 5000).read()


# ------------------------------------------------------------------- decode threads
def test_decode_threads(monkeypatch):
  monkeypatch.delenv(readers.THREADS_ENV, raising=False)
  expect = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  assert readers.decode_threads() == expect
  monkeypatch.setenv(readers.THREADS_ENV, "48")
  assert readers.decode_threads() == 48
  monkeypatch.setenv(readers.THREADS_ENV, "0")
  with pytest.raises(ConfigError, match="JAXCOND_DECODE_THREADS: expected a positive integer"):
    readers.decode_threads()


def test_decode_many_threads_equal_serial():
  blobs = [_photo_like(80, 60, s) for s in range(70)]
  serial = readers.decode_many(blobs, [str(i) for i in range(70)], 16, 3, num_threads=1)
  threaded = readers.decode_many(blobs, [str(i) for i in range(70)], 16, 3, num_threads=3)
  np.testing.assert_array_equal(serial, threaded)


def test_streaming_reads_the_imagenet_files_in_place(tmp_path):
  """`dataset.streaming=True` on the train tar: `stream.make_index` gives the per-class
  index over the tar (no decode up front), honouring the draft setting, and a read is the
  pixels `load_split` gives (a 3-class subset dataset: the tar holds 3 classes)."""
  from jaxcond.data import stream
  _write_train_tar(tmp_path / "imagenet")
  (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
  kw = dict(path=tmp_path / "imagenet", resolution=8, class_list=tmp_path / "classes.txt")
  for draft in (True, False):
    index = stream.make_index("imagenet100", "train", draft=draft, **kw)
    assert isinstance(index, imagenet.ImageNetIndex) and index.draft == draft
    x, y = load_split("imagenet100", "train", draft=draft, **kw)
    assert index.counts.tolist() == [PER_CLASS] * 3
    np.testing.assert_array_equal(index.read(1, 0), x[np.flatnonzero(y == 1)[0]])
