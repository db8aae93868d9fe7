"""jaxcond.files: atomic writes leave the old or the new file, never a half-written one."""
import errno
import io
import json
import os

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from jaxcond import export, files, grids, progress, report, synthetic_io
from jaxcond.errors import ConfigError


def test_write_json_replaces_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "results.json"
  files.write_json(path, {"a": 1})
  files.write_json(path, {"a": [2, 3]}, indent=1)
  assert json.loads(path.read_text()) == {"a": [2, 3]}
  assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / "results.json"
  files.write_json(path, {"ok": True})
  with pytest.raises(TypeError):          # not JSON-serialisable: fails before replacing
    files.write_json(path, {"bad": object()})
  assert json.loads(path.read_text()) == {"ok": True}


# ----------------------------------------------------------------------------- storage errors

@pytest.mark.parametrize("err,cause", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device (ENOSPC)"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded (EDQUOT)"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system (EROFS)"),
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied (EACCES)"),
    (ValueError("RESOURCE_EXHAUSTED: Error writing local file \"/d/x\": Failed to write 236 "
                "bytes to file 11: No space left on device [os_error_code='28']"),
     "no space left on device (ENOSPC)"),
    (ValueError("Error writing \"x\" [os_error_code='122']"), "disk quota exceeded (EDQUOT)"),
])
def test_storage_errors_are_recognised_however_they_are_reported(err, cause):
  assert files.storage_errno(err) is not None and files.describe(err) == cause


