"""Tests of `jaxcond.continual` (class-incremental learning, GDumb retraining) on digits."""
import json
import pathlib

import numpy as np
import pytest

from jaxcond import condense, continual, evaluate, preemption, synthetic_io
from jaxcond.data import registry

from conftest import load_experiment, sigterm_on_call

ROOT = pathlib.Path(__file__).resolve().parents[1]


def experiment(arg):
  return load_experiment(f"continual.py:{arg}")


def tiny(num_steps=2, memories=("dm", "random"), orders=(0,)):
  c = experiment("runlocal")
  c.ipc = 2
  c.continual.num_steps = num_steps
  c.continual.memories = memories
  c.continual.orders = orders
  c.model.width = 8
  c.eval.epochs = 2
  for m in c.methods:
    c.methods[m].steps = 2
    c.methods[m].batch_real = 8
  return c


def test_class_orders_are_seeded_permutations_split_into_steps():
  a, b = continual.class_order(0, 10), continual.class_order(0, 10)
  np.testing.assert_array_equal(a, b)
  assert sorted(a.tolist()) == list(range(10))
  assert not np.array_equal(a, continual.class_order(1, 10))
  groups = continual.split_classes(a, 5)
  assert [len(g) for g in groups] == [2] * 5
  np.testing.assert_array_equal(np.concatenate(groups), a)
  assert [len(g) for g in continual.split_classes(continual.class_order(3, 100), 10)] == \
      [10] * 10
  assert [len(g) for g in continual.split_classes(np.arange(7), 3)] == [3, 2, 2]
  with pytest.raises(Exception, match="num_steps"):
    continual.split_classes(np.arange(4), 5)


def test_memory_grows_by_each_step_and_gdumb_trains_on_the_union(monkeypatch):
  seen = {}

  def fake_eval(x, y, xt, yt, **kwargs):
    seen.update(x=x, y=y, xt=xt, yt=yt, num_classes=kwargs["num_classes"])
    return {"mean": 50.0, "std": 0.0, "accuracies": [50.0], "wall_seconds": 0.0}

  monkeypatch.setattr(evaluate, "evaluate_arrays", fake_eval)
  mem = continual.Memory()
  x_test = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1)
  y_test = np.repeat(np.arange(6), 2).astype(np.int32)
  sizes = []
  for step, classes in enumerate([(4, 1), (0, 5)]):
    x = np.full((4, 1, 1, 1), step, np.float32)
    y = np.repeat(np.asarray(classes, np.int32), 2)
    mem.add(x, y)
    res = continual.gdumb_eval(mem, x_test, y_test, settings=None, num_classes=6, seed=0)
    sizes.append(len(seen["y"]))
    assert set(seen["yt"].tolist()) == set(mem.classes.tolist())
  assert sizes == [4, 8]
  np.testing.assert_array_equal(seen["y"], [4, 4, 1, 1, 0, 0, 5, 5])
  np.testing.assert_array_equal(seen["x"][:, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1])
  assert sorted(seen["yt"].tolist()) == [0, 0, 1, 1, 4, 4, 5, 5]
  assert seen["num_classes"] == 6 and res["classes"] == [0, 1, 4, 5]


@pytest.mark.slow
def test_condensed_and_selected_memories_hold_only_the_new_classes():
  from jaxcond import data
  c = tiny()
  info = registry.get_info("digits")
  x, y = data.load_split("digits", "train")
  y = y.astype(np.int64)
  cfg = condense.classes_config(c, "dm")
  cfg.steps = 0       # the memory is then its real initialisation: checkable images
  mem, meta = condense.condense_classes(cfg, info, x, y, [7, 3], seed=0)
  assert mem.shape == (4, 8, 8, 1) and meta["steps"] == 0
  xn = synthetic_io.normalize_uint8(x, info.mean, info.std)
  for i, c_id in enumerate([7, 7, 3, 3]):
    d = np.abs(xn[y == c_id] - mem[i]).reshape(int((y == c_id).sum()), -1).max(1)
    assert d.min() < 1e-4, (i, c_id)
  cfg.steps = 2
  mem2, _ = condense.condense_classes(cfg, info, x, y, [7, 3], seed=0)
  assert np.all(np.isfinite(mem2)) and not np.allclose(mem, mem2)
  import jax
  for method in ("random", "herding"):
    idx = continual.select_classes(method, xn, y, [7, 3], 3, key=jax.random.key(0),
                                   num_classes=10, feature_net="convnetd2")
    assert y[idx].tolist() == [7, 7, 7, 3, 3, 3]
    assert len(set(idx.tolist())) == 6


@pytest.mark.slow
def test_end_to_end_writes_results_and_resumes_without_recomputing(tmp_path, monkeypatch):
  c = tiny()
  res = continual.run(c, str(tmp_path), log=None)
  assert set(res["accuracy"]) == {"dm", "random"}
  assert all(len(v) == 2 for v in res["accuracy"].values())
  assert res["classes_seen"] == [5, 10]
  assert res["accuracy_per_order"]["dm"]["0"] == res["accuracy"]["dm"]
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["accuracy"] == res["accuracy"]
  assert (tmp_path / "accuracy.png").stat().st_size > 1000
  assert "| dm |" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "order0" / "step1" / "dm.npz").exists()

  def boom(*a, **k):
    raise AssertionError("recomputed a step that is on disk")

  monkeypatch.setattr(condense, "condense_classes", boom)
  monkeypatch.setattr(continual, "gdumb_eval", boom)
  again = continual.run(c, str(tmp_path), log=None)
  assert again["accuracy"] == res["accuracy"]


def test_cli_errors_are_one_line(tmp_path, capsys):
  rc = continual.main(["prog", "--config", str(ROOT / "experiments" / "continual.py:nope"),
                       "--workdir", str(tmp_path)])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and "setting" in err
  rc = continual.main(["prog", "--config", str(ROOT / "experiments" / "continual.py:runlocal"),
                       "--workdir", str(tmp_path), "--config.continual.num_steps=11"])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and "num_steps" in err


_TIMINGS = ("wall_seconds_this_run", "eval_seconds_this_run", "memory_seconds", "config")


def _same_results(a: dict, b: dict) -> dict:
  return {k: v for k, v in a.items() if k not in _TIMINGS}, \
      {k: v for k, v in b.items() if k not in _TIMINGS}


@pytest.mark.slow
def test_sigterm_stops_between_result_files_and_a_rerun_gives_the_same_results(
    tmp_path, monkeypatch):
  """SIGTERM while the second (step, memory) is being computed: it finishes and writes its
  files, the run stops before the next one (status 3 on the command line), and re-running
  gives the results.json of an uninterrupted run."""
  c = tiny()
  ref = continual.run(c, str(tmp_path / "ref"), log=None)
  sigterm_on_call(monkeypatch, continual, "gdumb_eval", 2)
  work = tmp_path / "w"
  with pytest.raises(preemption.PreemptedError) as err:
    continual.run(c, str(work), log=None)
  assert str(err.value) == (f"preempted before order 0 step 1/2 random: every finished result "
                            f"is in {work}; re-run the same command to resume")
  done = sorted(p.relative_to(work).as_posix() for p in work.rglob("order*/step*/*.*"))
  assert done == ["order0/step0/dm.json", "order0/step0/dm.npz", "order0/step1/dm.json",
                  "order0/step1/dm.npz"]
  assert not list(work.glob("lock*.json")) and not (work / "results.json").exists()
  monkeypatch.undo()
  again = continual.run(c, str(work), log=None)
  a, b = _same_results(again, ref)
  assert a == b
