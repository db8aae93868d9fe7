"""End-to-end tests of `jaxcond.condense` on scikit-learn digits (tiny nets, few steps)."""
import errno
import io
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxcond import checkpoint, condense, configs, files, grids, preemption, progress, steps
from jaxcond.errors import ConfigError

from conftest import communicate, load_experiment, start_processes, subprocess_env

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


def nan_after(step_limit):
  """`steps.make_bank_step` whose loss is NaN from `step_limit` on (test_condense_inputs
  uses it too)."""
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
  monkeypatch.setattr(steps, "make_bank_step", nan_after(4))
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

@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", "m3d"])
def test_two_processes_equal_one(tmp_path, method):
  over = {"steps": 4, "checkpoint_every": 2, "log_every": 1}
  single = subprocess.run(tiny_cli_args(tmp_path / "single", method, **over), cwd=ROOT,
                          env=subprocess_env(num_devices=4), capture_output=True, text=True,
                          timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]

  procs = _two_processes(tmp_path, [tmp_path / "multi"] * 2, over, method)
  for p, (out, err) in zip(procs, communicate(procs)):
    assert p.returncode == 0, (out + err)[-3000:]
  cfg = json.loads((tmp_path / "multi/config.json").read_text())
  assert cfg["process_count"] == 2 and len(cfg["devices"]) == 4
  np.testing.assert_allclose(_x(tmp_path / "single/synthetic.npz"),
                             _x(tmp_path / "multi/synthetic.npz"), rtol=1e-5, atol=1e-6)


def _two_processes(tmp_path, workdirs, over, method="dm"):
  """The 2-process CPU harness (2 fake devices each) on `workdirs`; the Popen objects."""
  return start_processes([tiny_cli_args(work, method, **over) for work in workdirs])


@pytest.mark.slow
def test_two_processes_stop_at_the_same_step_on_sigterm(tmp_path):
  """SIGTERM to one process of two: JAX's preemption sync point makes both stop after the
  same step, with one checkpoint of that step written by both and exit status 3."""
  work = tmp_path / "multi"
  procs = _two_processes(tmp_path, [work, work], {"steps": 2000, "checkpoint_every": 0,
                                                  "log_every": 1})
  deadline = time.time() + 600
  metrics = work / "metrics.jsonl"
  while time.time() < deadline and all(p.poll() is None for p in procs):
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    time.sleep(0.05)
  assert all(p.poll() is None for p in procs), "a process ended before it was signalled"
  procs[1].send_signal(signal.SIGTERM)
  outs = communicate(procs)
  stopped = []
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 3, (out + err)[-3000:]
    (line,) = [l for l in err.splitlines() if l.startswith("preempted at step")]
    assert "checkpoint written to" in line and "re-run the same command" in line, line
    stopped.append(int(line.split()[3].rstrip(":")))
  assert stopped[0] == stopped[1] and 3 <= stopped[0] < 2000, stopped
  ckpt = checkpoint.Checkpointer(work / "checkpoints")
  assert ckpt.all_steps() == [stopped[0]]
  ckpt.close()
  assert progress.read_jsonl(metrics)[-1]["step"] == stopped[0]
  assert not (work / "lock.json").exists()


@pytest.mark.slow
def test_two_processes_refuse_a_workdir_they_do_not_share(tmp_path):
  """Two processes given two different local folders stop before any work (status 2)."""
  procs = _two_processes(tmp_path, [tmp_path / "a", tmp_path / "b"],
                         {"steps": 4, "checkpoint_every": 2, "log_every": 1})
  outs = communicate(procs)
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 2, (out + err)[-3000:]
    (line,) = [l for l in err.splitlines() if l.startswith("error:")]
    assert "is not shared by all processes: process(es) 1" in line, line
    assert "Traceback" not in err
  for d in ("a", "b"):
    assert not (tmp_path / d / "checkpoints").exists()
    assert not (tmp_path / d / "metrics.jsonl").exists()


# --------------------------------------------------------------------------- damaged checkpoints

def _data_files(ckpt):
  """The array data files of a checkpoint (orbax's OCDBT `d/` folders)."""
  return [p for p in (ckpt / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


def _truncate(p):
  p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])


