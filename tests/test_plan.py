"""jaxcond.plan: chunk choices from a budget, the CPU preference, the no-fit error, and
`--plan` reading no data. Both policies run on CPU (no branch only an accelerator reaches)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxcond import configs, parallel, plan, steps
from jaxcond.data import registry
from jaxcond.errors import ConfigError

from conftest import load_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tiny(method="dm", ipc=2, budget=0.0, **fields):
  """CIFAR-10 shapes with a narrow net: a step that compiles in seconds."""
  c = load_experiment(f"cifar10.py:method={method},ipc={ipc}")
  c.batch_real = 32
  c.model.width = 8
  c.memory_budget_gb = budget
  for k, v in fields.items():
    configs.set_field(c, k, v, source="test")
  configs.validate(c)
  return c


def _plan(c, devices=1, policy="cpu", strict=True):
  info = registry.get_info(c.dataset.name)
  s = configs.step_settings(c, info)
  return plan.make_plan(c, s, parallel.make_mesh(devices), depth=32, policy=policy,
                        strict=strict)


@pytest.mark.slow
def test_cpu_preference_comes_from_the_planner():
  """CPU: ~160 real images per iteration, ~50 synthetic 32x32 images per group (unrolled);
  the same numbers the speed measurements chose (docs/benchmarks.md)."""
  c = _tiny(ipc=10)
  p = _plan(c)
  s = p.settings
  assert p.fits and p.compiles == 1
  assert s.real_chunk == 16 and s.real_cpg == 0          # 10 classes x 16 of 32 images
  assert s.syn_cpg == 5 and s.syn_unroll                  # 5 classes x 10 images, 2 groups
  assert plan.cpu_syn_images((28, 28, 1)) == 65 and plan.cpu_syn_images((8, 8, 1)) == 800
  # explicit values win; 0 = one chunk
  s0 = _plan(_tiny(ipc=10, real_chunk=0, syn_chunk=0)).settings
  assert (s0.real_chunk, s0.real_cpg, s0.syn_cpg) == (0, 0, 0)
  s1 = _plan(_tiny(ipc=10, real_chunk=4, syn_chunk=20)).settings
  assert (s1.real_chunk, s1.syn_cpg) == (4, 2)


@pytest.mark.slow
def test_accelerator_policy_takes_one_chunk_when_it_fits():
  p = _plan(_tiny(ipc=10, budget=8.0), policy="accelerator")
  assert p.fits and p.policy == "accelerator"
  assert (p.settings.real_chunk, p.settings.real_cpg, p.settings.syn_cpg) == (0, 0, 0)
  assert not p.settings.syn_unroll


@pytest.mark.slow
def test_small_budget_shrinks_the_chunks():
  """A budget below the one-chunk step's memory: the planner measures per-image bytes,
  picks smaller chunks, verifies by compiling, and the result fits."""
  c = _tiny(ipc=10, budget=8.0)
  full = _plan(c, policy="accelerator")
  need = full.per_device_bytes
  c.memory_budget_gb = 0.6 * need / plan.GIB
  p = _plan(c, policy="accelerator")
  assert p.fits and p.per_device_bytes <= p.budget_bytes
  assert p.per_device_bytes < need
  s = p.settings
  assert (s.real_chunk, s.real_cpg, s.syn_cpg) != (0, 0, 0)
  assert p.compiles >= 2
  lines = p.lines()
  assert lines[0].startswith("memory plan") and "fits" in lines[4] and "chunks:" in lines[5]


@pytest.mark.slow
def test_nothing_fits_is_one_line():
  c = _tiny(ipc=10, budget=0.0001)
  with pytest.raises(ConfigError) as err:
    _plan(c, policy="accelerator")
  msg = str(err.value)
  assert "\n" not in msg and msg.startswith("memory_budget_gb")
  for hint in ("ipc", "batch_real", "resolution", "devices", "streaming"):
    assert hint in msg
  p = _plan(c, policy="accelerator", strict=False)          # --plan reports instead
  assert not p.fits and p.summary()["fits"] is False
  # The bank shard alone is over this budget: the plan still shows the smallest chunks
  # (the true minimum, not the one-chunk program) and says what dominates.
  s = p.settings
  assert (s.real_chunk, s.real_cpg, s.syn_cpg) == (1, 1, 1)
  assert "alone exceed" in p.note and p.lines()[-1] == f"  note: {p.note}"
  assert p.note == msg
  one_chunk = _plan(_tiny(ipc=10, budget=0.0001, real_chunk=0, syn_chunk=0),
                    policy="accelerator", strict=False)
  assert p.per_device_bytes < one_chunk.per_device_bytes
  cpu = _plan(c, policy="cpu", strict=False)                 # the same on the CPU policy
  assert (cpu.settings.real_chunk, cpu.settings.syn_cpg) == (1, 1) and not cpu.fits


@pytest.mark.slow
def test_batch_norm_nets_take_one_chunk():
  c = _tiny(ipc=10)
  c.model.name = "convnet_bn"
  configs.validate(c)
  s = _plan(c).settings
  assert (s.real_chunk, s.real_cpg, s.syn_cpg) == (0, 0, 0)
  c.memory_budget_gb = 0.0001
  with pytest.raises(ConfigError, match="batch-norm"):
    _plan(c)


@pytest.mark.slow
def test_eight_devices_per_device_memory():
  """The plan's memory is per device: 8 devices hold about 1/8 of the bank and state."""
  c = _tiny(ipc=10, budget=8.0)
  one = _plan(c, devices=1, policy="accelerator")
  eight = _plan(c, devices=8, policy="accelerator")
  assert eight.local_classes == 2 and one.local_classes == 10
  assert eight.stats["argument_size_in_bytes"] < 0.4 * one.stats["argument_size_in_bytes"]
  assert eight.per_device_bytes < one.per_device_bytes


