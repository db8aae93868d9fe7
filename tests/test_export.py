"""`python -m jaxcond.export`: ImageFolder PNG trees and KIP-style .npz files as DC-BENCH
(arXiv 2207.09639) reads them."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxcond import export, synthetic_io
from jaxcond.errors import ConfigError, DataError

FMNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
          "Bag", "Ankle boot")


def _workdir(tmp_path, *, decoded=False, ch=1, names=FMNIST, num_classes=10):
  rng = np.random.default_rng(1)
  stored = rng.normal(size=(num_classes, 2, 12, 12, ch)).astype(np.float32)
  dec = rng.normal(size=(num_classes, 8, 12, 12, ch)).astype(np.float32) if decoded else None
  sset = synthetic_io.make(stored, dec, mean=[0.3] * ch, std=[0.4] * ch,
                           dataset="fashion_mnist", method="m3d" if decoded else "dm",
                           factor=2 if decoded else 1, class_names=names)
  d = tmp_path / "run"
  d.mkdir()
  synthetic_io.save(d / "synthetic.npz", sset)
  return d, synthetic_io.load(d / "synthetic.npz")


def _read_imagefolder(root: pathlib.Path):
  """What torchvision's ImageFolder sees: classes = sorted folder names, label = their index."""
  classes = sorted(p.name for p in root.iterdir() if p.is_dir())
  xs, ys = [], []
  for label, name in enumerate(classes):
    for f in sorted((root / name).iterdir()):
      xs.append(np.asarray(Image.open(f)))
      ys.append(label)
  return classes, np.stack(xs), np.asarray(ys)


@pytest.mark.parametrize("decoded,ch", [(False, 1), (True, 3)])
def test_imagefolder_reads_back_exactly(tmp_path, decoded, ch):
  d, sset = _workdir(tmp_path, decoded=decoded, ch=ch)
  out = tmp_path / "tree"
  assert export.main(["export", str(d), "--format", "imagefolder", "--out", str(out)]) == 0
  classes, x, y = _read_imagefolder(out)
  assert classes[0] == "00_T-shirt_top" and classes[9] == "09_Ankle_boot"
  np.testing.assert_array_equal(y, sset.y)                  # sorted folders = jaxcond labels
  want = sset.pixels("train")                                # decoded for multi-formation
  assert len(x) == (80 if decoded else 20)
  np.testing.assert_array_equal(x.reshape(want.shape), want)


def test_imagefolder_folder_order_survives_more_than_ten_classes(tmp_path):
  names = [f"c{i}" for i in range(12)]
  d, sset = _workdir(tmp_path, names=names, num_classes=12)
  export.export(d, "imagefolder", tmp_path / "t")
  classes, _, y = _read_imagefolder(tmp_path / "t")
  assert classes[:3] == ["00_c0", "01_c1", "02_c2"]
  np.testing.assert_array_equal(y, sset.y)


@pytest.mark.parametrize("unit", [False, True])
def test_dcbench_npz_reads_back(tmp_path, unit):
  d, sset = _workdir(tmp_path, decoded=True, ch=3)
  path = export.export(d, "dcbench", tmp_path / "dc", unit=unit)
  assert pathlib.Path(path).name == "m3d_fashion_mnist_ipc2.npz"
  with np.load(path, allow_pickle=False) as z:
    images, labels = z["images"], z["labels"]
    assert images.dtype == np.float32 and images.shape == (80, 12, 12, 3)    # NHWC, decoded
    assert labels.shape == (80, 10) and np.all(labels.sum(1) == 1)           # one-hot
    np.testing.assert_array_equal(labels.argmax(1), sset.y)
    pixels = images * z["std"] + z["mean"]
    np.testing.assert_allclose(pixels * 255.0, sset.pixels("train"), atol=1e-3)
    if unit:
      assert images.min() >= 0 and images.max() <= 1
    else:
      np.testing.assert_allclose(images, synthetic_io.normalize_uint8(
          sset.pixels("train"), sset.mean, sset.std), atol=1e-5)
    assert list(z["class_names"]) == list(FMNIST)


def test_export_bad_inputs_are_one_line(tmp_path, capsys):
  d, _ = _workdir(tmp_path)
  f = tmp_path / "afile"
  f.write_text("x")
  with pytest.raises(ConfigError, match="--out: .* is a file"):
    export.export(d, "imagefolder", f)
  full = tmp_path / "full"
  full.mkdir()
  (full / "x").write_text("")
  with pytest.raises(ConfigError, match="not empty"):
    export.export(d, "dcbench", full)
  with pytest.raises(ConfigError, match="--format: unknown format 'kip'"):
    export.export(d, "kip", tmp_path / "o")
  with pytest.raises(DataError, match="no synthetic set here"):
    export.export(tmp_path / "nothing", "imagefolder", tmp_path / "o")
  bad = tmp_path / "bad.npz"
  bad.write_text("hello")
  with pytest.raises(DataError, match="not a .npz synthetic set"):
    export.export(bad, "imagefolder", tmp_path / "o")
  assert not (tmp_path / "o").exists()
  assert export.main(["export", str(bad), "--format", "dcbench", "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "not a .npz" in err and err.count("\n") == 1


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
  for argv in (["x", "--format", "kip", "--out", "o"], ["x", "--out", "o"],
               ["x", "--format", "dcbench", "--out", "o", "--colour"]):
    assert export.main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: command line: ") and err.count("\n") == 1, err
