"""jaxcond.data.identity: dataset files checked against their known identity (MNIST vs
Fashion-MNIST, CIFAR-10 vs CIFAR-100, published files vs modified copies), one line each."""
import gzip
import pickle
import shutil
import tarfile

import numpy as np
import pytest

from jaxcond.data import identity, load_split, registry
from jaxcond.data.load import dataset_identity
from jaxcond.errors import DataError


# ---------------------------------------------------------------- MNIST vs Fashion-MNIST

def test_fashion_mnist_files_given_as_mnist_are_refused(shared_data):
  with pytest.raises(DataError) as err:
    load_split("mnist", "test", path=shared_data / "fashion_mnist")
  msg = str(err.value)
  assert "\n" not in msg and "t10k-images-idx3-ubyte.gz" in msg
  assert "published Fashion-MNIST files, not MNIST" in msg and "dataset.name=fashion_mnist" in msg
  with pytest.raises(DataError, match="published MNIST files, not Fashion-MNIST"):
    load_split("fashion_mnist", "train", path=shared_data / "mnist")


def test_published_idx_files_are_named_verified(shared_data):
  for name in ("mnist", "fashion_mnist"):
    for split in ("train", "test"):
      got = dataset_identity(name, split, path=shared_data / name)
      assert got == f"{name} (published files: content signature verified)"


def test_modified_and_raw_idx_copies(shared_data, tmp_path):
  # A raw (un-gzipped) copy of the published files is still the published data.
  raw = tmp_path / "raw"
  raw.mkdir()
  for f in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
    (raw / f).write_bytes(gzip.open(shared_data / "mnist" / (f + ".gz")).read())
  assert "published files" in dataset_identity("mnist", "test", path=raw)
  # One changed pixel of the first image: allowed, but named as an unrecognised copy.
  blob = bytearray((raw / "t10k-images-idx3-ubyte").read_bytes())
  blob[16 + 200] ^= 0xFF
  (raw / "t10k-images-idx3-ubyte").write_bytes(bytes(blob))
  got = dataset_identity("mnist", "test", path=raw)
  assert got.startswith("mnist (unrecognised copy: ") and "t10k-images-idx3-ubyte" in got
  x, _ = load_split("mnist", "test", path=raw)
  assert x.shape == (10000, 28, 28, 1)


def test_lossy_cifar10_jpeg_tree_is_named_a_modified_copy(shared_data):
  got = dataset_identity("cifar10", path=shared_data / "cifar10_jpeg")
  assert got == ("cifar10 (modified copy: image tree cifar10-images-jpeg-q75.tar.gz, not the "
                 "published CIFAR-10 pickles)")


# -------------------------------------------------------------------- CIFAR-10 vs CIFAR-100

def _batch(n, fine):
  rng = np.random.default_rng(0)
  d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
  d[b"fine_labels" if fine else b"labels"] = (np.arange(n) % (100 if fine else 10)).tolist()
  return pickle.dumps(d, protocol=2)


def _cifar10_folder(root):
  sub = root / "cifar-10-batches-py"
  sub.mkdir(parents=True)
  for f in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
    (sub / f).write_bytes(_batch(10, False))
  (sub / "batches.meta").write_bytes(pickle.dumps(
      {b"label_names": [n.encode() for n in registry.CIFAR10_CLASSES]}, protocol=2))
  return sub


def _cifar100_folder(root):
  sub = root / "cifar-100-python"
  sub.mkdir(parents=True)
  (sub / "train").write_bytes(_batch(200, True))
  (sub / "test").write_bytes(_batch(100, True))
  (sub / "meta").write_bytes(pickle.dumps(
      {b"fine_label_names": [n.encode() for n in registry.CIFAR100_CLASSES]}, protocol=2))
  return sub


def test_cifar10_files_given_as_cifar100_are_refused(tmp_path):
  sub = _cifar10_folder(tmp_path / "c10")
  for path in (tmp_path / "c10", sub):
    with pytest.raises(DataError, match=r"these are CIFAR-10 files \(file layout\), not "
                                        r"CIFAR-100; .*dataset.name=cifar10$"):
      load_split("cifar100", "train", path=path, source="cifar")
  archive = tmp_path / "c10.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(sub, arcname="cifar-10-batches-py")
  with pytest.raises(DataError, match="these are CIFAR-10 files"):
    load_split("cifar100", "test", path=archive, source="cifar")
  assert "unrecognised copy" in dataset_identity("cifar10", path=archive)
  x, _ = load_split("cifar10", "test", path=archive)
  assert x.shape == (10, 32, 32, 3)


def test_cifar100_files_given_as_cifar10_are_refused(tmp_path):
  _cifar100_folder(tmp_path / "c100")
  with pytest.raises(DataError, match="these are CIFAR-100 files .*not CIFAR-10;"):
    load_split("cifar10", "test", path=tmp_path / "c100", source="cifar")
  got = dataset_identity("cifar100", path=tmp_path / "c100")
  assert got.startswith("cifar100 (unrecognised copy: ") and "CIFAR-100's layout" in got


def test_cifar_published_md5s_identify_the_dataset(tmp_path, monkeypatch):
  sub = _cifar10_folder(tmp_path / "c10")
  fake = identity.md5(sub / "test_batch")
  monkeypatch.setitem(identity.CIFAR_MD5, fake, ("cifar10", "test_batch"))
  assert dataset_identity("cifar10", path=tmp_path / "c10") == \
      "cifar10 (published test_batch (md5 verified))"
  archive = tmp_path / "x.tar.gz"
  shutil.copy(sub / "test_batch", archive)        # any file: only its md5 counts here
  monkeypatch.setitem(identity.CIFAR_MD5, identity.md5(archive),
                      ("cifar100", "cifar-100-python.tar.gz"))
  with pytest.raises(DataError, match=r"CIFAR-100 files \(published cifar-100-python.tar.gz "
                                      r"\(md5 verified\)\), not CIFAR-10"):
    identity.check_cifar("cifar10", archive)
