"""jaxcond.bench: the CLI contract (last line is JSON), the class sweep, sharded == 1 device.

No timing assertions: only that the numbers exist, are positive and are consistent.
"""
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxcond import bench, benchlib
from jaxcond.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "experiments" / "quickstart.py")
DOCUMENTED_KEYS = ("median_step_s", "min_step_s", "max_step_s", "compile_s", "images_per_s",
                   "flops_per_step", "fraction_of_peak", "peak_bytes", "peak_gflops",
                   "loss_first", "devices", "method", "ipc", "machine")


def _tiny(method="dm", ipc=2, **kw):
  return bench.build_config(QUICK, method=method, ipc=ipc,
                            sets=("batch_real=8", "model.width=8"), **kw)


def test_cli_last_line_is_json(capsys):
  cmd = ["bench", "--config", f"{QUICK}:method=dm,ipc=2",
         "--fake-data", "--repeats", "2", "--warmup", "1", "--peak-n", "256",
         "--set", "batch_real=8", "--set", "model.width=8", "--num-devices", "1"]
  returncode = bench.main(cmd)            # in-process: the same main as python -m jaxcond.bench
  out = capsys.readouterr()
  assert returncode == 0, out.err[-2000:]
  lines = out.out.strip().splitlines()
  last = json.loads(lines[-1])
  for key in DOCUMENTED_KEYS:
    assert key in last, key
  assert last["median_step_s"] > 0
  assert last["min_step_s"] <= last["median_step_s"] <= last["max_step_s"]
  assert last["repeats"] == 2 and len(last["times_s"]) == 2
  assert last["images_per_s"] == pytest.approx(
      last["images_per_step"] / last["median_step_s"])
  assert last["images_per_step"] == 10 * (8 + 2)
  assert last["peak_gflops"] > 0 and last["flops_per_step"] > 0
  assert np.isfinite(last["loss_first"])
  assert any(line.startswith("| case |") for line in lines), "markdown table missing"


def test_cli_bad_input_is_one_line():
  proc = subprocess.run([sys.executable, "-m", "jaxcond.bench", "--config",
                         f"{QUICK}:method=dm", "--set", "synthetic.lrr=3", "--peak-n", "0"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2                 # (one subprocess: python -m jaxcond.bench)
  err = proc.stderr.strip().splitlines()
  assert len(err) == 1 and "synthetic.lrr" in err[0]


def test_reference_workload_matches_torch_iteration():
  c = _tiny(method="m3d", ipc=3, workload="reference")
  assert c.batch_real == 256 and c.synthetic.factor == 1 and c.m3d.ipm == 1
  assert c.augment.policy == "dm" and c.augment.strategy == bench.configs.FULL_STRATEGY
  assert c.synthetic.batch_syn_max == 0
  with pytest.raises(ConfigError, match="workload"):
    _tiny(workload="fast")


@pytest.mark.slow
def test_sharded_step_same_loss_as_one_device():
  """8 fake CPU devices (10 classes padded to 16): same loss as 1 device. Also: the hand
  count of the ConvNet convolutions agrees with XLA's cost analysis (which also counts
  norm, augmentation and the loss) within 10 %."""
  assert jax.device_count() == 8
  config = _tiny(method="m3d", ipc=2)       # per-class stepping, factor 2, 10 classes
  one = bench.measure_step(config, num_devices=1, repeats=1, warmup=0, log=lambda m: None)
  eight = bench.measure_step(config, num_devices=8, repeats=1, warmup=0, log=lambda m: None)
  assert eight["devices"] == 8 and eight["padded_classes"] == 16
  assert one["padded_classes"] == 10
  assert eight["loss_first"] == pytest.approx(one["loss_first"], rel=1e-4, abs=1e-6)
  assert one["flops_per_step"] == pytest.approx(one["flops_model"], rel=0.1)
  assert one["peak_bytes"] > 0 and one["median_step_s"] > 0


def test_class_sweep_tiny():
  config = bench.build_config(QUICK, method="dm", ipc=1, sets=("augment.strategy=none",))
  rows = bench.sweep_classes(config, [2, 6], resolution=8, width=4, batch_real=3,
                             num_devices=1, repeats=1, warmup=0, log=lambda m: None)
  assert [r["classes"] for r in rows] == [2, 6]
  assert [r["images_per_step"] for r in rows] == [2 * 4, 6 * 4]
  for r in rows:
    assert r["median_step_s"] > 0 and r["us_per_image"] > 0
    assert r["bytes_per_class"] > 0 and r["marginal_bytes_per_class"] > 0
  assert rows[1]["peak_bytes"] > rows[0]["peak_bytes"]


def test_sweep_uses_method_and_ipc_flags():
  def case(*argv):
    return bench._case_configs(bench.parse_args(["--sweep", "classes", "--fake-data", *argv]))
  config, _ = case("--method", "m3d", "--ipc", "10")[0]
  assert (config.method, config.ipc) == ("m3d", 10)
  config, _ = case()[0]
  assert (config.method, config.ipc) == ("dm", 1)
  with pytest.raises(ConfigError, match="one --method and one --ipc"):
    case("--ipc", "1,10")


def test_time_steps_carries_state():
  calls = []

  def step(state, inc, i):
    calls.append(i)
    return state + inc, {"loss": state}

  state, stats, first = benchlib.time_steps(step, np.float32(0.0), np.float32(1.0),
                                            repeats=3, warmup=0)
  assert calls == [0, 1, 2, 3]              # warm-up is at least one call
  assert float(state) == 4.0 and float(first["loss"]) == 0.0
  assert stats["repeats"] == 3 and stats["min_s"] <= stats["median_s"] <= stats["max_s"]
