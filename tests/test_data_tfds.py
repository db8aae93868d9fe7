"""TFDS path: ArrayRecord datasets built here by a GeneratorBasedBuilder, read without TF."""
import dataclasses

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
from PIL import Image  # noqa: E402

from jaxcond.data import (ClassStream, TFDSIndex, get_info, load_split, make_index,  # noqa: E402
                          registry)
from jaxcond.data.load import resolve_source  # noqa: E402
from jaxcond.data.imagenet_wnids import IMAGENET_WNIDS  # noqa: E402
from jaxcond.errors import DataError  # noqa: E402

_RNG = np.random.default_rng(0)
X = {"train": _RNG.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
     "test": _RNG.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)}
Y = {s: (np.arange(len(x)) * 7) % 10 for s, x in X.items()}


class JaxcondTinyCifar(tfds.core.GeneratorBasedBuilder):
  """CIFAR-shaped: PIL images (tfds encodes PNG without TF), fixed order for comparisons."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": tfds.features.ClassLabel(names=list(get_info("cifar10").class_names))}),
        supervised_keys=("image", "label"), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    return {s: self._generate_examples(s) for s in ("train", "test")}

  def _generate_examples(self, split):
    for i, (x, y) in enumerate(zip(X[split], Y[split])):
      yield i, {"image": Image.fromarray(x), "label": int(y)}


# ImageNet-shaped: 1000 WordNet-id labels, 20x24 images; 0 and 217 are imagenette classes.
IN_LABELS = [0, 217, 5, 0, 217, 217, 999, 0]


class JaxcondTinyImagenet(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=list(IMAGENET_WNIDS))}),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(), "validation": self._generate_examples()}

  def _generate_examples(self):
    for i, y in enumerate(IN_LABELS):
      yield i, {"image": Image.fromarray(np.full((20, 24, 3), (i * 30, y % 256, 1), np.uint8)),
                "label": y}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tfds")
  JaxcondTinyCifar(data_dir=str(d), file_format="array_record").download_and_prepare()
  JaxcondTinyImagenet(data_dir=str(d), file_format="array_record").download_and_prepare()
  return d


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXCOND_CACHE", str(tmp_path / "cache"))


def test_tfds_roundtrip(data_dir):
  for split in ("train", "test"):
    x, y = load_split("cifar10", split, source="tfds:jaxcond_tiny_cifar", path=data_dir)
    np.testing.assert_array_equal(x, X[split])
    np.testing.assert_array_equal(y, Y[split])
  x, y = load_split("cifar10", "train", source="tfds:jaxcond_tiny_cifar", path=data_dir,
                    classes=[1, 4])
  keep = np.isin(Y["train"], [1, 4])
  np.testing.assert_array_equal(x, X["train"][keep])
  np.testing.assert_array_equal(y, Y["train"][keep])


def test_imagenet_subset_from_1000_classes(data_dir):
  """imagenette read from a 1000-class source: labels mapped by WordNet id, images resized."""
  kw = dict(source="tfds:jaxcond_tiny_imagenet", path=data_dir, resolution=16)
  with pytest.raises(DataError, match=r"class 2 \(n02979186\) has no images in split 'train'"):
    load_split("imagenette", "train", **kw)
  kw["classes"] = [0, 1]                                       # the two classes it has
  x, y = load_split("imagenette", "train", **kw)
  keep = [i for i, l in enumerate(IN_LABELS) if l in (0, 217)]
  assert x.shape == (len(keep), 16, 16, 3)
  np.testing.assert_array_equal(y, [0 if IN_LABELS[i] == 0 else 1 for i in keep])
  np.testing.assert_array_equal(x[:, 5, 5, 0], [i * 30 for i in keep])   # resized, same record
  xt, _ = load_split("imagenette", "test", **kw)               # test -> TFDS "validation"
  np.testing.assert_array_equal(xt, x)


def test_stream_over_tfds(data_dir):
  index = make_index("cifar10", "train", source="tfds:jaxcond_tiny_cifar", path=data_dir)
  assert isinstance(index, TFDSIndex) and index.counts.tolist() == [4] * 10
  stream = ClassStream(index, batch=2, seed=0, num_steps=2, num_threads=2)
  for step, arr in stream:
    host = np.asarray(arr)
    assert host.shape == (10, 2, 32, 32, 3)
    for c in range(10):
      for img in host[c]:
        i = int(np.flatnonzero((X["train"] == img).all(axis=(1, 2, 3)))[0])
        assert Y["train"][i] == c


def test_auto_detects_tfds_data_dir(data_dir, monkeypatch):
  patched = dataclasses.replace(registry.get_info("cifar10"), tfds_name="jaxcond_tiny_cifar")
  monkeypatch.setitem(registry._FIXED, "cifar10", patched)
  monkeypatch.setenv("JAXCOND_DATA_DIR", str(data_dir))
  assert resolve_source(patched)[:2] == ("tfds", data_dir)
  assert resolve_source(patched, path=data_dir)[:2] == ("tfds", data_dir)
  x, y = load_split("cifar10", "test")
  np.testing.assert_array_equal(x, X["test"])


def test_missing_tfds_dataset(tmp_path):
  with pytest.raises(DataError, match=r"TFDS dataset 'cifar10' split 'train' not readable"):
    load_split("cifar10", "train", source="tfds", path=tmp_path)
