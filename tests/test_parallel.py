"""Class-axis sharding: mesh helpers, padding, and 1 device == 8 devices for the step."""
import functools
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import parallel, steps
from jaxcond.data import bank as bank_lib
from jaxcond.errors import ConfigError


def test_mesh_and_padding():
  assert len(jax.devices()) == 8
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("classes",) and mesh.size == 8
  assert parallel.padded_num_classes(10, mesh) == 16
  assert parallel.padded_num_classes(100, mesh) == 104
  assert parallel.padded_num_classes(8, mesh) == 8
  assert parallel.padded_num_classes(10, parallel.make_mesh(1)) == 10
  ids = parallel.padded_class_ids(10, mesh)
  assert ids.tolist() == list(range(10)) + [-1] * 6
  assert parallel.local_slots(10, mesh) == (0, 16)
  assert parallel.local_classes(10, mesh).tolist() == list(range(10))
  assert tuple(parallel.class_sharding(mesh, 3).spec) == ("classes", None, None)
  assert tuple(parallel.replicated(mesh).spec) == ()
  with pytest.raises(ConfigError, match="num_devices"):
    parallel.make_mesh(9)


def test_global_from_local_and_to_host():
  mesh = parallel.make_mesh(4)
  x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  g = parallel.global_from_local(x, mesh, x.shape)
  assert tuple(g.sharding.spec) == ("classes", None)
  assert len(g.addressable_shards) == 4
  np.testing.assert_array_equal(parallel.to_host(g), x)
  assert parallel.host_allgather(np.int32(3)).tolist() == [3]
  assert not parallel.initialize_distributed(None, None, None)   # single process: no-op


def _tiny_settings(method, **kw):
  base = dict(method=method, seed=3, num_classes=10, image_shape=(8, 8, 1), mean=(0.3,),
              std=(0.4,), ipc=2, batch_real=6, model_name="convnetd2",
              model_overrides=(("width", 8),))
  if method == "m3d":
    base.update(factor=2, space="unit", lr=5.0, aug_policy="idc",
                aug_strategy="color_crop_cutout", ipm=2, step_mode="per_class",
                batch_syn_max=6)
  if method == "ddm":
    base.update(ipc=3, mm_weight=10.0, icd_weight=1.0)
  base.update(kw)
  return steps.StepSettings(**base)


def _fake_data(num_classes=10, per_class=12, seed=0):
  r = np.random.default_rng(seed)
  images = r.integers(0, 256, (num_classes * per_class - 3, 8, 8, 1), dtype=np.uint8)
  labels = np.repeat(np.arange(num_classes), per_class)[:-3].astype(np.int32)
  return images, labels


def run_steps(s, num_devices, num_steps=3, init="real"):
  """The jitted bank step on a `num_devices` mesh; returns the real classes' pixels."""
  mesh = parallel.make_mesh(num_devices)
  c_pad = parallel.padded_num_classes(s.num_classes, mesh)
  images, labels = _fake_data(s.num_classes)
  bank = bank_lib.build_bank(images, labels, s.num_classes, pad_to=c_pad,
                             sharding=parallel.class_sharding(mesh, 5))
  sharding = functools.partial(parallel.class_sharding, mesh)
  syn = jax.jit(steps.init_synthetic(s, init, bank_lib.sample_real),
                out_shardings=sharding(5))(bank)
  syn0 = np.asarray(syn)[:s.num_classes]
  state = steps.init_state(s, syn)
  fn = jax.jit(steps.make_bank_step(s, bank_lib.sample_real, sharding), donate_argnums=(0,))
  losses = []
  for i in range(num_steps):
    state, m = fn(state, bank, jnp.int32(i))
    losses.append(float(m["loss"]))
    assert bool(m["finite"])
  assert state["syn"].sharding.spec[0] == "classes"
  return np.asarray(state["syn"])[:s.num_classes], np.asarray(losses), syn0


@pytest.mark.parametrize("method", [
    "dm", "m3d", pytest.param("ddm", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_one_device_equals_eight(method):
  s = _tiny_settings(method)
  x1, l1, x0 = run_steps(s, 1)
  x8, l8, _ = run_steps(s, 8)               # 10 classes padded to 16 on 8 devices
  assert x1.shape == (10, s.ipc, 8, 8, 1)
  np.testing.assert_allclose(l1, l8, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(x1, x8, rtol=1e-4, atol=1e-5)
  assert np.abs(x1 - x0).max() > 1e-3       # the pixels moved: equality is not vacuous


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", "ddm"])
def test_batch_norm_stats_exclude_padded_classes(method):
  # Batch-norm statistics span the whole batch: on 8 devices the 6 dummy classes that pad
  # 10 to 16 would shift them unless they are kept out of the forward.
  s = _tiny_settings(method, model_overrides=(("norm", "batch"), ("width", 8)))
  x1, l1, x0 = run_steps(s, 1)
  x8, l8, _ = run_steps(s, 8)
  np.testing.assert_allclose(l1, l8, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(x1, x8, rtol=1e-4, atol=1e-5)
  assert np.abs(x1 - x0).max() > 1e-3


def test_auto_coordinator_without_a_cluster_is_one_line(tmp_path):
  """`--coordinator_address=auto` asks JAX to detect the cluster (TPU slice, SLURM, ...);
  with none it is a one-line ConfigError (in a subprocess: it touches the runtime)."""
  code = ("from jaxcond import parallel\n"
          "from jaxcond.errors import ConfigError\n"
          "try:\n"
          "  parallel.initialize_distributed('auto')\n"
          "except ConfigError as e:\n"
          "  print(e)\n")
  env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1]),
         "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120).stdout
  assert out.startswith("coordinator_address: auto found no cluster to join ("), out
