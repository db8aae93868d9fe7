"""Registry constants (the DM authors' code), aliases, resolutions, class lists, memory estimates."""
import numpy as np
import pytest

from jaxcond.data import registry
from jaxcond.data.imagenet_wnids import IMAGENET_WNIDS
from jaxcond.errors import ConfigError, DataError


def test_every_dataset_is_consistent():
  for name in registry.DATASET_NAMES:
    info = registry.get_info(name)
    assert info.name == name
    assert len(info.image_shape) == 3 and info.image_shape[0] == info.image_shape[1]
    assert len(info.mean) == len(info.std) == info.channels
    if info.class_names is not None:
      assert len(info.class_names) == len(set(info.class_names)) == info.num_classes
    if info.imagenet_ids is not None:
      assert len(set(info.imagenet_ids)) == info.num_classes
      assert all(0 <= i < 1000 for i in info.imagenet_ids)
      assert info.class_names == tuple(IMAGENET_WNIDS[i] for i in info.imagenet_ids)


def test_section_1_1_constants():
  g = registry.get_info
  assert (g("mnist").mean, g("mnist").std, g("mnist").image_shape) == ((0.1307,), (0.3081,), (28, 28, 1))
  assert (g("fashion_mnist").mean, g("fashion_mnist").std) == ((0.2861,), (0.3530,))
  assert g("svhn").mean == (0.4377, 0.4438, 0.4728) and g("svhn").std == (0.1980, 0.2010, 0.1970)
  assert g("cifar10").std == (0.2023, 0.1994, 0.2010)
  assert g("cifar100").mean == (0.5071, 0.4866, 0.4409) and g("cifar100").num_classes == 100
  ti = g("tinyimagenet")
  assert ti.image_shape == (64, 64, 3) and ti.num_classes == 200 and ti.mean == (0.485, 0.456, 0.406)
  assert g("imagewoof").imagenet_ids == (193, 182, 258, 162, 155, 167, 159, 273, 207, 229)
  assert g("imageyellow").imagenet_ids == (309, 986, 954, 951, 987, 779, 599, 291, 72, 11)
  for sub in ("imagenette", "imagewoof", "imagemeow", "imagesquawk", "imagefruit", "imageyellow"):
    assert g(sub).image_shape == (128, 128, 3) and g(sub).std == (0.229, 0.224, 0.225)


def test_class_names():
  assert registry.get_info("fashion_mnist").class_names[9] == "Ankle boot"
  assert registry.get_info("cifar10").class_names[3] == "cat"
  names = registry.get_info("cifar100").class_names
  assert list(names) == sorted(names) and names[0] == "apple" and names[-1] == "worm"
  # imagenette's WordNet ids (TFDS imagenette_labels.txt): tench ... parachute.
  assert registry.get_info("imagenette").class_names[:2] == ("n01440764", "n02102040")
  assert registry.get_info("imagenette").class_names[-1] == "n03888257"


def test_wnid_table():
  assert len(IMAGENET_WNIDS) == len(set(IMAGENET_WNIDS)) == 1000
  assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)


def test_aliases_and_unknown():
  assert registry.get_info("FashionMNIST").name == "fashion_mnist"
  assert registry.get_info("CIFAR-10").name == "cifar10"
  assert registry.get_info("ImageNet").name == "imagenet1k"
  with pytest.raises(ConfigError, match="unknown dataset 'cifar11'"):
    registry.get_info("cifar11")


def test_resolution():
  assert registry.get_info("imagenet1k").image_shape == (64, 64, 3)
  assert registry.get_info("imagenet1k", resolution=32).image_shape == (32, 32, 3)
  assert registry.get_info("imagenette", resolution=64).resolution == 64
  assert registry.get_info("imagenet100").resolution == 224
  assert registry.get_info("mnist", resolution=28).resolution == 28
  with pytest.raises(ConfigError, match="dataset.resolution: cifar10 is 32x32"):
    registry.get_info("cifar10", resolution=64)
  with pytest.raises(ConfigError, match="dataset.resolution"):
    registry.get_info("imagenet1k", resolution=0)


def test_imagenet100_and_class_list(tmp_path):
  i100, i10 = registry.get_info("imagenet100"), registry.get_info("imagenet10")
  assert i100.num_classes == 100 and i10.imagenet_ids == i100.imagenet_ids[:10]
  assert i100.class_names[0] == "n02869837"   # first line of the CMC / class100.txt list
  f = tmp_path / "classes.txt"
  f.write_text("# my list\nn01440764\n217\n" + "\n".join(str(i) for i in range(300, 308)) + "\n")
  own = registry.get_info("imagenet10", class_list=f)
  assert own.imagenet_ids == (0, 217) + tuple(range(300, 308))
  f.write_text("n01440764\nbanana\n")
  with pytest.raises(DataError, match="classes.txt:2: 'banana'"):
    registry.get_info("imagenet100", class_list=f)
  with pytest.raises(DataError, match="class list file not found"):
    registry.get_info("imagenet100", class_list=tmp_path / "none.txt")
  with pytest.raises(ConfigError, match="class_list"):
    registry.get_info("cifar10", class_list=f)


def test_digits_constants_match_data():
  from jaxcond.data.readers import read_digits
  info = registry.get_info("digits")
  x, y = read_digits("train")
  xt, _ = read_digits("test")
  assert len(x) == info.num_train and len(xt) == info.num_test
  assert np.bincount(y).max() == info.max_per_class
  f = x.astype(np.float64) / 255
  assert abs(f.mean() - info.mean[0]) < 1e-4 and abs(f.std() - info.std[0]) < 1e-4


def test_bank_nbytes():
  mnist = registry.get_info("mnist")
  assert registry.bank_nbytes(mnist) == 10 * 6742 * 784
  assert registry.bank_nbytes(mnist, num_slots=16) == 16 * 6742 * 784
  assert registry.padded_slots(10, 8) == 16 and registry.padded_slots(1000, 8) == 1000
  assert registry.bank_nbytes(registry.get_info("imagenet1k")) == 1000 * 1300 * 64 * 64 * 3
  unknown = registry.DatasetInfo("x", 2, (4, 4, 1), (0.,), (1.,), None, None)
  assert registry.bank_nbytes(unknown, per_class=5) == 2 * 5 * 16
  with pytest.raises(ConfigError, match="per-class count unknown"):
    registry.bank_nbytes(unknown)
