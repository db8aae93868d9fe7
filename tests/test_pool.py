"""`jaxcond.pool` (trained feature nets) and condensation with a pool, on digits: the pool's
files and content hash, a resumed / re-laid-out training that changes no net, the
trajectory refusing another pool, and the five rows of issue 21 end to end (DM and NCFM,
random nets and a pool, calibration) against random real subsets."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxcond import condense, configs, evaluate, nets, pool, pool_files, preemption, steps
from jaxcond.data import registry
from jaxcond.errors import ConfigError, DataError

from conftest import load_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_POOL = {"pool.size": 3, "pool.epochs": 2, "pool.batch_size": 64, "model.width": 8,
             "log_every": 100, "quiet": True}


def config(arg="", **fields):
  c = load_experiment(f"quickstart.py:{arg}")
  for key, value in fields.items():
    configs.set_field(c, key, value, source="test")
  return c


def _stacked(path):
  return pool_files.load(path)[0]


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory):
  """3 width-8 ConvNetD2 nets x 2 epochs on digits (batches of 64)."""
  path = tmp_path_factory.mktemp("pool") / "p"
  pool.run(config(**TINY_POOL), str(path))
  return path


# ----------------------------------------------------------------------------- files

def test_pool_files_round_trip_hash_and_refusals(tmp_path):
  c = config(**{"model.width": 8})
  info = registry.get_info("digits")
  model = steps.make_model(configs.step_settings(c, info))
  draw = lambda k: nets.init_variables(model, jax.random.key(k), info.image_shape)
  inits, finals = [draw(0), draw(1)], [draw(10), draw(11)]
  for i in range(2):
    pool_files.save_net(str(tmp_path), i, "init", inits[i])
    pool_files.save_net(str(tmp_path), i, "final", finals[i])
  with pytest.raises(ConfigError, match="^pool.path: .* holds no pool.json"):
    pool_files.load(str(tmp_path))
  assert pool_files.planned_size(str(tmp_path), 7) == 7 and pool_files.planned_size("", 7) == 0
  h = pool_files.content_hash(inits, finals)
  assert h != pool_files.content_hash(finals, inits)
  record = {"size": 2, "model": configs.model_record(c, info), "content_hash": h}
  pool_files.write_manifest(str(tmp_path), record)
  stacked, manifest = pool_files.load(str(tmp_path), model=configs.model_record(c, info))
  assert manifest["size"] == 2 and pool_files.planned_size(str(tmp_path), 7) == 2
  k = stacked["final"]["params"]["Conv_0"]["kernel"]
  assert k.shape[0] == 2
  np.testing.assert_array_equal(k[1], finals[1]["params"]["Conv_0"]["kernel"])
  # another net: refused, naming the field
  wide = configs.model_record(config(**{"model.width": 16}), info)
  with pytest.raises(ConfigError, match="^pool.path: .* holds nets convnetd2 width 8"):
    pool_files.load(str(tmp_path), model=wide)
  # weights changed after training: refused
  pool_files.save_net(str(tmp_path), 1, "final", finals[0])
  with pytest.raises(DataError, match="do not match its manifest"):
    pool_files.load(str(tmp_path))


def test_pool_refuses_a_workdir_made_with_other_settings(tmp_path):
  pool.claim_workdir(pool.setup(config(**TINY_POOL), str(tmp_path)))
  pool.claim_workdir(pool.setup(config(**TINY_POOL), str(tmp_path)))   # the same: fine
  other = pool.setup(config(**TINY_POOL, **{"pool.lr": 0.02}), str(tmp_path))
  with pytest.raises(ConfigError, match="^pool.lr: .* other settings"):
    pool.claim_workdir(other)
  with pytest.raises(ConfigError, match="^dataset.streaming"):
    pool.setup(config(**TINY_POOL, **{"dataset.streaming": True}), str(tmp_path / "s"))


# ----------------------------------------------------------------------------- training

@pytest.mark.slow
def test_pool_resumes_and_lays_out_nets_without_changing_them(tiny_pool, tmp_path):
  """The tiny pool again from its epoch-1 checkpoint: the same content hash; on 8 devices
  (3 nets padded to 8) and in groups of 2 nets: the same nets up to float rounding."""
  manifest = pool_files.read_manifest(str(tiny_pool))
  assert manifest["size"] == 3 and len(manifest["train_accuracy"]) == 3
  assert min(manifest["test_accuracy"]) > 30.0     # 2 epochs of a width-8 net: learning
  resumed = tmp_path / "resumed"
  shutil.copytree(tiny_pool, resumed)
  spe = manifest["steps_per_epoch"]
  shutil.rmtree(resumed / "checkpoints" / str(2 * spe))
  os.remove(resumed / "pool.json")
  for i in range(3):
    shutil.rmtree(pool_files.net_dir(str(resumed), i, "final"))
  again = pool.run(config(**TINY_POOL), str(resumed))
  assert again["content_hash"] == manifest["content_hash"]

  want = _stacked(str(tiny_pool))
  for name, fields in (("eight", {"num_devices": 8}), ("groups", {"pool.nets_per_group": 2})):
    other = pool.run(config(**TINY_POOL, **fields), str(tmp_path / name))
    got = _stacked(str(tmp_path / name))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), got["init"], want["init"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
                 got["final"], want["final"])
    assert other["train_accuracy"] == pytest.approx(manifest["train_accuracy"], abs=2.0)


@pytest.mark.slow
def test_a_stopped_pool_resumes_to_the_same_nets(tiny_pool, tmp_path):
  """A stop request (SIGTERM / Ctrl-C; `jaxcond.preemption`) after step 5, mid-epoch: a
  checkpoint, PreemptedError with its one line, no manifest; the re-run resumes there and
  gives the uninterrupted pool's nets bit for bit (log lines every 5 steps instead of 100
  change nothing either)."""
  work = tmp_path / "w"
  stop = preemption.Preemption()
  stop.should_stop = lambda step: step == 5
  c = config(**{**TINY_POOL, "log_every": 5})
  with pytest.raises(preemption.PreemptedError,
                     match=r"^preempted at step 5: checkpoint written to .*checkpoints; "
                           r"re-run the same command to resume$"):
    pool.run(c, str(work), stop=stop)
  assert not (work / pool_files.MANIFEST).exists() and (work / "checkpoints" / "5").is_dir()
  again = pool.run(c, str(work))
  assert again["content_hash"] == pool_files.read_manifest(str(tiny_pool))["content_hash"]
  steps_logged = [json.loads(l)["step"] for l in (work / "metrics.jsonl").read_text()
                  .splitlines()]
  assert steps_logged == sorted(set(steps_logged)) and steps_logged[0] == 5


@pytest.mark.slow
def test_condense_with_a_pool_resumes_and_refuses_another_pool(tiny_pool, tmp_path):
  """NCFM + pool + calibration (AdamW and its plateau state in the checkpoint): resumed ==
  uninterrupted, bit for bit; the pool's path and hash are in the trajectory."""
  tiny = {"steps": 4, "checkpoint_every": 2, "log_every": 2, "batch_real": 8, "ipc": 2,
          "model.width": 8, "eval.num_nets": 0, "quiet": True, "ncfm.num_freqs": 256,
          "synthetic.plateau_patience": 1, "pool.path": str(tiny_pool)}
  condense.run(config("method=ncfm", **tiny), str(tmp_path / "a"))
  condense.run(config("method=ncfm", **{**tiny, "steps": 2}), str(tmp_path / "b"))
  out = condense.run(config("method=ncfm", **tiny), str(tmp_path / "b"))
  assert out["step"] == 4
  x = lambda d: np.load(tmp_path / d / "synthetic.npz")["x"]
  np.testing.assert_array_equal(x("a"), x("b"))
  record = json.loads((tmp_path / "a" / "config.json").read_text())
  manifest = pool_files.read_manifest(str(tiny_pool))
  assert record["pool"]["content_hash"] == manifest["content_hash"]
  assert record["config_hash"] != configs.config_hash(config("method=ncfm", **tiny))
  metrics = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().split("\n")
             if l]
  assert {"loss/ncfm", "loss/calib"} <= set(metrics[-1])
  with pytest.raises(ConfigError, match="^pool.content_hash: .* holds a checkpoint"):
    condense.run(config("method=ncfm", **{**tiny, "pool.path": "", "steps": 6}),
                 str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="^pool.path: .* holds nets convnetd2 width 8"):
    condense.setup(config("method=ncfm", **{**tiny, "model.width": 16}), str(tmp_path / "c"))
  with pytest.raises(ConfigError, match="^pool.path: .* dataset.holdout=0"):
    condense.setup(config("method=ncfm", **{**tiny, "dataset.holdout": 20}), str(tmp_path / "c"))
  # the streaming path takes the pool after its (real, class ids) arguments
  out = condense.run(config("method=dm", **{**tiny, "steps": 2, "dataset.streaming": True}),
                     str(tmp_path / "s"))
  assert np.isfinite(out["loss"])


