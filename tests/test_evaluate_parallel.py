"""Data-parallel evaluation (jaxcond.evaluate.execution): a network's batch split over the
mesh's data axis is the one-device maths; BatchNorm statistics are global; rematerialised
blocks give the same result; the default layout; several processes equal one."""
import json
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcond import backend
from jaxcond import evaluate as ev
from jaxcond.evaluate import execution, plan
from jaxcond.evaluate.execution import Layout
from jaxcond.nets.resnet import ResNet

from conftest import communicate, start_processes, subprocess_env
from evalnets import TinyBN as BN
from evalnets import TinyMLP as MLP
from evalnets import net_fns as _net
from evalnets import random_data as _data

ROOT = pathlib.Path(__file__).resolve().parents[1]


class TinyResNet(nn.Module):
  """A two-block jaxcond ResNet (the BasicBlocks `remat_blocks` rematerialises)."""
  norm: str = "instance"

  @nn.compact
  def __call__(self, x, train=False):
    out, _ = ResNet(num_classes=10, stage_sizes=(1, 1), widths=(4, 8), norm=self.norm)(
        x, train=train)
    return out


def _close(a, b, tol=2e-6):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- one step


@pytest.mark.parametrize("protocol,module", [
    pytest.param("dm", MLP, marks=pytest.mark.slow), ("dm", BN), ("idc", BN)])
def test_split_batch_loss_and_gradients_equal_one_device(protocol, module):
  """The loss and gradients of one step with the batch on an 8-device data axis are the
  one-device values (jit + NamedSharding: XLA reduces across devices), with DSA and, under
  idc, CutMix's partner gather across shards."""
  net = _net(module(), (6, 6, 1))
  s = ev.EvalSettings.for_protocol(protocol, batch_size=32, strategy="crop_flip_scale")
  x, y = _data(32)
  state = ev.init_state(net, jax.random.key(0))
  key = jax.random.key(5)
  mesh = execution.eval_mesh(Layout(1, 8))
  shard = lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P("data")))
  one = jax.jit(lambda st, x, y: ev.loss_and_grads(net, s, st, x, y, key))
  split = jax.jit(lambda st, x, y: ev.loss_and_grads(net, s, st, x, y, key, shard))
  hlo = split.lower(state, x, y).compile().as_text()
  assert "all-reduce" in hlo          # really partitioned: the reductions cross devices
  (l1, stats1, g1), (l8, stats8, g8) = one(state, x, y), split(state, x, y)
  np.testing.assert_allclose(float(l8), float(l1), rtol=1e-6)
  _close(g8, g1)
  if stats1 is not None:
    _close(stats8, stats1)


def test_batchnorm_statistics_are_those_of_the_whole_batch():
  """Split over 8 devices (4 images each), BatchNorm's new running statistics equal the
  momentum update with the mean / unbiased variance of the WHOLE batch of 32, not the
  per-device ones: the protocol's statistics."""
  net = _net(BN(), (6, 6, 1))
  s = ev.EvalSettings.for_protocol("dm", batch_size=32, strategy="none")
  x, y = _data(32)
  state = ev.init_state(net, jax.random.key(0))
  mesh = execution.eval_mesh(Layout(1, 8))
  shard = lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P("data")))
  _, stats, _ = jax.jit(lambda st: ev.loss_and_grads(net, s, st, x, y, jax.random.key(1),
                                                     shard))(state)
  h = x.reshape(32, -1) @ np.asarray(state["params"]["Dense_0"]["kernel"]) + np.asarray(
      state["params"]["Dense_0"]["bias"])
  np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], 0.1 * h.mean(0), rtol=1e-4,
                             atol=1e-6)
  # flax keeps the biased variance for the running average (torch the unbiased): either
  # way a per-device statistic would differ by far more than this tolerance
  np.testing.assert_allclose(stats["BatchNorm_0"]["var"], 0.9 + 0.1 * h.var(0), rtol=1e-4)
  per_device = np.stack([h[i * 4:(i + 1) * 4].var(0) for i in range(8)]).mean(0)
  assert np.max(np.abs((0.9 + 0.1 * per_device) - (0.9 + 0.1 * h.var(0)))) > 1e-3


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
@pytest.mark.parametrize("loop,vectorize", [("host", "unroll"), ("device", "vmap")])
def test_split_training_equals_one_device(loop, vectorize):
  """Two passes (full batches and a partial last one) of 2 networks: layouts 1x8 and 2x3
  (uneven shards: 16 images over 3 devices) train the one-device networks."""
  s = ev.EvalSettings.for_protocol("dm", epochs=1, batch_size=16, num_nets=2,
                                   strategy="crop_flip", eval_every_epochs=1)
  net = _net(BN(), (6, 6, 1))
  x, y = _data(40)
  xt, yt = _data(30, seed=1)
  runs = {lay: ev.train_and_test(net, x, y, xt, yt, settings=s, seed=3, layout=lay,
                                 loop=loop, vectorize=vectorize, return_states=True)
          for lay in (Layout(1, 1), Layout(1, 8), Layout(2, 3))}
  ref = runs[Layout(1, 1)]
  for lay, out in runs.items():
    assert out["layout"] == {"nets": lay.nets, "data": lay.data, "remat": False}
    _close(out["states"], ref["states"], 1e-5)
    assert out["checkpoint_accuracies"] == ref["checkpoint_accuracies"]