def test_plan_cli_reads_no_data(tmp_path):
  """`--plan` with an empty data folder: shapes from the registry, last line JSON."""
  empty = tmp_path / "data"
  empty.mkdir()
  env = dict(os.environ, JAXCOND_DATA_DIR=str(empty), JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "jaxcond.condense", "--config",
         "experiments/cifar10.py:method=dm,ipc=2", "--plan", "--devices", "4",
         "--config.batch_real=16", "--config.model.width=8", "--config.memory_budget_gb=2"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  out = json.loads(lines[-1])
  for key in ("fits", "devices", "per_device_bytes", "budget_bytes", "flops_per_step",
              "compile_s"):
    assert key in out, key
  assert out["fits"] is True and out["devices"] == 4
  assert out["budget_bytes"] == 2 * plan.GIB
  assert 0 < out["per_device_bytes"] <= out["budget_bytes"]
  assert out["flops_per_step"] > 0 and out["compile_s"] > 0
  assert any(line.startswith("memory plan") for line in lines)
  assert not any(empty.iterdir())


def test_ncfm_frequency_chunks_to_try():
  s = steps.StepSettings(method="ncfm", seed=0, num_classes=10, image_shape=(32, 32, 3),
                         mean=(0.5,) * 3, std=(0.5,) * 3, ipc=10, batch_real=1024, factor=2)
  assert plan.cf_chunks(s) == [(2048, 0), (1024, 0), (512, 0), (256, 0), (256, 256),
                               (256, 64)]
  small = steps.StepSettings(method="ncfm", seed=0, num_classes=10, image_shape=(8, 8, 1),
                             mean=(0.5,), std=(0.5,), ipc=2, batch_real=32, num_freqs=300)
  assert plan.cf_chunks(small) == [(256, 0)]


@pytest.mark.slow
def test_ncfm_with_a_pool_planned_from_shapes(tmp_path):
  """A pool that does not exist yet is planned from `pool.size` (its weights replicated,
  in the arguments); when nothing fits, NCFM's frequencies are chunked before giving up."""
  c = _tiny("ncfm", budget=8.0, **{"pool.path": str(tmp_path / "no_pool"), "pool.size": 3,
                                   "ncfm.num_freqs": 512})
  lines = []
  out = plan.run_plan(c, 1, log=lines.append)
  assert out["fits"] and out["method"] == "ncfm"
  pool_line = next(l for l in lines if "feature-net pool" in l)
  assert "3 nets" in pool_line
  info = registry.get_info("cifar10")
  s = configs.step_settings(c, info, pool_size=3)
  assert out["argument_bytes"] > plan.pool_bytes(s) > 0
  c.memory_budget_gb = 0.0001
  p = plan.make_plan(c, s, parallel.make_mesh(1), depth=32, policy="cpu", strict=False)
  assert not p.fits and p.settings.freq_chunk == 256
  assert "NCFM 256 frequencies" in p.chunks_line()
