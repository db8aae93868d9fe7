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


def test_condense_logs_what_metrics_jsonl_holds(tmp_path):
  """`--config.tensorboard=True`: every metrics.jsonl and eval.jsonl value as a scalar at
  its step, and the grid written at each checkpoint as an image."""
  from conftest import load_experiment
  from jaxcond import condense, configs, progress
  c = load_experiment("quickstart.py:method=ddm,ipc=2")
  for k, v in {"steps": 4, "checkpoint_every": 2, "log_every": 1, "batch_real": 8,
               "model.width": 8, "eval.num_nets": 1, "eval.epochs": 2, "eval.every": 2,
               "quiet": True, "tensorboard": True}.items():
    configs.set_field(c, k, v, source="test")
  condense.run(c, str(tmp_path))
  ea = read(tmp_path / "tensorboard")
  metrics = progress.read_jsonl(tmp_path / "metrics.jsonl")
  for key in ("loss", "loss/dm", "loss/mm", "loss/icd", "step_time_s", "images_per_s"):
    logged = {e.step: e.value for e in ea.Scalars(key)}
    assert logged == pytest.approx({m["step"]: m[key] for m in metrics}, rel=1e-6), key
  evals = progress.read_jsonl(tmp_path / "eval.jsonl")
  assert {e.step: e.value for e in ea.Scalars("eval/accuracy")} == \
      pytest.approx({r["step"]: r["mean"] for r in evals})
  assert [i.step for i in ea.Images("synthetic")] == [0, 2, 4]


def test_condense_refuses_tensorboard_without_the_writer(tmp_path, monkeypatch):
  from conftest import load_experiment
  from jaxcond import condense, configs
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  c = load_experiment("quickstart.py")
  configs.set_field(c, "tensorboard", True, source="test")
  with pytest.raises(ConfigError, match="^tensorboard: the writer is not installed"):
    condense.run(c, str(tmp_path))
  assert not (tmp_path / "tensorboard").exists()


@pytest.mark.slow
def test_pool_continual_and_nas_log_their_results(tmp_path):
  """The other programs with `tensorboard=True`: the pool's log lines (metrics.jsonl), each
  continual-learning result against the classes seen, each NAS architecture's accuracies."""
  from jaxcond import continual, nas, pool, progress
  import test_continual
  import test_nas
  import test_pool
  c = test_pool.config(**{**test_pool.TINY_POOL, "pool.size": 2, "pool.epochs": 1,
                          "log_every": 5, "tensorboard": True})
  pool.run(c, str(tmp_path / "pool"))
  ea = read(tmp_path / "pool" / "tensorboard")
  metrics = progress.read_jsonl(tmp_path / "pool" / "metrics.jsonl")
  assert [e.step for e in ea.Scalars("train_accuracy")] == [m["step"] for m in metrics]
  assert [e.value for e in ea.Scalars("loss")] == pytest.approx([m["loss"] for m in metrics])

  c = test_continual.tiny(memories=("random",))
  c.tensorboard = True
  res = continual.run(c, str(tmp_path / "cl"), log=None)
  ea = read(tmp_path / "cl" / "tensorboard")
  got = ea.Scalars("accuracy/random/order0")
  assert [e.step for e in got] == res["classes_seen"]
  assert [e.value for e in got] == pytest.approx(res["accuracy"]["random"])

  c = test_nas.tiny()
  c.nas.proxies = ("random",)
  c.tensorboard = True
  res = nas.run(c, str(tmp_path / "nas"), log=None)
  ea = read(tmp_path / "nas" / "tensorboard")
  names = list(res["architectures"])
  assert [e.value for e in ea.Scalars("accuracy/whole")] == \
      pytest.approx([res["architectures"][n]["whole"] for n in names])
  assert ea.Scalars("rank_correlation/spearman/random")[0].value == \
      pytest.approx(res["spearman"]["random"])