def _flip(p):
  b = bytearray(p.read_bytes())
  b[len(b) // 2] ^= 0x01       # one bit in the middle of the array data
  p.write_bytes(bytes(b))


DAMAGE = {
    "truncated_data": lambda c: [_truncate(p) for p in _data_files(c)],
    "flipped_data_bit": lambda c: [_flip(p) for p in _data_files(c)],
    "deleted_meta": lambda c: (c / "meta" / "metadata").unlink(),
    "garbled_meta": lambda c: (c / "meta" / "metadata").write_text("{\"step\": 6, garbage"),
    "deleted_array_metadata": lambda c: (c / "state" / "_METADATA").unlink(),
    "garbled_array_metadata": lambda c: (c / "state" / "_METADATA").write_text("\0\0\0"),
    "truncated_manifest": lambda c: _truncate(c / "state" / "manifest.ocdbt"),
    "emptied": lambda c: [shutil.rmtree(q) if q.is_dir() else q.unlink() for q in c.iterdir()],
}
FAST_DAMAGE = ("truncated_data", "flipped_data_bit", "deleted_meta")
DAMAGED_RUN = {"steps": 9, "checkpoint_every": 3, "log_every": 1}


@pytest.fixture(scope="module")
def damaged_runs(tmp_path_factory):
  """A run to step 9 (the reference), and a run stopped at step 6 (checkpoints 3 and 6)."""
  root = tmp_path_factory.mktemp("damaged")
  condense.run(tiny_config("dm", **DAMAGED_RUN), str(root / "ref"))
  condense.run(tiny_config("dm", **{**DAMAGED_RUN, "steps": 6}), str(root / "at6"))
  return root


@pytest.mark.parametrize("how", [pytest.param(h, marks=() if h in FAST_DAMAGE
                                              else pytest.mark.slow) for h in DAMAGE])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_used(
    tmp_path, damaged_runs, how, capsys):
  work = tmp_path / "w"
  shutil.copytree(damaged_runs / "at6", work)
  DAMAGE[how](work / "checkpoints" / "6")
  log = io.StringIO()
  condense.run(tiny_config("dm", **DAMAGED_RUN), str(work), log=log)
  warnings = [l for l in log.getvalue().splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1, log.getvalue()
  assert warnings[0].startswith(f"warning: checkpoint step 6 in {work}/checkpoints is damaged (")
  assert f"moved to {work}/damaged_checkpoints/6; resuming from step 3" in warnings[0]
  assert "resuming from" in log.getvalue() and "at step 3" in log.getvalue()
  assert (work / "damaged_checkpoints" / "6").is_dir()            # kept, not deleted
  np.testing.assert_array_equal(_x(work / "synthetic.npz"),
                                _x(damaged_runs / "ref" / "synthetic.npz"))
  assert [m["step"] for m in progress.read_jsonl(work / "metrics.jsonl")] == list(range(1, 10))
  err = capsys.readouterr().err
  assert "Traceback" not in err and "absl" not in err, err[-3000:]    # nothing from orbax


def test_no_checkpoint_restores_is_one_line_and_status_2(tmp_path, damaged_runs, capsys):
  work = tmp_path / "w"
  shutil.copytree(damaged_runs / "at6", work)
  DAMAGE["deleted_meta"](work / "checkpoints" / "6")
  DAMAGE["truncated_data"](work / "checkpoints" / "3")
  args = ["condense", "--config", "experiments/quickstart.py:method=dm", "--workdir", str(work)]
  args += [f"--config.{k}={v}" for k, v in {**TINY, **DAMAGED_RUN}.items()]
  rc = condense.main(args)
  captured = capsys.readouterr()
  assert rc == 2, captured.err[-3000:]
  (line,) = [l for l in captured.err.splitlines() if l.strip()]
  assert line.startswith(f"error: checkpoints: none of the 2 checkpoint(s) in {work}/checkpoints "
                         f"restores (newest, step 6: a file is missing: metadata)"), line
  assert "Traceback" not in captured.err + captured.out
  assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["3", "6"]   # untouched
  assert not (work / "lock.json").exists()


# --------------------------------------------------------------------------- preemption

def _sigterm_at(monkeypatch, at_step):
  """SIGTERM to this process while the loop logs step `at_step` (as a preemption notice
  arrives in the middle of a step)."""
  real = condense.Loop.flush

  def flush(self, step_now):
    if step_now == at_step:
      os.kill(os.getpid(), signal.SIGTERM)
    return real(self, step_now)
  monkeypatch.setattr(condense.Loop, "flush", flush)


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resumes_bit_identically(
    tmp_path, monkeypatch):
  over = {"steps": 8, "checkpoint_every": 0, "log_every": 1}
  condense.run(tiny_config("dm", **over), str(tmp_path / "ref"))
  _sigterm_at(monkeypatch, 3)
  with pytest.raises(preemption.PreemptedError) as err:
    condense.run(tiny_config("dm", **over), str(tmp_path / "w"))
  assert str(err.value) == (f"preempted at step 3: checkpoint written to {tmp_path}/w/"
                            f"checkpoints; re-run the same command to resume")
  ckpt = checkpoint.Checkpointer(tmp_path / "w" / "checkpoints")
  assert ckpt.all_steps() == [3]
  ckpt.close()
  assert [m["step"] for m in progress.read_jsonl(tmp_path / "w/metrics.jsonl")] == [1, 2, 3]
  assert not (tmp_path / "w" / "synthetic.npz").exists()
  assert not (tmp_path / "w" / "lock.json").exists()
  monkeypatch.undo()
  condense.run(tiny_config("dm", **over), str(tmp_path / "w"))
  np.testing.assert_array_equal(_x(tmp_path / "ref/synthetic.npz"), _x(tmp_path / "w/synthetic.npz"))
  assert [m["step"] for m in progress.read_jsonl(tmp_path / "w/metrics.jsonl")] == list(range(1, 9))


def test_a_stop_between_log_lines_logs_the_partial_interval_once(tmp_path, monkeypatch):
  """log_every 4, stopped after step 5: the steps since the last line get one line at step
  5, and the resumed run's next line covers steps 6-8 only."""
  over = {"steps": 8, "checkpoint_every": 0, "log_every": 4}
  real_stop = preemption.Preemption.should_stop     # as if the signal came during step 5
  monkeypatch.setattr(preemption.Preemption, "should_stop",
                      lambda self, step: step == 5 or real_stop(self, step))
  with pytest.raises(preemption.PreemptedError, match="^preempted at step 5: "):
    condense.run(tiny_config("dm", **over), str(tmp_path))
  monkeypatch.undo()
  condense.run(tiny_config("dm", **over), str(tmp_path))
  metrics = progress.read_jsonl(tmp_path / "metrics.jsonl")
  assert [(m["step"], m["steps_in_interval"]) for m in metrics] == [(4, 4), (5, 1), (8, 3)]


def test_cli_stops_on_sigterm_with_status_3_and_a_second_ctrl_c_aborts(tmp_path):
  """The real signals, to `python -m jaxcond.condense`."""
  env = subprocess_env(num_devices=1)
  over = {"steps": 5000, "checkpoint_every": 0, "log_every": 1}

  def start(work):
    return subprocess.Popen(tiny_cli_args(work, **over), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  def when_logged(proc, work, n=3):
    metrics = work / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
      if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
        return
      time.sleep(0.05)
    pytest.fail("the run ended or never logged")

  work = tmp_path / "term"
  proc = start(work)
  when_logged(proc, work)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 3, err[-3000:]
  (line,) = err.strip().splitlines()
  step = int(line.split()[3].rstrip(":"))
  assert line == (f"preempted at step {step}: checkpoint written to {work}/checkpoints; "
                  f"re-run the same command to resume")
  assert progress.read_jsonl(work / "metrics.jsonl")[-1]["step"] == step

  work = tmp_path / "int"
  proc = start(work)
  when_logged(proc, work)
  proc.send_signal(signal.SIGINT)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=300)
  # the second Ctrl-C is the default action: killed by SIGINT (a shell reports 130), or,
  # when the first had already stopped the run, the status of a preemption
  assert proc.returncode in (-signal.SIGINT, 3), (proc.returncode, err[-3000:])
  assert "Traceback" not in err


# --------------------------------------------------------------------------- full disks

def _enospc_on_save(monkeypatch, at_call):
  """The orbax save of the `at_call`-th checkpoint fails as tensorstore reports a full
  disk."""
  import orbax.checkpoint as ocp
  real = ocp.CheckpointManager.save
  calls = {"n": 0}

  def save(self, step, *a, **kw):
    calls["n"] += 1
    if calls["n"] == at_call:
      raise ValueError(
          f"RESOURCE_EXHAUSTED: Error writing local file \"{self.directory}/{step}.orbax-"
          f"checkpoint-tmp/state/_sharding\": Failed to write 236 bytes to file 11: No space "
          f"left on device [os_error_code='28']")
    return real(self, step, *a, **kw)
  monkeypatch.setattr(ocp.CheckpointManager, "save", save)


FULL_DISK_RUN = {"steps": 9, "checkpoint_every": 3, "log_every": 1}


def _save_of_step_6_fails_and_names_step_3(tmp_path, capsys):
  """`condense` to step 9 with checkpoints every 3, where the (injected) full disk refuses
  the save of step 6: status 1 and exactly this one line."""
  args = ["condense", "--config", "experiments/quickstart.py:method=dm", "--workdir",
          str(tmp_path / "w")] + [f"--config.{k}={v}"
                                  for k, v in {**TINY, **FULL_DISK_RUN}.items()]
  rc = condense.main(args)
  err = capsys.readouterr().err
  assert rc == 1, err[-3000:]
  assert err == (f"error: workdir {tmp_path}/w: cannot write the checkpoint of step 6 to "
                 f"{tmp_path}/w/checkpoints: no space left on device (ENOSPC); the "
                 f"checkpoint of step 3 is intact: free space (or restore access) and re-run "
                 f"the same command to resume\n")


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_keeps_the_last_one(
    tmp_path, monkeypatch, capsys):
  _enospc_on_save(monkeypatch, 2)
  _save_of_step_6_fails_and_names_step_3(tmp_path, capsys)
  monkeypatch.undo()
  ckpt = checkpoint.Checkpointer(tmp_path / "w" / "checkpoints")
  assert ckpt.all_steps() == [3]
  ckpt.close()
  condense.run(tiny_config("dm", **FULL_DISK_RUN), str(tmp_path / "w"))
  condense.run(tiny_config("dm", **FULL_DISK_RUN), str(tmp_path / "ref"))
  np.testing.assert_array_equal(_x(tmp_path / "ref/synthetic.npz"), _x(tmp_path / "w/synthetic.npz"))


def test_an_async_save_failure_reported_once_never_counts_as_written(
    tmp_path, monkeypatch, capsys):
  """As on a real full tmpfs: the save of step 6 starts, fails in orbax's background
  thread, and `wait_until_finished` reports it once, then returns quietly. The line must
  still name step 3 as the checkpoint to resume from, not step 6 (seen before the fix)."""
  import orbax.checkpoint as ocp
  real_save, real_wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished
  state = {"saves": 0, "failed": False}

  def save(self, step, *a, **kw):
    state["saves"] += 1
    if state["saves"] == 2:          # nothing reaches the disk; the failure comes later
      state["failed"] = True
      return True
    return real_save(self, step, *a, **kw)

  def wait(self):
    if state["failed"]:
      state["failed"] = False        # reported once, like orbax's async error
      raise ValueError("RESOURCE_EXHAUSTED: Error writing local file: No space left on "
                       "device [os_error_code='28']")
    return real_wait(self)
  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait)
  _save_of_step_6_fails_and_names_step_3(tmp_path, capsys)


def test_a_synthetic_npz_the_disk_refuses_keeps_the_old_one(tmp_path, monkeypatch):
  condense.run(tiny_config("dm", steps=2, checkpoint_every=0), str(tmp_path))
  before = (tmp_path / "synthetic.npz").read_bytes()
  real = np.savez

  def savez(f, **arrays):        # writes part of the archive, then the file system is gone
    f.write(b"PK\x03\x04 partial")
    raise OSError(errno.EROFS, "Read-only file system")
  monkeypatch.setattr(files.np, "savez", savez)
  with pytest.raises(files.StorageError) as err:
    condense.run(tiny_config("dm", steps=4, checkpoint_every=0), str(tmp_path))
  monkeypatch.setattr(files.np, "savez", real)
  assert str(err.value) == (
      f"workdir {tmp_path}: cannot write {tmp_path}/synthetic.npz: read-only file system "
      f"(EROFS); the checkpoint of step 4 is intact: free space (or restore access) and "
      f"re-run the same command to write the outputs")
  assert (tmp_path / "synthetic.npz").read_bytes() == before
  assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
  assert not (tmp_path / "lock.json").exists()
  condense.run(tiny_config("dm", steps=4, checkpoint_every=0), str(tmp_path))
  assert int(np.load(tmp_path / "synthetic.npz")["steps"]) == 4


# --------------------------------------------------------------------------- soak

def _last_logged(metrics):
  try:
    lines = metrics.read_text().splitlines()
  except OSError:
    return 0
  for line in reversed(lines):
    try:
      return int(json.loads(line)["step"])
    except (ValueError, KeyError):
      continue
  return 0


def _lock_pid(work):
  try:
    return json.loads((work / "lock.json").read_text())["pid"]
  except (OSError, ValueError, KeyError):
    return None


@pytest.mark.slow
def test_soak_quickstart_survives_10_sigterms_and_5_sigkills_at_random_points(tmp_path):
  """The quickstart condense run, SIGTERMed at 10 points drawn at random and SIGKILLed at
  5 more (in a random order), resumed after each: the final synthetic.npz is bit-identical
  to an uninterrupted run and metrics.jsonl holds every logged step exactly once."""
  rnd = random.Random(2212)
  env = subprocess_env(num_devices=1)
  steps = 200

  def args(work):
    return [sys.executable, "-m", "jaxcond.condense", "--config", "experiments/quickstart.py",
            "--workdir", str(work), "--config.eval.num_nets=0", "--config.log_every=1",
            "--config.quiet=True"]

  ref = subprocess.run(args(tmp_path / "ref"), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
  assert ref.returncode == 0, ref.stderr[-3000:]

  work = tmp_path / "soak"
  events = [(signal.SIGTERM, t) for t in rnd.sample(range(0, steps), 10)]
  events += [(signal.SIGKILL, t) for t in rnd.sample(range(0, steps), 5)]
  events.sort(key=lambda e: e[1])
  seen = []
  for sig, target in events:
    before = _last_logged(work / "metrics.jsonl")
    proc = subprocess.Popen(args(work), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    # a point at or before where this run resumes: a signal while it starts (restoring,
    # compiling), once it holds its workdir
    delay, started = rnd.uniform(0.0, 1.5), None
    while time.time() < deadline and proc.poll() is None:
      if target > before:
        if _last_logged(work / "metrics.jsonl") >= target:
          break
      elif started is None:
        started = time.time() if _lock_pid(work) == proc.pid else None
      elif time.time() - started >= delay:
        break
      time.sleep(0.02)
    at = _last_logged(work / "metrics.jsonl")
    if proc.poll() is None:
      proc.send_signal(sig)
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err[-3000:]
    if sig == signal.SIGTERM:
      lines = [l for l in err.splitlines() if l.strip()]
      assert proc.returncode in (0, 3), (proc.returncode, err[-3000:])
      if proc.returncode == 3:
        assert len(lines) == 1 and lines[0].startswith("preempted "), err[-3000:]
        assert lines[0].endswith("re-run the same command to resume"), lines[0]
    else:
      assert proc.returncode in (0, -signal.SIGKILL), (proc.returncode, err[-3000:])
    seen.append((signal.Signals(sig).name, target, before, at, proc.returncode))
  print("soak (signal, target step, last logged at start, last logged when sent, status):", seen)
  assert [s for s, *_ in seen].count("SIGTERM") == 10 and len(seen) == 15
  final = subprocess.run(args(work), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
  assert final.returncode == 0, final.stderr[-3000:]
  np.testing.assert_array_equal(_x(tmp_path / "ref/synthetic.npz"), _x(work / "synthetic.npz"))
  logged = [m["step"] for m in progress.read_jsonl(work / "metrics.jsonl")]
  assert logged == list(range(1, steps + 1)), seen
  assert not (work / "lock.json").exists()
