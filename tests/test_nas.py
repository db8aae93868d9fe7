"""Tests of `jaxcond.nas` (proxy ranking of ConvNet variants) on digits."""
import json
import pathlib

import numpy as np
import pytest

from jaxcond import evaluate, nas, preemption

from conftest import load_experiment, sigterm_on_call

ROOT = pathlib.Path(__file__).resolve().parents[1]


def experiment(arg):
  return load_experiment(f"nas.py:{arg}")


def tiny():
  c = experiment("runlocal")
  c.ipc = 2
  c.nas.depths, c.nas.widths = (1,), (4, 8)
  c.nas.acts, c.nas.norms, c.nas.pools = ("relu", "sigmoid"), ("instance",), ("avg",)
  c.nas.proxy_epochs, c.nas.early_epochs, c.nas.whole_epochs = 2, 1, 1
  c.nas.train_per_class, c.nas.test_per_class = 20, 10
  c.model.width = 8
  c.methods.dm.steps = 2
  c.methods.dm.batch_real = 8
  return c


def test_paper_grid_has_720_distinct_convnets():
  archs = nas.grid(*nas.PAPER_GRID.values())
  assert len(archs) == 720 == len({a.name for a in archs})
  assert experiment("cifar10").nas.depths == nas.PAPER_GRID["depth"]
  c = experiment("fashion_mnist")
  assert len(nas.settings_from_config(c).archs) >= 24


def test_correlations_match_scipy_on_known_inputs():
  stats = pytest.importorskip("scipy.stats")
  assert nas.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert nas.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  assert nas.kendall([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  # textbook example: one swapped pair among 5 -> tau = (9 - 1) / 10, rho = 1 - 6*2/120
  assert nas.kendall([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.8)
  assert nas.spearman([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.9)
  rng = np.random.default_rng(0)
  for n in (5, 24, 97):
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    x_t, y_t = np.round(x, 1), np.round(y, 0)      # ties on both sides
    for a, b in ((x, y), (x_t, y_t)):
      np.testing.assert_allclose(nas.rankdata(a), stats.rankdata(a))
      assert nas.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
      assert nas.kendall(a, b) == pytest.approx(stats.kendalltau(a, b)[0], abs=1e-12)
  assert np.isnan(nas.spearman([1, 1, 1], [1, 2, 3]))


def test_rank_report_picks_and_top_fraction():
  names = [f"a{i}" for i in range(6)]
  whole = [50, 60, 70, 80, 90, 40]
  proxy = [1, 2, 3, 9, 4, 0]
  r = nas.rank_report(proxy, whole, names, top_fraction=0.05)
  assert r["picked"] == "a3" and r["picked_whole_accuracy"] == 80 and r["picked_whole_rank"] == 2
  assert r["best_whole"] == "a4" and r["top_k"] == 3
  # top 3 by whole accuracy: a4 (90), a3 (80), a2 (70); proxy 4, 9, 3 -> rho 0.5
  assert r["spearman_top"] == pytest.approx(0.5)


@pytest.mark.slow
def test_interrupted_search_resumes_without_retraining(tmp_path, monkeypatch):
  c = tiny()
  real = evaluate.train_and_test
  calls = []

  def counting(*a, **k):
    calls.append(1)
    if stop_after[0] is not None and len(calls) > stop_after[0]:
      raise KeyboardInterrupt
    return real(*a, **k)

  stop_after = [5]           # 4 runs per arch (dm, random, early, whole): dies in arch 2
  monkeypatch.setattr(evaluate, "train_and_test", counting)
  with pytest.raises(KeyboardInterrupt):
    nas.run(c, str(tmp_path), log=None)
  done = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "archs").rglob("*.json"))
  assert len(done) == 5
  calls.clear()
  stop_after[0] = None
  res = nas.run(c, str(tmp_path), log=None)
  assert len(calls) == 4 * 4 - 5          # only what was not finished
  assert res["trained_this_run"] == 11
  assert set(res["spearman"]) == {"dm", "random", "early"}
  assert len(res["architectures"]) == 4
  assert all(set(v) == {"dm", "random", "early", "whole"}
             for v in res["architectures"].values())
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["spearman"] == res["spearman"]
  with np.load(tmp_path / "proxies" / "dm.npz") as f:
    assert f["x"].shape == (20, 8, 8, 1)
  with np.load(tmp_path / "proxies" / "random.npz") as f:
    assert f["x"].shape == (20, 8, 8, 1) and sorted(set(f["y"].tolist())) == list(range(10))
  calls.clear()
  again = nas.run(c, str(tmp_path), log=None)
  assert calls == [] and again["spearman"] == res["spearman"]


def test_cli_errors_are_one_line(tmp_path, capsys):
  rc = nas.main(["prog", "--config", str(ROOT / "experiments" / "nas.py:runlocal"),
                 "--workdir", str(tmp_path), "--config.nas.proxies=('dm','bogus')"])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and "nas.proxies" in err


@pytest.mark.slow
def test_sigterm_stops_between_result_files_and_a_rerun_gives_the_same_results(
    tmp_path, monkeypatch):
  c = tiny()
  ref = nas.run(c, str(tmp_path / "ref"), log=None)
  # during the third (architecture, proxy) run
  sigterm_on_call(monkeypatch, evaluate, "train_and_test", 3)
  work = tmp_path / "w"
  with pytest.raises(preemption.PreemptedError, match=r"^preempted before training \S+ on "
                     r"whole: every finished result is in .*; re-run the same command"):
    nas.run(c, str(work), log=None)
  assert len(list((work / "archs").rglob("*.json"))) == 3     # the third one finished
  assert not (work / "lock.json").exists() and not (work / "results.json").exists()
  monkeypatch.undo()
  again = nas.run(c, str(work), log=None)
  skip = ("wall_seconds_this_run", "trained_this_run", "cost_seconds", "train_seconds",
          "whole_seconds", "proxy_make_seconds", "config")
  assert {k: v for k, v in again.items() if k not in skip} == \
      {k: v for k, v in ref.items() if k not in skip}
  assert again["trained_this_run"] == ref["trained_this_run"] - 3