@pytest.mark.slow
def test_pool_plan_cli_reads_no_data(tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAXCOND_DATA_DIR": str(tmp_path / "none")}
  out = subprocess.run([sys.executable, "-m", "jaxcond.pool", "--config",
                        "experiments/cifar10.py", "--plan", "--devices", "4",
                        "--config.memory_budget_gb=4", "--config.model.width=16"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                       check=True)
  summary = json.loads(out.stdout.strip().splitlines()[-1])
  assert summary["fits"] and summary["padded_nets"] == 20 and summary["nets_per_device"] == 5


# ----------------------------------------------------------------------------- the five rows

@pytest.mark.slow
def test_five_rows_on_digits(tmp_path):
  """DM random / DM pool / NCFM random / NCFM pool / NCFM pool + calibration run end to end
  on digits (quickstart nets, a 4-net pool of 4 epochs, 60 steps, 2 evaluation nets, one
  device), and NCFM with a pool beats random real subsets under the same evaluation: every
  row under the dm protocol (NCFM's own protocol, its default, is not comparable)."""
  p = tmp_path / "pool"
  one = {"num_devices": 1, "quiet": True}
  manifest = pool.run(config(**one, **{"pool.size": 4, "pool.epochs": 4}), str(p))
  assert min(manifest["test_accuracy"]) > 70.0
  common = {**one, "steps": 60, "checkpoint_every": 0}
  rows = {"dm_random": ("dm", {}), "dm_pool": ("dm", {"pool.path": str(p)}),
          "ncfm_random": ("ncfm", {}),
          "ncfm_pool": ("ncfm", {"pool.path": str(p), "calib.weight": 0.0}),
          "ncfm_pool_calib": ("ncfm", {"pool.path": str(p)})}
  acc = {}
  dm_eval = config("method=dm").eval
  for name, (method, fields) in rows.items():
    c = config(f"method={method}", **common, **fields)
    c.eval = dm_eval
    out = condense.run(c, str(tmp_path / name))
    assert np.isfinite(out["loss"]) and out["eval"]["num_nets"] == 2, name
    acc[name] = out["eval"]["mean"]
  random = evaluate.run(config(), workdir=str(tmp_path / "random"), baseline="random",
                        log=lambda s: None)
  acc["random"] = random["mean"]
  print(acc)
  assert acc["ncfm_pool"] > acc["random"] and acc["ncfm_pool_calib"] > acc["random"], acc


@pytest.mark.slow
def test_ncfm_resumes_on_another_device_count(tmp_path):
  """AdamW's count and the plateau state are scalars: a checkpoint re-padded for another
  device count keeps them (condense.restore_repadded)."""
  tiny = {"steps": 2, "checkpoint_every": 2, "log_every": 1, "batch_real": 8, "ipc": 2,
          "model.width": 8, "eval.num_nets": 0, "quiet": True, "ncfm.num_freqs": 256,
          "synthetic.plateau_patience": 1}
  condense.run(config("method=ncfm", **tiny, num_devices=8), str(tmp_path / "a"))
  condense.run(config("method=ncfm", **{**tiny, "steps": 4}, num_devices=3),
               str(tmp_path / "a"))                # 16 padded classes restored onto 12
  condense.run(config("method=ncfm", **{**tiny, "steps": 4}, num_devices=1),
               str(tmp_path / "b"))
  x = lambda d: np.load(tmp_path / d / "synthetic.npz")["x"]
  np.testing.assert_allclose(x("a"), x("b"), rtol=1e-4, atol=1e-4)
