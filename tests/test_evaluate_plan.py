"""The evaluation's memory plan and FLOPs (jaxcond.evaluate.plan, `evaluate --plan`), and
condensation's FLOPs per run (jaxcond.plan)."""
import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import pytest

from jaxcond import backend, configs
from jaxcond import evaluate as ev
from jaxcond import plan as cplan
from jaxcond.evaluate import plan
from jaxcond.errors import ConfigError
from jaxcond.evaluate.execution import Layout
from jaxcond.nets.resnet import ResNet

from conftest import load_experiment
from evalnets import TinyMLP as MLP
from evalnets import net_fns as _net

ROOT = pathlib.Path(__file__).resolve().parents[1]


class TinyResNet(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return ResNet(num_classes=10, stage_sizes=(1, 1), widths=(8, 16))(x, train=train)[0]


def _plan(net, shape, **kw):
  s = ev.EvalSettings.for_protocol("dm", batch_size=kw.pop("batch", 64), strategy="none",
                                   num_nets=kw.pop("nets", 1))
  with backend.force("accelerator"):
    return plan.plan_evaluation(s, model=kw.pop("model", "tiny"), net=net, num_classes=10,
                                image_shape=shape, **kw)


# ------------------------------------------------------------------------------ candidates

def test_candidates_in_the_planners_order():
  """Default layout, least per-device work, map, everything on data with map, then remat;
  a fixed data axis keeps its layout; remat only for nets with residual blocks."""
  c = plan.candidates(5, 256, 8, blocks=True)
  assert c[0] == (Layout(5, 1), "vmap")             # small nets: the nets axis
  assert c[1] == (Layout(1, 8), "vmap")             # least work: 5 x 32 images per device
  assert (Layout(1, 8), "map") in c and c[-1] == (Layout(1, 8, remat=True), "map")
  assert plan.candidates(1, 256, 8)[0] == (Layout(1, 8), "vmap")    # one net: data axis
  assert not any(lay.remat for lay, _ in plan.candidates(1, 256, 8, blocks=False))
  # a data axis of 2 leaves 4 devices for 5 nets: 2 per device on 3 of them
  assert plan.candidates(5, 256, 8, data_axis=2, remat="off") == [(Layout(3, 2), "vmap")]
  assert all(lay.remat for lay, _ in plan.candidates(1, 256, 8, remat="on", blocks=True))
  with pytest.raises(ConfigError):
    plan.candidates(1, 256, 8, remat="on", blocks=False)
  with pytest.raises(ConfigError):
    plan.candidates(1, 256, 8, data_axis=9)


# ------------------------------------------------------------------------------ the plan

def test_many_small_nets_on_the_nets_axis_one_net_on_the_data_axis():
  """Shape-only plans on 8 fake devices: 5 small MLPs take the nets axis, one net with a
  large batch the data axis; bytes per device fall with the split."""
  net = _net(MLP(), (6, 6, 1))
  many = _plan(net, (6, 6, 1), nets=5, num_train=500, num_test=100, devices=8, budget=2 ** 30)
  one = _plan(net, (6, 6, 1), nets=1, batch=256, num_train=500, num_test=100, devices=8,
              budget=2 ** 30)
  assert (many.layout, many.vectorize, many.fits) == (Layout(5, 1), "vmap", True)
  assert (one.layout, one.fits) == (Layout(1, 8), True) and one.compiles == 2
  single = _plan(net, (6, 6, 1), nets=1, batch=256, num_train=500, num_test=100, devices=1,
                 budget=2 ** 30, flops=False)
  assert single.layout == Layout(1, 1)
  assert one.stats["temp_size_in_bytes"] < single.stats["temp_size_in_bytes"]
  assert one.stats["training_set_bytes"] * 8 >= single.stats["training_set_bytes"]
  assert one.stats["training_set_bytes"] < single.stats["training_set_bytes"] / 4


def test_a_budget_moves_the_split_then_remat(tmp_path):
  """4 ResNets on 4 devices: the default (one net per device, whole batch) does not fit a
  tight budget, every device on the data axis with one network at a time does; tighter
  still, rematerialised blocks (estimated on CPU, labelled so); below everything: does
  not fit, with a one-line note that names the protocol-changing option last."""
  net = _net(TinyResNet(), (16, 16, 3))
  kw = dict(nets=4, batch=64, num_train=256, num_test=0, devices=4, flops=False)
  free = _plan(net, (16, 16, 3), budget=2 ** 34, **kw)
  assert free.layout == Layout(4, 1) and free.fits and free.compiles == 1
  split = _plan(net, (16, 16, 3), budget=int(free.per_device_bytes * 0.7), **kw)
  assert (split.layout, split.vectorize) == (Layout(1, 4), "map") and split.fits
  assert split.per_device_bytes < free.per_device_bytes
  saving = (plan.residual_bytes(net, 16, (16, 16, 3), None)
            - plan.residual_bytes(net, 16, (16, 16, 3), 1))
  assert 0 < saving < split.per_device_bytes
  remat = _plan(net, (16, 16, 3),
                budget=int((split.per_device_bytes - saving) / plan.SAFETY) + 1024, **kw)
  assert remat.layout == Layout(1, 4, remat=True) and remat.estimated
  assert remat.per_device_bytes == split.per_device_bytes - saving
  assert "estimated" in remat.note and remat.stats["remat_saving_bytes"] > 0
  none = _plan(net, (16, 16, 3), budget=1024, **kw)
  assert not none.fits and none.note.startswith("memory_budget_gb:")
  assert "changes the protocol" in none.note and "\n" not in none.note
  assert [t[0] for t in none.tried] == ["4x1", "1x4", "1x4 remat"]
  assert none.lines()[5].endswith("DOES NOT FIT (estimated, see note)")


def test_flops_per_step_epoch_and_run():
  """XLA's FLOPs of one step of an MLP are 2-3 forward passes (forward, backward without
  the input gradient of the first layer), times
  the networks; an epoch is images / batch steps (the partial batch pro rata); a run is
  epochs × passes."""
  net = _net(MLP(), (6, 6, 1))
  p = _plan(net, (6, 6, 1), nets=2, batch=64, num_train=100, num_test=0, devices=1,
            budget=2 ** 30)
  forward = 2 * (36 * 32 + 32 * 10) * 64
  assert 2.0 * forward < p.flops_per_step / 2 < 8 * forward
  assert p.flops_per_epoch == pytest.approx(p.flops_per_step * 100 / 64)
  assert p.flops_per_run == pytest.approx(p.flops_per_epoch * p.settings.passes)
  out = p.summary()
  assert out["flops_per_run"] == p.flops_per_run and out["steps_per_epoch"] == 100 / 64
  assert any(line.startswith("  flops:") for line in p.lines())


def test_evaluate_plan_cli_reads_no_data(tmp_path):
  """`python -m jaxcond.evaluate --plan --devices 4`: the block and a last-line JSON, no
  --workdir, nothing read from the data folder."""
  empty = tmp_path / "data"
  empty.mkdir()
  env = dict(os.environ, JAXCOND_DATA_DIR=str(empty), JAX_PLATFORMS="cpu",
             PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  cmd = [sys.executable, "-m", "jaxcond.evaluate", "--config",
         "experiments/quickstart.py:method=dm,ipc=10", "--plan", "--devices", "4",
         "--config.memory_budget_gb=1", "--config.eval.num_nets=1",
         "--config.eval.model=convnetd1"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  out = json.loads(lines[-1])
  assert out["fits"] is True and out["devices"] == 4 and out["budget_bytes"] == 2 ** 30
  assert (out["nets_axis"], out["data_axis"]) == (1, 4) and out["model"] == "convnetd1"
  assert out["num_train"] == 100 and out["num_test"] == 355 and out["passes"] == 101
  assert 0 < out["per_device_bytes"] <= out["budget_bytes"]
  assert out["flops_per_run"] == pytest.approx(out["flops_per_epoch"] * 101)
  assert lines[0].startswith("evaluation memory plan, per device (4 of 4 device(s)")
  assert not any(empty.iterdir())


def test_condense_plan_reports_flops_per_run():
  """condense --plan: flops_per_run = flops_per_step × config.steps, in the block too."""
  c = load_experiment("quickstart.py:method=dm,ipc=2")
  for key, value in {"batch_real": 8, "model.width": 8, "steps": 7,
                     "memory_budget_gb": 1.0}.items():
    configs.set_field(c, key, value, source="test")
  lines = []
  out = cplan.run_plan(c, 1, log=lines.append)
  assert out["steps"] == 7 and out["flops_per_step"] > 0
  assert out["flops_per_run"] == pytest.approx(7 * out["flops_per_step"])
  assert any(line.startswith("  flops:") and "per run (7 steps)" in line for line in lines)
