"""End-to-end tests of `jaxcond.condense` on scikit-learn digits (tiny nets, few steps)."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxcond import checkpoint, condense, configs, grids, progress, steps
from jaxcond.errors import ConfigError

from conftest import load_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]


def quickstart(arg=""):
  return load_experiment(f"quickstart.py:{arg}")


TINY = {"steps": 6, "checkpoint_every": 3, "log_every": 2, "batch_real": 8, "ipc": 2,
        "model.width": 8, "eval.num_nets": 0, "quiet": True}


def tiny_config(method="dm", **overrides):
  c = quickstart(f"method={method}")
  for key, value in {**TINY, **overrides}.items():
    configs.set_field(c, key, value, source="test")
  return c


def tiny_cli_args(workdir, method="dm", **overrides):
  args = [sys.executable, "-m", "jaxcond.condense",
          "--config", f"experiments/quickstart.py:method={method}", "--workdir", str(workdir)]
  for key, value in {**TINY, **overrides}.items():
    args.append(f"--config.{key}={value}")
  return args


def subprocess_env(num_devices=1, **extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_NUM_CPU_DEVICES"] = str(num_devices)
  env["JAX_PLATFORMS"] = "cpu"
  env.update(extra)
  return env


# --------------------------------------------------------------------------- outputs

@pytest.mark.slow
def test_outputs_dm(tmp_path):
  out = condense.run(tiny_config("dm"), str(tmp_path))
  assert out["step"] == 6 and np.isfinite(out["loss"]) and out["num_devices"] == 8

  cfg = json.loads((tmp_path / "config.json").read_text())
  assert cfg["config"]["method"] == "dm" and cfg["config"]["ipc"] == 2
  assert {"jax", "jaxcond", "orbax"} <= set(cfg["versions"]) and len(cfg["devices"]) == 8

  metrics = progress.read_jsonl(tmp_path / "metrics.jsonl")
  assert [m["step"] for m in metrics] == [2, 4, 6]
  for m in metrics:
    assert {"loss", "loss/dm", "step_time_s", "images_per_s"} <= set(m)
    assert m["loss"] == pytest.approx(m["loss/dm"]) and m["images_per_s"] > 0

  with np.load(tmp_path / "synthetic.npz") as z:
    assert z["x"].dtype == np.float32 and z["x"].shape == (20, 8, 8, 1)
    assert z["y"].dtype == np.int32 and z["y"].tolist() == sorted(list(range(10)) * 2)
    np.testing.assert_allclose(z["mean"], [0.3052], atol=1e-6)
    assert z["std"].shape == (1,) and int(z["factor"]) == 1
    assert str(z["space"]) == "normalized" and str(z["method"]) == "dm"
    assert str(z["dataset"]) == "digits" and "x_decoded" not in z.files
    x = z["x"]

  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.all_steps() == [3, 6]
  meta = ckpt.restore_meta(6)
  assert meta["step"] == 6 and meta["config_hash"] == configs.config_hash(tiny_config("dm"))
  ckpt.close()
  grid = Image.open(tmp_path / "synthetic.png")
  assert grid.size[1] >= 10 * 64                       # one row per class, 8px cells -> 64px
  assert (tmp_path / "report.html").exists()           # the run report (jaxcond.report)
  assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
      "init.png", "step_0000003.png", "step_0000006.png"]

  # Re-running a finished run resumes at the end: nothing changes.
  again = condense.run(tiny_config("dm"), str(tmp_path))
  assert again["step"] == 6
  with np.load(tmp_path / "synthetic.npz") as z:
    np.testing.assert_array_equal(z["x"], x)


def test_outputs_m3d_decoded(tmp_path):
  c = tiny_config("m3d", steps=2, checkpoint_every=0, log_every=1)
  condense.run(c, str(tmp_path))
  with np.load(tmp_path / "synthetic.npz") as z:
    assert int(z["factor"]) == 2 and str(z["space"]) == "unit"
    assert z["x"].shape == (20, 8, 8, 1) and z["x_decoded"].shape == (80, 8, 8, 1)
    assert z["y_decoded"].tolist() == sorted(list(range(10)) * 8)
    pixels = z["x"] * z["std"] + z["mean"]                   # stored set, clipped to [0, 1]
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
  metrics = progress.read_jsonl(tmp_path / "metrics.jsonl")
  assert [m["step"] for m in metrics] == [1, 2] and "loss/mmd" in metrics[0]


@pytest.mark.slow
def test_streaming_path(tmp_path):
  """dataset.streaming reads batches through jaxcond.data.ClassStream; resume is exact."""
  c = tiny_config("dm", steps=4, checkpoint_every=2, **{"dataset.streaming": True})
  condense.run(c, str(tmp_path / "a"))
  condense.run(tiny_config("dm", steps=2, checkpoint_every=2, **{"dataset.streaming": True}),
               str(tmp_path / "b"))
  condense.run(c, str(tmp_path / "b"))
  x = _x(tmp_path / "a/synthetic.npz")
  np.testing.assert_array_equal(x, _x(tmp_path / "b/synthetic.npz"))
  assert np.isfinite(x).all()
  assert [m["step"] for m in progress.read_jsonl(tmp_path / "a/metrics.jsonl")] == [2, 4]


def test_report_helpers(tmp_path):
  imgs = np.random.default_rng(0).uniform(size=(3, 4, 5, 6, 3)).astype(np.float32)
  grid = grids.grid_image(imgs, upscale=1)
  assert grid.shape == (3 * 6 + 1, 4 * 7 + 1, 3) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[1:6, 1:7], np.round(imgs[0, 0] * 255).astype(np.uint8))
  assert grids.grid_image(imgs, max_classes=2, max_per_class=1, upscale=1).shape == (13, 8, 3)
  x = grids.denormalize(np.full((1, 2, 2, 1), 10.0), [0.5], [0.2])
  assert x.max() == 1.0
  line = progress.progress_line(200, 20000, 0.1234, 812.0, 190.0, {"dm": 0.1, "mm": 0.02})
  assert line.startswith("step   200/20000  loss 1.2340e-01 (dm") and "ETA 3m10s" in line
  path = tmp_path / "m.jsonl"
  w = progress.JsonlWriter(path)
  for step in (1, 2, 3):
    w.write({"step": step, "loss": float("nan") if step == 2 else 1.0})
  progress.truncate_jsonl(path, max_step=2)
  assert [r["step"] for r in progress.read_jsonl(path)] == [1, 2]


EVAL = {"eval.num_nets": 1, "eval.epochs": 2, "eval.model": "convnetd1"}


@pytest.mark.slow
def test_final_evaluation(tmp_path):
  out = condense.run(tiny_config("dm", steps=2, checkpoint_every=0, **EVAL), str(tmp_path))
  (record,) = progress.read_jsonl(tmp_path / "eval.jsonl")
  assert record["step"] == 2 and record["protocol"] == "dm" and record["num_nets"] == 1
  assert 0.0 <= record["mean"] <= 100.0 and out["eval"] == record


@pytest.mark.slow
def test_holdout_condenses_without_the_validation_images(tmp_path, monkeypatch):
  """dataset.holdout: the bank never holds the held-out images; the evaluation uses them."""
  from jaxcond import data, evaluate
  seen = {}
  real_bank, real_pool = data.build_bank, evaluate.evaluate_pool

  def bank_spy(images, labels, *a, **kw):
    seen["train"] = np.asarray(labels)
    return real_bank(images, labels, *a, **kw)

  def pool_spy(x_train, y_train, x_test, y_test, **kw):
    seen["test"] = np.asarray(y_test)
    return real_pool(x_train, y_train, x_test, y_test, **kw)
  monkeypatch.setattr(data, "build_bank", bank_spy)
  monkeypatch.setattr(evaluate.pool, "evaluate_pool", pool_spy)
  c = tiny_config("dm", steps=2, checkpoint_every=0, **EVAL, **{"dataset.holdout": 20})
  condense.run(c, str(tmp_path))
  _, y_all = data.load_split("digits", "train")
  assert np.array_equal(np.bincount(seen["train"]) + 20, np.bincount(y_all))
  assert np.bincount(seen["test"]).tolist() == [20] * 10
  (record,) = progress.read_jsonl(tmp_path / "eval.jsonl")
  assert record["measured_on"] == "train holdout (20/class)"


@pytest.mark.slow
def test_in_loop_evaluation(tmp_path):
  c = tiny_config("m3d", steps=4, checkpoint_every=0, **EVAL, **{"eval.every": 2})
  out = condense.run(c, str(tmp_path))
  records = progress.read_jsonl(tmp_path / "eval.jsonl")
  assert [r["step"] for r in records] == [2, 4] and out["eval"]["step"] == 4
  assert all(r["protocol"] == "idc" and r["decoded"] for r in records)


# --------------------------------------------------------------------------- validation

def _no_compile(monkeypatch):
  def fail(*a, **k):
    raise AssertionError("the step was built although the config is invalid")
  monkeypatch.setattr(steps, "make_bank_step", fail)


def _no_bank(monkeypatch):
  from jaxcond import data

  def fail(*a, **k):
    raise AssertionError("the class bank was built although the config is invalid")
  monkeypatch.setattr(data, "build_bank", fail)


@pytest.mark.parametrize("overrides,field,static", [
    ({"ipc": 500}, "ipc", False),           # digits classes have ~144 training images
    ({"batch_real": 400}, "batch_real", False),
    ({"ipc": -2}, "ipc", True),
    ({"synthetic.factor": 9}, "synthetic.factor", True),
])
def test_invalid_config_fails_before_compiling(tmp_path, monkeypatch, overrides, field,
                                               static):
  """Static errors stop before anything compiles. Errors that need the class counts stop
  after the data is read but before the bank is built or the run's step compiled; only the
  memory plan (a shape-only compile, jaxcond.plan) precedes them, so that a config that
  cannot fit its devices fails before hours of data loading."""
  if static:
    _no_compile(monkeypatch)
  _no_bank(monkeypatch)
  with pytest.raises(ConfigError) as err:
    condense.run(tiny_config("dm", **overrides), str(tmp_path))
  assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_cli_ipc_override_warns_about_stale_ipc_defaults(tmp_path, capsys):
  """--config.ipc=1 after an arg built for ipc 10 keeps M3D's ipc-10 lr: say so in one line.
  (`--config.steps=-1` stops each run at validation, after the flags are read; in-process,
  the same `main` as `python -m jaxcond.condense`.)"""

  def stderr(config, *extra):
    rc = condense.main(["condense", "--config", config, "--workdir", str(tmp_path / "w"),
                        "--config.steps=-1", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "error: steps" in err, err[-2000:]
    return [l for l in err.splitlines() if l.startswith("warning:")]
  (line,) = stderr("experiments/fashion_mnist.py:method=m3d", "--config.ipc=1")
  assert "synthetic.lr stays 10.0 (default there: 1.0)" in line, line
  assert "experiments/fashion_mnist.py:...,ipc=1" in line
  # An explicit lr, or the ipc in the arg, leaves nothing stale: no warning.
  assert stderr("experiments/fashion_mnist.py:method=m3d", "--config.ipc=1",
                "--config.synthetic.lr=3") == []
  assert stderr("experiments/fashion_mnist.py:method=m3d,ipc=1") == []


def test_cli_errors_are_one_line(tmp_path, capsys):
  cases = [
      (["--config.model.widht=8"], "model.widht"),
      (["--config.ipc=-1"], "ipc"),
  ]
  for extra, field in cases:
    args = ["condense", "--config", "experiments/quickstart.py", "--workdir",
            str(tmp_path / "w"), *extra]
    rc = condense.main(args)
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), err[-2000:]
    assert "Traceback" not in err
  rc = condense.main(["condense", "--config", "experiments/quickstart.py:method=dn",
                      "--workdir", str(tmp_path / "w")])
  err = capsys.readouterr().err
  assert rc == 2 and "error: method" in err and "Traceback" not in err


def test_cli_runs_as_a_module(tmp_path):
  """`python -m jaxcond.condense` is wired to `main` (one subprocess; the rest in-process)."""
  p = subprocess.run([sys.executable, "-m", "jaxcond.condense", "--config",
                      "experiments/quickstart.py", "--workdir", str(tmp_path / "w"),
                      "--config.ipc=-1"], cwd=ROOT, env=subprocess_env(),
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 2 and p.stderr.strip().startswith("error: ipc"), p.stderr[-2000:]
  assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_resume_with_another_config_is_refused(tmp_path):
  condense.run(tiny_config("dm", steps=3), str(tmp_path))
  with pytest.raises(ConfigError, match="^seed: .*checkpoint"):
    condense.run(tiny_config("dm", seed=5), str(tmp_path))


# --------------------------------------------------------------------------- numerics

@pytest.mark.slow
def test_dm_loss_decreases_on_digits(tmp_path):
  c = tiny_config("dm", steps=40, log_every=10, checkpoint_every=0, ipc=5, batch_real=32,
                  **{"synthetic.init": "noise", "model.width": 32})
  condense.run(c, str(tmp_path))
  losses = [m["loss"] for m in progress.read_jsonl(tmp_path / "metrics.jsonl")]
  assert len(losses) == 4 and losses[-1] < 0.7 * losses[0], losses


def _nan_after(step_limit):
  real = steps.make_bank_step

  def patched(*args, **kwargs):
    fn = real(*args, **kwargs)

    def wrapped(state, bank, step):
      state, m = fn(state, bank, step)
      m = dict(m, loss=jnp.where(step >= step_limit, jnp.nan, m["loss"]))
      return state, m
    return wrapped
  return patched


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(steps, "make_bank_step", _nan_after(4))
  c = tiny_config("dm", steps=9, checkpoint_every=3, log_every=1)
  with pytest.raises(condense.DivergedError) as err:
    condense.run(c, str(tmp_path))
  msg = str(err.value)
  assert msg.startswith("step 4: loss is nan") and "step 3" in msg and "\n" not in msg
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.all_steps() == [3]
  ckpt.close()
  assert not (tmp_path / "synthetic.npz").exists()


@pytest.mark.slow
def test_huge_lr_diverges(tmp_path):
  c = tiny_config("dm", steps=6, log_every=3, **{"synthetic.lr": 1e38})
  with pytest.raises(condense.DivergedError, match="synthetic.lr"):
    condense.run(c, str(tmp_path))


# --------------------------------------------------------------------------- resume

def _x(path):
  with np.load(path) as z:
    return z["x"]


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path):
  condense.run(tiny_config("ddm", steps=6, checkpoint_every=2, ipc=3), str(tmp_path / "a"))
  condense.run(tiny_config("ddm", steps=4, checkpoint_every=2, ipc=3), str(tmp_path / "b"))
  out = condense.run(tiny_config("ddm", steps=6, checkpoint_every=2, ipc=3), str(tmp_path / "b"))
  assert out["step"] == 6
  np.testing.assert_array_equal(_x(tmp_path / "a/synthetic.npz"), _x(tmp_path / "b/synthetic.npz"))
  steps_logged = [m["step"] for m in progress.read_jsonl(tmp_path / "b/metrics.jsonl")]
  assert steps_logged == [2, 4, 6]


@pytest.mark.slow
def test_resume_on_another_device_count(tmp_path):
  condense.run(tiny_config("m3d", steps=2, num_devices=8, checkpoint_every=2, log_every=1),
               str(tmp_path / "a"))
  condense.run(tiny_config("m3d", steps=4, num_devices=3, checkpoint_every=2, log_every=1),
               str(tmp_path / "a"))               # 16 padded classes restored onto 12
  condense.run(tiny_config("m3d", steps=4, num_devices=1, checkpoint_every=2, log_every=1),
               str(tmp_path / "b"))
  np.testing.assert_allclose(_x(tmp_path / "a/synthetic.npz"), _x(tmp_path / "b/synthetic.npz"),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
  env = subprocess_env(num_devices=2)
  over = {"steps": 30, "checkpoint_every": 4, "log_every": 1}
  ref = subprocess.run(tiny_cli_args(tmp_path / "ref", **over), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert ref.returncode == 0, ref.stderr[-3000:]

  work = tmp_path / "killed"
  proc = subprocess.Popen(tiny_cli_args(work, **over), cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckdir = work / "checkpoints"
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    done = [p for p in ckdir.glob("*") if p.name.isdigit()] if ckdir.exists() else []
    if any(int(p.name) >= 8 for p in done):
      break
    time.sleep(0.05)
  if proc.poll() is not None:
    pytest.fail("the run finished before it could be killed")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (work / "synthetic.npz").exists()

  again = subprocess.run(tiny_cli_args(work, **over), cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resuming from" in again.stdout + again.stderr
  np.testing.assert_array_equal(_x(ref_path := tmp_path / "ref/synthetic.npz"),
                                _x(work / "synthetic.npz"))
  assert ref_path.exists()


# --------------------------------------------------------------------------- multi-process

def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", "m3d"])
def test_two_processes_equal_one(tmp_path, method):
  over = {"steps": 4, "checkpoint_every": 2, "log_every": 1}
  single = subprocess.run(tiny_cli_args(tmp_path / "single", method, **over), cwd=ROOT,
                          env=subprocess_env(num_devices=4), capture_output=True, text=True,
                          timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]

  port = _free_port()
  procs = []
  for pid in range(2):
    args = tiny_cli_args(tmp_path / "multi", method, **over) + [
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}"]
    procs.append(subprocess.Popen(args, cwd=ROOT, env=subprocess_env(num_devices=2),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  try:
    outs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  cfg = json.loads((tmp_path / "multi/config.json").read_text())
  assert cfg["process_count"] == 2 and len(cfg["devices"]) == 4
  np.testing.assert_allclose(_x(tmp_path / "single/synthetic.npz"),
                             _x(tmp_path / "multi/synthetic.npz"), rtol=1e-5, atol=1e-6)