@pytest.mark.slow
def test_split_training_equals_one_device_ncfm_and_per_net_sets():
  """AdamW (ncfm) with CutMix, and per-network training sets, on a 2x4 mesh."""
  s = ev.EvalSettings.for_protocol("ncfm", epochs=2, batch_size=16, num_nets=2,
                                   strategy="crop_flip", eval_every_epochs=1)
  net = _net(MLP(), (6, 6, 1))
  x, y = _data(40)
  xt, yt = _data(30, seed=1)
  for xs, ys in ((x, y), (np.stack([x, x + 0.5]), np.stack([y, y]))):
    one, split = (ev.train_and_test(net, xs, ys, xt, yt, settings=s, seed=3, layout=lay,
                                    return_states=True)
                  for lay in (Layout(1, 1), Layout(2, 4)))
    _close(split["states"]["params"], one["states"]["params"], 1e-5)
    assert split["checkpoint_accuracies"] == one["checkpoint_accuracies"]


# ----------------------------------------------------------------------------- remat


@pytest.mark.parametrize("norm", ["instance", pytest.param("batch", marks=pytest.mark.slow)])
def test_rematerialised_blocks_give_the_same_step(norm):
  """`remat_net` (jax.checkpoint on every BasicBlock) changes what is kept for the backward
  pass, not the values: same loss, gradients and BatchNorm statistics; fewer residuals."""
  net = _net(TinyResNet(norm), (8, 8, 3))
  s = ev.EvalSettings.for_protocol("dm", batch_size=16, strategy="none")
  rs = np.random.RandomState(0)
  x = rs.randn(16, 8, 8, 3).astype(np.float32)
  y = (np.arange(16) % 10).astype(np.int32)
  state = ev.init_state(net, jax.random.key(0))
  outs = [jax.jit(lambda st, n=n: ev.loss_and_grads(n, s, st, x, y, jax.random.key(1)))(state)
          for n in (net, ev.remat_net(net))]
  np.testing.assert_allclose(float(outs[1][0]), float(outs[0][0]), rtol=1e-6)
  _close(outs[1][1:], outs[0][1:], 1e-5)
  assert "remat" in str(jax.make_jaxpr(
      lambda st: ev.loss_and_grads(ev.remat_net(net), s, st, x, y, jax.random.key(1)))(state))
  assert plan.net_has_blocks(net, (8, 8, 3)) and not plan.net_has_blocks(
      _net(MLP(), (6, 6, 1)), (6, 6, 1))
  kept = [plan.residual_bytes(net, 16, (8, 8, 3), skip) for skip in (None, 1, 0)]
  assert kept[0] > kept[1] > kept[2]      # none > all but the first block > every block


