"""File readers: real IDX data in ../shared/data, small files written here in the real formats."""
import gzip
import io
import pathlib
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from jaxcond.data import load_split, readers, registry
from jaxcond.data.load import resolve_source
from jaxcond.errors import ConfigError, DataError

REAL_HOME = pathlib.Path.home()
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
  """No test reads the user's data dirs or writes the user's cache."""
  monkeypatch.setenv("JAXCOND_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("JAXCOND_DATA_DIR", str(tmp_path / "no_data_here"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))


# ---------------------------------------------------------------------- real IDX files
@pytest.mark.parametrize("name,counts", [
    ("mnist", (MNIST_TRAIN, MNIST_TEST)), ("fashion_mnist", ([6000] * 10, [1000] * 10))])
def test_idx_real_data(shared_data, name, counts):
  for split, expect in zip(("train", "test"), counts):
    x, y = load_split(name, split, path=shared_data / name)
    assert x.shape == (sum(expect), 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    assert np.bincount(y, minlength=10).tolist() == expect
  mean = x.mean() / 255    # test split: README says 0.1325 (MNIST) / 0.2868 (Fashion-MNIST)
  assert abs(mean - {"mnist": 0.1325, "fashion_mnist": 0.2868}[name]) < 5e-4


def test_idx_auto_from_data_dir_and_classes(shared_data, monkeypatch):
  monkeypatch.setenv("JAXCOND_DATA_DIR", str(shared_data))
  assert resolve_source(registry.get_info("mnist"))[0] == "idx"
  x, y = load_split("mnist", "test", classes=[3, 7])
  assert sorted(set(y.tolist())) == [3, 7] and len(y) == MNIST_TEST[3] + MNIST_TEST[7]


# ----------------------------------------------------------------- IDX written by tests
def _idx_bytes(arr: np.ndarray) -> bytes:
  return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + \
      arr.astype(np.uint8).tobytes()


def _write_mnist(folder, x, y, gz=True, prefix="train"):
  folder.mkdir(parents=True, exist_ok=True)
  for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
    data = _idx_bytes(arr)
    name = f"{prefix}-{kind}-ubyte" + (".gz" if gz else "")
    (folder / name).write_bytes(gzip.compress(data) if gz else data)
  return folder


def _digits_like(n=40, hw=(28, 28), seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n,) + hw, dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
  x, y = _digits_like()
  d = _write_mnist(tmp_path / "m", x, y, gz=gz)
  xr, yr = load_split("mnist", "train", path=d)
  np.testing.assert_array_equal(xr[..., 0], x)
  np.testing.assert_array_equal(yr, y)


def test_idx_wrong_magic(tmp_path):
  x, y = _digits_like()
  d = _write_mnist(tmp_path / "m", x, y)
  f = d / "train-images-idx3-ubyte.gz"
  f.write_bytes(gzip.compress(b"\x12\x34" + _idx_bytes(x)[2:]))
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not an IDX file .*magic 0x1234") as e:
    load_split("mnist", "train", path=d)
  assert "\n" not in str(e.value)


def test_idx_truncated(tmp_path):
  x, y = _digits_like()
  d = _write_mnist(tmp_path / "m", x, y)
  f = d / "train-images-idx3-ubyte.gz"
  f.write_bytes(gzip.compress(_idx_bytes(x)[:-100]))
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated: header says 40x28x28"):
    load_split("mnist", "train", path=d)
  f.write_bytes(gzip.compress(_idx_bytes(x))[:-300])    # a cut gzip stream
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated or corrupt gzip"):
    load_split("mnist", "train", path=d)


def test_idx_label_out_of_range(tmp_path):
  x, y = _digits_like()
  y[5] = 12
  d = _write_mnist(tmp_path / "m", x, y)
  with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 12 outside the class range \[0, 10\)"):
    load_split("mnist", "train", path=d)


def test_idx_wrong_shape(tmp_path):
  x, y = _digits_like(hw=(28, 27))
  d = _write_mnist(tmp_path / "m", x, y)
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: images are 28x27x1, mnist expects 28x28x1"):
    load_split("mnist", "train", path=d)


def test_idx_empty_class(tmp_path):
  x, y = _digits_like()
  y[y == 3] = 4
  d = _write_mnist(tmp_path / "m", x, y)
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: class 3 \(3\) has no images in split 'train'"):
    load_split("mnist", "train", path=d)


def test_missing_files(tmp_path):
  with pytest.raises(DataError, match=r"nope: not found"):
    load_split("mnist", "train", path=tmp_path / "nope")
  x, y = _digits_like()
  d = _write_mnist(tmp_path / "m", x, y)
  (d / "train-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: file not found"):
    load_split("mnist", "train", path=d, source="idx")
  with pytest.raises(DataError, match=r"no mnist data found in .*no_data_here.*JAXCOND_DATA_DIR"):
    load_split("mnist", "train")


def test_bad_arguments(tmp_path):
  with pytest.raises(ConfigError, match="dataset.source: unknown source 'hdf5'"):
    load_split("mnist", "train", source="hdf5", path=tmp_path)
  with pytest.raises(ConfigError, match="split: expected train or test"):
    load_split("digits", "dev")
  with pytest.raises(ConfigError, match=r"classes: indices must be distinct and in \[0, 10\)"):
    load_split("digits", "train", classes=[3, 10])


# ---------------------------------------------------------------------------- CIFAR
def _cifar_batch(n, seed, fine=False):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  y = (np.arange(n) + seed) % (100 if fine else 10)
  data = x.transpose(0, 3, 1, 2).reshape(n, 3072)   # the file layout: R plane, G plane, B plane
  d = {b"batch_label": b"batch", b"data": data, b"filenames": [b"f%d.png" % i for i in range(n)]}
  if fine:
    d[b"fine_labels"], d[b"coarse_labels"] = y.tolist(), (y // 5).tolist()
  else:
    d[b"labels"] = y.tolist()
  return x, y, pickle.dumps(d, protocol=2)


def _write_cifar10(folder, n=20):
  sub = folder / "cifar-10-batches-py"
  sub.mkdir(parents=True)
  xs, ys = {}, {}
  for i, f in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
    x, y, blob = _cifar_batch(n, i)
    (sub / f).write_bytes(blob)
    xs[f], ys[f] = x, y
  names = [n.encode() for n in registry.CIFAR10_CLASSES]
  (sub / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
  return sub, xs, ys


def test_cifar10_folder_and_archive(tmp_path):
  sub, xs, ys = _write_cifar10(tmp_path / "extract")
  train_x = np.concatenate([xs[f"data_batch_{k}"] for k in range(1, 6)])
  train_y = np.concatenate([ys[f"data_batch_{k}"] for k in range(1, 6)])
  for path in (sub, tmp_path / "extract"):
    x, y = load_split("cifar10", "train", path=path)
    np.testing.assert_array_equal(x, train_x)
    np.testing.assert_array_equal(y, train_y)
  archive = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(sub, arcname="cifar-10-batches-py")
  x, y = load_split("cifar10", "test", path=archive)
  np.testing.assert_array_equal(x, xs["test_batch"])
  _, _, names = readers.read_cifar(archive, "test", "cifar10")
  assert names == registry.CIFAR10_CLASSES


def test_cifar100_fine_labels(tmp_path):
  sub = tmp_path / "cifar-100-python"
  sub.mkdir()
  x, y, blob = _cifar_batch(200, 0, fine=True)
  (sub / "train").write_bytes(blob)
  (sub / "test").write_bytes(_cifar_batch(100, 1, fine=True)[2])
  (sub / "meta").write_bytes(pickle.dumps(
      {b"fine_label_names": [n.encode() for n in registry.CIFAR100_CLASSES]}, protocol=2))
  xr, yr = load_split("cifar100", "train", path=tmp_path)
  np.testing.assert_array_equal(xr, x)
  np.testing.assert_array_equal(yr, y)


def test_cifar_binary_batches(tmp_path):
  rng = np.random.default_rng(1)
  sub = tmp_path / "cifar-10-batches-bin"
  sub.mkdir()
  xs, ys = [], []
  for f in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 6).astype(np.uint8)
    y[:3] = [0, 1, 2]
    rec = np.concatenate([y[:, None], x.transpose(0, 3, 1, 2).reshape(6, 3072)], axis=1)
    (sub / f).write_bytes(rec.tobytes())
    xs.append(x), ys.append(y)
  archive = tmp_path / "cifar-10-binary.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(sub, arcname="cifar-10-batches-bin")
  x, y = readers.read_cifar(archive, "train", "cifar10")[:2]
  np.testing.assert_array_equal(x, np.concatenate(xs[:5]))
  np.testing.assert_array_equal(y, np.concatenate(ys[:5]))
  (sub / "test_batch.bin").write_bytes((sub / "test_batch.bin").read_bytes()[:-10])
  with pytest.raises(DataError, match=r"test_batch.bin: truncated CIFAR binary batch"):
    readers.read_cifar(tmp_path, "test", "cifar10")
  # CIFAR-100 binary: coarse label, fine label, pixels.
  sub100 = tmp_path / "c100" / "cifar-100-binary"
  sub100.mkdir(parents=True)
  fine = np.arange(100, dtype=np.uint8)
  rec = np.concatenate([fine[:, None] // 5, fine[:, None], np.zeros((100, 3072), np.uint8)], 1)
  (sub100 / "train.bin").write_bytes(rec.tobytes())
  assert load_split("cifar100", "train", path=tmp_path / "c100")[1].tolist() == list(range(100))


def test_cifar_refuses_foreign_pickles(tmp_path):
  sub, _, _ = _write_cifar10(tmp_path)

  class Evil:
    def __reduce__(self):
      return (print, ("pwned",))

  (sub / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
  with pytest.raises(DataError, match=r"test_batch: not a CIFAR python pickle .*forbidden global"):
    load_split("cifar10", "test", path=sub)


# ----------------------------------------------------------------------------- SVHN
def test_svhn_mat(tmp_path):
  scipy_io = pytest.importorskip("scipy.io")
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
  y = np.arange(30) % 10 + 1                                  # SVHN labels 1..10, 10 = digit 0
  scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": y[:, None]})
  xr, yr = load_split("svhn", "train", path=tmp_path)
  np.testing.assert_array_equal(xr, x)
  np.testing.assert_array_equal(yr, y % 10)
  scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": x[:5].transpose(1, 2, 3, 0), "y": y[:6, None]})
  with pytest.raises(DataError, match=r"test_32x32.mat: 6 labels for 5 images"):
    load_split("svhn", "test", path=tmp_path)


# ------------------------------------------------------------------------------ npz
def test_npz(tmp_path):
  x, y = _digits_like()
  np.savez(tmp_path / "train.npz", images=x, labels=y)
  xr, yr = load_split("mnist", "train", path=tmp_path)
  np.testing.assert_array_equal(xr[..., 0], x)
  np.savez(tmp_path / "one.npz", x=x[..., None], y=y.astype(np.int64))
  assert load_split("mnist", "test", path=tmp_path / "one.npz")[0].shape == (40, 28, 28, 1)
  np.savez(tmp_path / "bad.npz", x=x.astype(np.float32), y=y)
  with pytest.raises(DataError, match=r"bad.npz: images are float32, expected uint8"):
    load_split("mnist", "train", path=tmp_path / "bad.npz")


def test_digits():
  x, y = load_split("digits", "train")
  xt, yt = load_split("digits", "test")
  assert x.shape == (1442, 8, 8, 1) and xt.shape == (355, 8, 8, 1) and x.dtype == np.uint8
  assert x.max() == 255 and np.bincount(yt).min() >= 34


def test_holdout_partitions_the_train_split():
  x, y = load_split("digits", "train")
  xr, yr = load_split("digits", "train", holdout=20)
  xv, yv = load_split("digits", "test", holdout=20)
  assert np.bincount(yv).tolist() == [20] * 10
  assert np.array_equal(np.bincount(yr) + 20, np.bincount(y))
  # The rest and the held-out images are disjoint and together are the train split: every
  # image index lands on exactly one side, the last 20 of each class on the held-out one.
  held = np.zeros(len(y), bool)
  for c in range(10):
    held[np.flatnonzero(y == c)[-20:]] = True
  assert np.array_equal(xv, x[held]) and np.array_equal(yv, y[held])
  assert np.array_equal(xr, x[~held]) and np.array_equal(yr, y[~held])
  # The test split is not read at all: no held-out image is a test image by accident.
  xt, _ = load_split("digits", "test")
  assert len(xt) != len(xv)
  # Per-host loading of some classes holds out the same images of those classes.
  xs, ys = load_split("digits", "test", holdout=20, classes=[3, 7])
  keep = np.isin(yv, [3, 7])
  assert np.array_equal(xs, xv[keep]) and np.array_equal(ys, yv[keep])


def test_holdout_errors():
  with pytest.raises(DataError, match=r"^dataset.holdout: class 0 \(0\) has 14\d training"):
    load_split("digits", "train", holdout=500)
  for bad in (-1, 2.5, True):
    with pytest.raises(ConfigError, match="^dataset.holdout: expected an integer"):
      load_split("digits", "train", holdout=bad)
  with pytest.raises(ConfigError, match="^dataset.holdout: applies to the train and test"):
    load_split("digits", "all", holdout=5)


# ----------------------------------------------------------------------- ImageFolder
WNIDS = registry.get_info("imagenette").class_names


def _write_tree(root, counts, splits=("train", "val"), size=(12, 10), extra=()):
  """PNG tree: class c, image j has the constant color (20c, 10j, 7) -> survives resizing."""
  for split in splits:
    for c, n in enumerate(counts):
      d = root / split / WNIDS[c]
      d.mkdir(parents=True, exist_ok=True)
      for j in range(n):
        Image.fromarray(np.full(size + (3,), (20 * c, 10 * j, 7), np.uint8)).save(d / f"{j:03d}.png")
    for e in extra:
      (root / split / e).mkdir(parents=True, exist_ok=True)
      Image.fromarray(np.zeros(size + (3,), np.uint8)).save(root / split / e / "x.png")
  return root


def test_imagefolder_dir(tmp_path):
  counts = [2, 3, 1, 2, 2, 2, 2, 2, 2, 4]
  root = _write_tree(tmp_path / "imagenette", counts, extra=("n09999999",))  # an 11th folder
  x, y = load_split("imagenette", "train", path=root, resolution=8)
  assert x.shape == (sum(counts), 8, 8, 3) and np.bincount(y).tolist() == counts
  np.testing.assert_array_equal(x[:, 0, 0, 0], 20 * y)         # class color kept through resize
  xt, yt = load_split("imagenette", "test", path=root, resolution=8)   # test -> val folder
  np.testing.assert_array_equal(yt, y)
  xs, ys = load_split("imagenette", "train", path=root, resolution=8, classes=[1, 9])
  assert np.bincount(ys, minlength=10).tolist() == [0, 3] + [0] * 7 + [4]
  np.testing.assert_array_equal(xs, x[np.isin(y, [1, 9])])


def test_resize_center_crop_matches_torchvision_convention(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)       # portrait 20 wide, 30 high
  img = Image.fromarray(a)
  out = np.asarray(readers.resize_center_crop(img, 8))
  ref = np.asarray(img.resize((8, 12), Image.BILINEAR))[2:10]   # short side 8; crop top = 2
  np.testing.assert_array_equal(out, ref)
  assert readers.decode_image(_png(a), 20, 1).shape == (20, 20, 1)


def _png(a):
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, format="PNG")
  return buf.getvalue()


def test_imagefolder_archive_equals_folder(tmp_path):
  counts = [3] * 10
  root = _write_tree(tmp_path / "tree", counts)
  archive = tmp_path / "imagenette.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(root, arcname="imagenette2")
  xd, yd = load_split("imagenette", "train", path=root, resolution=8)
  xa, ya = load_split("imagenette", "train", path=archive, resolution=8)
  np.testing.assert_array_equal(xa, xd)
  np.testing.assert_array_equal(ya, yd)
  assert len(list((tmp_path / "cache").glob("imagefolder-archive-*.npz"))) == 2   # both splits
  xc, _ = load_split("imagenette", "train", path=archive, resolution=8)          # from cache
  np.testing.assert_array_equal(xc, xd)


def test_imagefolder_errors(tmp_path):
  root = _write_tree(tmp_path / "t", [2] * 10, splits=("train",))
  (root / "train" / WNIDS[4] / "001.png").write_bytes(b"not a png")
  with pytest.raises(DataError, match=rf"{WNIDS[4]}/001.png: cannot decode image"):
    load_split("imagenette", "train", path=root, resolution=8, cache=False)
  for f in (root / "train" / WNIDS[4]).iterdir():
    f.unlink()
  with pytest.raises(DataError, match=rf"{WNIDS[4]}: class 4 \({WNIDS[4]}\) has no images"):
    load_split("imagenette", "train", path=root, resolution=8)
  with pytest.raises(DataError, match=r"no labelled 'test' folder"):
    load_split("imagenette", "test", path=root, resolution=8)


def test_tinyimagenet_val_annotations(tmp_path):
  root = tmp_path / "tiny"
  (root / "val" / "images").mkdir(parents=True)
  for i, w in enumerate(["n02", "n01", "n02"]):
    Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(root / "val" / "images" / f"val_{i}.JPEG")
  (root / "val" / "val_annotations.txt").write_text(
      "".join(f"val_{i}.JPEG\t{w}\t0\t0\t4\t4\n" for i, w in enumerate(["n02", "n01", "n02"])))
  split_dir, entries = readers.list_imagefolder_dir(root, "test")
  assert split_dir.name == "val"
  assert [(c, f.name) for c, f in entries] == [("n01", "val_1.JPEG"), ("n02", "val_0.JPEG"),
                                               ("n02", "val_2.JPEG")]


@pytest.mark.slow
def test_real_cifar10_jpeg_archive(shared_data, monkeypatch):
  """All 60k JPEGs of the shared copy; decoded once, then read from the cache."""
  monkeypatch.delenv("JAXCOND_CACHE")           # the real cache: later runs take < 1 s
  monkeypatch.setenv("HOME", str(REAL_HOME))
  archive = shared_data / "cifar10_jpeg" / "cifar10-images-jpeg-q75.tar.gz"
  x, y = load_split("cifar10", "train", path=archive)
  xt, yt = load_split("cifar10", "test", path=shared_data / "cifar10_jpeg")
  assert x.shape == (50000, 32, 32, 3) and xt.shape == (10000, 32, 32, 3)
  assert np.bincount(y).tolist() == [5000] * 10 and np.bincount(yt).tolist() == [1000] * 10
  mean = x.reshape(-1, 3).mean(0) / 255                       # README: (0.4913, 0.4821, 0.4465)
  np.testing.assert_allclose(mean, (0.4913, 0.4821, 0.4465), atol=1e-4)


def test_split_loader_reads_what_its_settings_say():
  """`data.split_loader(ds)`: the programs' one way from dataset fields to `load_split`."""
  from jaxcond import configs
  from jaxcond.data import split_loader
  ds = configs.DataSettings(name="digits", holdout=20)
  load = split_loader(ds)
  x, y = load("test")                              # the holdout, not the test split
  xr, yr = load_split("digits", "test", holdout=20)
  np.testing.assert_array_equal(x, xr)
  np.testing.assert_array_equal(y, yr)
  assert np.bincount(y).tolist() == [20] * 10
  xc, yc = load("train", classes=[3])
  assert set(yc.tolist()) == {3} and len(xc) == (load_split("digits", "train")[1] == 3).sum() - 20
