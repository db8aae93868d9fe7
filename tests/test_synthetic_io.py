"""synthetic.npz: round trip, notebook load without expectations, and one-line errors."""
import numpy as np
import pytest

import jaxcond
from jaxcond import synthetic_io
from jaxcond.errors import DataError

MEAN, STD = (0.5,), (0.25,)


def _set(decoded=False, c=3, ipc=2, hw=4):
  rng = np.random.default_rng(0)
  stored = rng.normal(size=(c, ipc, hw, hw, 1)).astype(np.float32)
  dec = rng.normal(size=(c, ipc * 4, hw, hw, 1)).astype(np.float32) if decoded else None
  return synthetic_io.make(stored, dec, mean=MEAN, std=STD, dataset="mnist", method="m3d",
                           factor=2 if decoded else 1, steps=7, seed=3,
                           class_names=("a", "b", "c"))


@pytest.mark.parametrize("decoded", [False, True])
def test_round_trip_without_expectations(tmp_path, decoded):
  s = _set(decoded)
  path = synthetic_io.save(tmp_path / "synthetic.npz", s)
  back = jaxcond.load(path)
  np.testing.assert_array_equal(back.x, s.x)
  np.testing.assert_array_equal(back.y, s.y)
  np.testing.assert_array_equal(back.stored, s.stored)
  assert back.decoded == decoded
  assert back.x.shape[0] == (24 if decoded else 6)
  assert back.class_names == ("a", "b", "c") and back.num_classes == 3
  assert (back.dataset, back.method, back.factor, back.ipc, back.steps, back.seed) == (
      "mnist", "m3d", 2 if decoded else 1, 2, 7, 3)
  assert back.mean == MEAN and back.std == STD
  # uint8 pixels invert the normalisation
  px = back.pixels("stored")
  want = np.round(np.clip(s.stored * 0.25 + 0.5, 0, 1) * 255)
  np.testing.assert_array_equal(px, want.astype(np.uint8))


def test_expectations_checked(tmp_path):
  path = synthetic_io.save(tmp_path / "s.npz", _set())
  synthetic_io.load(path, num_classes=3, image_shape=(4, 4, 1), mean=MEAN, std=STD,
                    dataset="mnist")
  with pytest.raises(DataError, match="made for dataset 'mnist'"):
    synthetic_io.load(path, dataset="cifar10")
  with pytest.raises(DataError, match=r"shape \(4, 4, 1\), expected \(28, 28, 1\)"):
    synthetic_io.load(path, image_shape=(28, 28, 1))
  with pytest.raises(DataError, match="normalisation mean"):
    synthetic_io.load(path, mean=(0.1307,))
  with pytest.raises(DataError, match="made for 3 classes, expected 10"):
    synthetic_io.load(path, num_classes=10)


@pytest.mark.parametrize("content,needle", [
    (b"hello, this is text\n", "not a .npz synthetic set"),
    (b"", "empty file"),
])
def test_not_npz_is_one_line(tmp_path, content, needle):
  p = tmp_path / "bad.npz"
  p.write_bytes(content)
  with pytest.raises(DataError, match=needle) as e:
    synthetic_io.load(p)
  assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_truncated_and_missing(tmp_path):
  path = synthetic_io.save(tmp_path / "s.npz", _set())
  blob = open(path, "rb").read()
  cut = tmp_path / "cut.npz"
  cut.write_bytes(blob[: len(blob) // 2])
  with pytest.raises(DataError, match="truncated or corrupt"):
    synthetic_io.load(cut)
  with pytest.raises(DataError, match="not found"):
    synthetic_io.load(tmp_path / "nope.npz")
  with pytest.raises(DataError, match="is a folder"):
    synthetic_io.load(tmp_path)
  other = tmp_path / "other.npz"
  np.savez(other, images=np.zeros((2, 4, 4, 1), np.float32))
  with pytest.raises(DataError, match="missing array 'x'"):
    synthetic_io.load(other)


def test_old_files_without_class_names(tmp_path):
  """Files written before `class_names`/`format_version` still load."""
  p = tmp_path / "old.npz"
  np.savez(p, x=np.zeros((4, 4, 4, 1), np.float32), y=np.array([0, 0, 1, 1], np.int32),
           mean=np.float32([0.5]), std=np.float32([0.25]), dataset=np.str_("digits"))
  s = synthetic_io.load(p)
  assert s.class_names == ("0", "1") and s.ipc == 2 and not s.decoded


def test_check_normalized_refuses_raw_pixels_in_one_line():
  rs = np.random.default_rng(0)
  u8 = rs.integers(0, 256, (4, 8, 8, 1), np.uint8)
  synthetic_io.check_normalized(synthetic_io.normalize_uint8(u8, (0.3,), (0.4,)))
  # a condensed set may drift far past the real data's range (seen in CI: up to 68 after
  # 4 DDM steps at learning rate 1): not pixels, since it holds negative values
  synthetic_io.check_normalized(np.float32(70.0) * rs.standard_normal((4, 8, 8, 1)))
  cases = {"uint8": (u8, "uint8 images"),
           "float 0..255": (u8.astype(np.float32), "raw \\[0, 255\\] pixels"),
           "float 0..1": (u8.astype(np.float32) / 255, "in \\[0, 1\\]"),
           "nan": (np.full((2, 2), np.nan, np.float32), "non-finite")}
  for name, (x, msg) in cases.items():
    with pytest.raises(DataError, match=f"^x_train: .*{msg}") as err:
      synthetic_io.check_normalized(x, "x_train")
    assert len(str(err.value).splitlines()) == 1, name