def test_other_errors_are_not_storage_errors():
  assert files.storage_errno(ValueError("DATA_LOSS: bad")) is None
  assert files.describe(KeyError("x")) == "KeyError: 'x'"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_a_write_the_storage_refuses_keeps_the_old_file(tmp_path, monkeypatch, code):
  path = tmp_path / "results.json"
  files.write_json(path, {"ok": True})
  real_write = io.BufferedWriter.write

  def half_then_fail(f, data):       # the disk fills up half way through
    real_write(f, bytes(data)[:len(data) // 2])
    raise OSError(code, os.strerror(code))
  monkeypatch.setattr(files, "open", lambda p, mode="r", **kw: _Wrapped(p, mode, half_then_fail),
                      raising=False)
  with pytest.raises(files.StorageError) as err:
    files.write_json(path, {"new": list(range(1000))})
  assert str(err.value) == f"cannot write {path}: {files._CAUSES[code]}"
  monkeypatch.undo()
  assert json.loads(path.read_text()) == {"ok": True}
  assert sorted(os.listdir(tmp_path)) == ["results.json"]          # no temporary left


class _Wrapped:
  """A real file whose writes go through `write(f, data)`."""

  def __init__(self, p, mode, write):
    self._f, self._write = open(p, mode), write

  def write(self, data):
    return self._write(self._f, data.encode() if isinstance(data, str) else data)

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
  path = tmp_path / "metrics.jsonl"
  files.append_text(path, '{"step": 1}\n')

  def half_then_fail(f, data):
    f.write(bytes(data)[:5].decode())
    f.flush()
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(files, "open", lambda p, mode="r", **kw: _Text(p, mode, half_then_fail),
                      raising=False)
  with pytest.raises(files.StorageError, match="no space left on device"):
    files.append_text(path, '{"step": 2, "loss": 0.5}\n')
  monkeypatch.undo()
  assert path.read_text() == '{"step": 1}\n'


class _Text(_Wrapped):
  def __init__(self, p, mode, write):
    self._f, self._write = open(p, mode, encoding="utf-8"), write

  def write(self, data):
    return self._write(self._f, data.encode())


def test_write_npz_is_atomic_and_readable(tmp_path):
  path = tmp_path / "a.npz"
  files.write_npz(path, x=np.arange(3))
  with np.load(path) as z:
    assert z["x"].tolist() == [0, 1, 2]
  assert os.listdir(tmp_path) == ["a.npz"]


# ----------------------------------------------------------------------------- gs:// paths

class _FakeGCS(MemoryFileSystem):
  """An in-memory `gs://` (fsspec's memory file system under the gcs protocol): what
  `epath` reaches through its fsspec backend when gcsfs is installed."""
  protocol = ("gs", "gcs")
  store: dict = {}
  pseudo_dirs = [""]


@pytest.fixture
def fake_gcs(monkeypatch):
  fsspec.register_implementation("gcs", _FakeGCS, clobber=True)
  fsspec.register_implementation("gs", _FakeGCS, clobber=True)
  _FakeGCS.store.clear()
  _FakeGCS.pseudo_dirs[:] = [""]
  yield "gs://bucket/run"
  _FakeGCS.store.clear()


def test_the_path_layer_reads_and_writes_a_bucket(fake_gcs):
  d = fake_gcs
  assert files.is_remote(d) and not files.is_remote("/tmp/x")
  assert files.absolute(d + "/") == d and files.join(d, "a", "b.json") == d + "/a/b.json"
  files.makedirs(d)
  files.write_json(files.join(d, "results.json"), {"a": 1})
  assert files.read_json(files.join(d, "results.json")) == {"a": 1}
  files.append_text(files.join(d, "m.jsonl"), "1\n")
  files.append_text(files.join(d, "m.jsonl"), "2\n")
  assert files.read_text(files.join(d, "m.jsonl")) == "1\n2\n"
  arrays = files.cached_npz(files.join(d, "sub", "p.npz"), lambda: {"x": np.ones(2)})
  assert arrays["x"].tolist() == [1.0, 1.0]
  files.check_same_record(files.join(d, "protocol.json"), {"k": [1, 2]})
  with pytest.raises(ConfigError, match="^k: gs://bucket/run holds results"):
    files.check_same_record(files.join(d, "protocol.json"), {"k": [1, 3]})
  assert files.listdir(d) == ["m.jsonl", "protocol.json", "results.json", "sub"]
  assert not [k for k in _FakeGCS.store if ".tmp" in k]


def test_run_outputs_write_to_a_bucket(fake_gcs, tmp_path):
  """synthetic.npz, the grids, metrics.jsonl, the report and the exports all go through the
  path layer (checkpoints go through orbax / tensorstore, which this fake cannot serve)."""
  d = fake_gcs
  sset = synthetic_io.make(np.random.default_rng(0).normal(size=(3, 2, 8, 8, 1)),
                           mean=[0.5], std=[0.25], dataset="digits", method="dm", steps=4,
                           class_names=["a", "b", "c"])
  synthetic_io.save(files.join(d, "synthetic.npz"), sset)
  back = synthetic_io.load(files.join(d, "synthetic.npz"), num_classes=3)
  np.testing.assert_array_equal(back.x, sset.x)
  assert grids.save_set_grid(files.join(d, "synthetic.png"), sset) == [d + "/synthetic.png"]
  files.write_json(files.join(d, "config.json"), {"config": {"method": "dm", "ipc": 2}})
  w = progress.JsonlWriter(files.join(d, "metrics.jsonl"))
  for step in (1, 2, 3):
    w.write({"step": step, "loss": 1.0 / step, "step_time_s": 0.1, "images_per_s": 10.0})
  progress.truncate_jsonl(files.join(d, "metrics.jsonl"), max_step=2)
  assert [r["step"] for r in progress.read_jsonl(files.join(d, "metrics.jsonl"))] == [1, 2]
  page = report.write(d, plots=False)
  assert page == d + "/report.html"
  assert "synthetic.png" in files.read_text(page)
  out = export.export(d, "dcbench", d + "/exports")
  assert out.startswith(d + "/exports/") and files.exists(out)
  export.export(d, "imagefolder", d + "/folder")
  assert files.listdir(d + "/folder") == ["00_a", "01_b", "02_c"]
