"""jaxcond.tblog: TensorBoard event files, read back with TensorBoard's own reader."""
import sys

import numpy as np
import pytest

from jaxcond import tblog
from jaxcond.errors import ConfigError

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def read(logdir):
  ea = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0,
                                                                      "images": 0})
  ea.Reload()
  return ea


def test_scalars_and_images_round_trip(tmp_path):
  w = tblog.for_workdir(tmp_path, True)
  assert w.enabled and w.logdir == str(tmp_path / "tensorboard")
  for step in (10, 20, 30):
    w.scalars(step, {"loss": 1.0 / step, "loss/dm": 2.0 / step, "steps_in_interval": 10,
                     "name": "dm", "nan": float("nan"), "finite": True})
  w.scalars(20, {"accuracy": 55.5}, prefix="eval/")
  w.image("synthetic", 30, np.full((6, 8, 3), 200, np.uint8))
  w.close()
  ea = read(tmp_path / "tensorboard")
  assert sorted(ea.Tags()["scalars"]) == ["eval/accuracy", "loss", "loss/dm",
                                          "steps_in_interval"]
  assert [e.step for e in ea.Scalars("loss")] == [10, 20, 30]
  np.testing.assert_allclose([e.value for e in ea.Scalars("loss/dm")], [0.2, 0.1, 2 / 30],
                             rtol=1e-6)
  assert [(e.step, e.value) for e in ea.Scalars("eval/accuracy")] == [(20, 55.5)]
  img = ea.Images("synthetic")
  assert [(i.step, i.width, i.height) for i in img] == [(30, 8, 6)]


def test_png_is_read_back_from_disk(tmp_path):
  from PIL import Image
  path = tmp_path / "grid.png"
  Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(path)
  w = tblog.Writer(tmp_path / "tb")
  w.png("grid", 3, path)
  w.close()
  assert [(i.step, i.width, i.height) for i in read(tmp_path / "tb").Images("grid")] == \
      [(3, 7, 5)]


def test_disabled_writer_writes_nothing(tmp_path):
  for w in (tblog.for_workdir(tmp_path, False), tblog.for_workdir(tmp_path, True,
                                                                   is_main=False)):
    assert not w.enabled
    w.scalars(1, {"loss": 1.0})
    w.image("x", 1, np.zeros((2, 2, 3), np.uint8))
    w.close()
  assert not (tmp_path / "tensorboard").exists()


def test_missing_writer_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  with pytest.raises(ConfigError, match=r"^tensorboard: the writer is not installed; pip "):
    tblog.for_workdir(tmp_path, True)