@pytest.mark.slow
def test_remat_layout_trains_the_same_networks():
  s = ev.EvalSettings.for_protocol("dm", epochs=1, batch_size=8, num_nets=1, strategy="none")
  net = _net(TinyResNet(), (8, 8, 3))
  rs = np.random.RandomState(1)
  x = rs.randn(16, 8, 8, 3).astype(np.float32)
  y = (np.arange(16) % 10).astype(np.int32)
  one, remat = (ev.train_and_test(net, x, y, x[:8], y[:8], settings=s, seed=0, layout=lay,
                                  return_states=True)
                for lay in (Layout(1, 1), Layout(1, 2, remat=True)))
  _close(remat["states"]["params"], one["states"]["params"], 1e-5)


# ----------------------------------------------------------------------------- layouts


def test_default_layout_nets_axis_first_then_data_axis():
  """Many small networks go on the nets axis; one network's batch on the data axis (on
  accelerators; the CPU policy keeps the nets axis only)."""
  assert execution.default_layout(5, 256, 8, "accelerator") == Layout(5, 1)
  assert execution.default_layout(16, 256, 8, "accelerator") == Layout(8, 1)
  assert execution.default_layout(1, 256, 8, "accelerator") == Layout(1, 8)
  assert execution.default_layout(2, 256, 8, "accelerator") == Layout(2, 4)
  assert execution.default_layout(1, 64, 8, "accelerator") == Layout(1, 4)   # >= 16 each
  assert execution.default_layout(1, 256, 8, "cpu") == Layout(1, 1)
  assert execution.default_layout(3, 256, 8, "cpu") == Layout(3, 1)
  with backend.force("cpu"):
    lay, vec = plan.choose(ev.EvalSettings.for_protocol("dm", num_nets=1), model="mlp",
                           net=_net(MLP(), (6, 6, 1)), num_classes=10, image_shape=(6, 6, 1),
                           num_train=40, num_test=10, num_nets=1, data_axis=4)
  assert lay == Layout(2, 4) or lay == Layout(1, 4)
  assert lay.data == 4 and vec is None


# ----------------------------------------------------------------------------- processes

def _eval_args(workdir, npz, data_axis=4):
  return [sys.executable, "-m", "jaxcond.evaluate", "--config", "experiments/quickstart.py",
          "--workdir", str(workdir), "--synthetic", str(npz), f"--data_axis={data_axis}",
          "--config.eval.num_nets=1", "--config.eval.epochs=3", "--config.eval.batch_size=16",
          "--config.eval.model=convnetd1"]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
  """`evaluate` on 2 processes × 2 CPU devices (gloo), the batch on a 4-device data axis
  across both hosts, each host holding its shard of the training set: the accuracy of
  one process with 4 devices, and (to one test image) of one device."""
  rs = np.random.RandomState(0)
  npz = tmp_path / "synthetic.npz"
  np.savez(npz, x=rs.randn(30, 8, 8, 1).astype(np.float32),
           y=np.repeat(np.arange(10), 3).astype(np.int32), mean=np.array([0.3052], np.float32),
           std=np.array([0.3760], np.float32), factor=np.array(1), space="normalized",
           method="dm", dataset="digits")
  for name, devices, data_axis in (("single", 4, 4), ("one", 1, 1)):
    proc = subprocess.run(_eval_args(tmp_path / name, npz, data_axis), cwd=ROOT,
                          env=subprocess_env(devices), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
  procs = start_processes([_eval_args(tmp_path / "multi", npz)] * 2)
  outs = [out + err for out, err in communicate(procs)]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  res = {k: json.loads((tmp_path / k / "results.json").read_text())
         for k in ("single", "multi", "one")}
  assert res["multi"]["process_count"] == 2 and res["single"]["process_count"] == 1
  assert res["multi"]["results"]["convnetd1"]["layout"] == {"nets": 1, "data": 4,
                                                            "remat": False}
  assert res["multi"]["accuracies"] == pytest.approx(res["single"]["accuracies"], abs=1e-9)
  one_image = 100.0 / res["one"]["num_test"]
  assert res["multi"]["accuracies"] == pytest.approx(res["one"]["accuracies"],
                                                     abs=one_image + 1e-9)
  assert "evaluate:" not in outs[1] and "evaluate:" in outs[0]   # process 0 reports
