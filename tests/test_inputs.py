"""Inputs that cannot fool a run: workdirs, counts, the NaN stop message, and dataset files
checked against their known identity, each a one-line error before any long work."""
import gzip
import json
import pathlib
import pickle
import shutil
import tarfile

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import condense, configs, grids, report, steps
from jaxcond.data import identity, load_split, registry
from jaxcond.data.load import dataset_identity
from jaxcond.errors import ConfigError, DataError

from conftest import load_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
  c = load_experiment("quickstart.py:method=dm")
  base = {"steps": 2, "checkpoint_every": 0, "log_every": 1, "batch_real": 8, "ipc": 2,
          "model.width": 8, "eval.num_nets": 0, "quiet": True}
  for key, value in {**base, **overrides}.items():
    configs.set_field(c, key, value, source="test")
  return c


def _no_data(monkeypatch):
  def boom(*args, **kwargs):
    raise AssertionError("data were touched before the workdir was checked")
  monkeypatch.setattr(condense.realdata, "open_source", boom)


# ------------------------------------------------------------------------------ workdir

def test_workdir_that_is_a_file_fails_before_loading(tmp_path, monkeypatch):
  _no_data(monkeypatch)
  f = tmp_path / "out"
  f.write_text("")
  with pytest.raises(ConfigError, match=r"^workdir: .*out is a file, not a folder"):
    condense.run(tiny_config(), str(f))
  with pytest.raises(ConfigError, match=r"^workdir: cannot create .*sub: .*out is a file$"):
    condense.run(tiny_config(), str(f / "sub"))


def test_unwritable_workdir_message(tmp_path, monkeypatch):
  """A folder the process may not write to (os.access says no; the tests run as root, who
  may write anywhere, so the answer is simulated) fails before any data is read."""
  _no_data(monkeypatch)
  (tmp_path / "ro").mkdir()
  monkeypatch.setattr(condense.os, "access", lambda *a: False)
  with pytest.raises(ConfigError, match=r"^workdir: .*ro is not writable$"):
    condense.run(tiny_config(), str(tmp_path / "ro"))
  with pytest.raises(ConfigError, match=r"cannot be created \(.* is not writable\)"):
    condense.check_workdir(str(tmp_path / "new" / "deeper"))


def test_count_errors_stop_before_the_plan_compiles(tmp_path, monkeypatch):
  """An ipc or batch_real larger than the dataset's smallest class (known from the
  registry) is refused before the plan compiles anything or any data is read."""
  _no_data(monkeypatch)

  def no_plan(*args, **kwargs):
    raise AssertionError("the plan compiled before the count check")

  monkeypatch.setattr(condense.plan_lib, "make_plan", no_plan)
  with pytest.raises(ConfigError, match=r"^ipc: 200 images per class is larger than the "
                                        r"smallest class of the standard digits train split"):
    condense.run(tiny_config(ipc=200), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match=r"^batch_real: 130 is larger .* which has 129 "):
    condense.run(tiny_config(batch_real=130, **{"dataset.holdout": 10}), str(tmp_path / "b"))


def test_check_workdir_accepts_new_and_existing_folders(tmp_path):
  condense.check_workdir(str(tmp_path))
  condense.check_workdir(str(tmp_path / "a" / "b"))
  assert not (tmp_path / "a").exists()          # a check, not a mkdir


def test_cli_workdir_file_is_one_line(tmp_path, capsys):
  f = tmp_path / "out"
  f.write_text("")
  rc = condense.main(["condense", "--config", str(ROOT / "experiments" / "quickstart.py"),
                      "--workdir", str(f)])
  err = capsys.readouterr().err
  assert rc == 2 and err.count("\n") == 1
  assert err.startswith("error: workdir: ") and "is a file" in err


# ------------------------------------------------------------------------------ NaN stop

def _nan_from(step_limit):
  real = steps.make_bank_step

  def patched(*args, **kwargs):
    fn = real(*args, **kwargs)

    def wrapped(state, bank, step):
      state, m = fn(state, bank, step)
      return state, dict(m, loss=jnp.where(step >= step_limit, jnp.nan, m["loss"]))
    return wrapped
  return patched


def test_nan_stop_without_a_checkpoint_says_there_is_none(tmp_path, monkeypatch):
  monkeypatch.setattr(steps, "make_bank_step", _nan_from(1))
  with pytest.raises(condense.DivergedError) as err:
    condense.run(tiny_config(steps=4), str(tmp_path))
  msg = str(err.value)
  assert msg.startswith("step 1: loss is nan") and "\n" not in msg
  assert "No checkpoint was written" in msg and "step 0" not in msg
  assert not (tmp_path / "checkpoints").exists() or not any(
      p.name.isdigit() for p in (tmp_path / "checkpoints").iterdir())


# ------------------------------------------------------------- end of a run: report, identity

@pytest.mark.slow
def test_run_writes_identity_grids_and_report_and_survives_a_report_failure(tmp_path,
                                                                            monkeypatch):
  def broken(workdir, **_):
    raise RuntimeError("disk full")
  monkeypatch.setattr(report, "write", broken)
  lines = []

  class Log:
    def write(self, s):
      lines.append(s)

    def flush(self):
      pass

  out = condense.run(tiny_config(quiet=False), str(tmp_path), log=Log())
  assert out["step"] == 2 and (tmp_path / "synthetic.npz").exists()
  text = "".join(lines)
  assert "report not written (RuntimeError: disk full)" in text
  assert "python -m jaxcond.report" in text
  cfg = json.loads((tmp_path / "config.json").read_text())
  assert cfg["dataset_identity"] == "digits (scikit-learn's bundled copy)"
  for png in ("synthetic.png", "images/init.png"):
    assert grids.grid_files(tmp_path / png)
  monkeypatch.undo()
  html = pathlib.Path(report.write(tmp_path)).read_text()
  assert "digits (scikit-learn" in html and "synthetic.png" in html


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
