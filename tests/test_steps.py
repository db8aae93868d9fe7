"""jaxcond.steps: the memory layout (class groups, real chunks) changes no value; the M3D
per-class closed form equals the literal scan over classes."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import parallel, steps
from jaxcond.data import bank as bank_lib
from test_parallel import _tiny_settings, run_steps


def _assert_same(whole, other):
  (x_w, l_w, x0), (x_o, l_o, _) = whole, other
  np.testing.assert_allclose(l_w, l_o, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(x_w, x_o, rtol=1e-4, atol=1e-5)
  assert np.abs(x_w - x0).max() > 1e-3      # the pixels moved: equality is not vacuous


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", pytest.param("ddm", marks=pytest.mark.slow)])
def test_real_chunks_equal_whole_batch(method):
  """Real images streamed in chunks (images per class × classes per device) change no
  result, also sharded over 8 devices; DDM covers the streamed batch-mean taps."""
  s = _tiny_settings(method)
  whole = run_steps(s, 1)
  _assert_same(whole, run_steps(dataclasses.replace(s, real_chunk=2), 8))   # 3 chunks
  _assert_same(whole, run_steps(dataclasses.replace(s, real_chunk=3, real_cpg=3), 1))
  # 8 devices: 2 local classes, groups of 1 class x 2 images
  _assert_same(whole, run_steps(dataclasses.replace(s, real_chunk=2, real_cpg=1), 8))


@pytest.mark.parametrize("method,unroll", [
    ("dm", False), ("dm", True), ("m3d", False),
    pytest.param("ddm", False, marks=pytest.mark.slow)])
@pytest.mark.slow
def test_syn_groups_equal_one_group(method, unroll):
  """The gradient taken class group by class group in a lax.scan changes no result, also
  with the padded classes of 8 devices and a group size that does not divide the local
  classes (3 of 10); M3D covers the per-class closed form, DDM the taps and ICD."""
  s = _tiny_settings(method)
  whole = run_steps(s, 1)
  for devices, cpg in ((1, 3), (8, 1)):
    grouped = dataclasses.replace(s, syn_cpg=cpg, real_cpg=cpg, syn_unroll=unroll)
    _assert_same(whole, run_steps(grouped, devices))


def test_group_layout_round_trip_is_local():
  """to_groups / from_groups invert each other, every group holds classes of every device,
  and the sharded version compiles to no collective (nothing crosses devices)."""
  mesh = parallel.make_mesh(4)
  sharding = lambda nd: parallel.class_sharding(mesh, nd)
  x = jnp.arange(12 * 2, dtype=jnp.float32).reshape(12, 2)      # 3 classes per device
  g = steps.to_groups(x, 4, 2, fill=-1)                           # 2 groups, 1 padded slot
  assert g.shape == (2, 8, 2)
  assert g[0, :, 0].tolist() == [0, 2, 6, 8, 12, 14, 18, 20]      # classes 0,1 | 3,4 | ...
  assert g[1, 1, 0] == -1                                         # padding slot
  np.testing.assert_array_equal(steps.from_groups(g, 4, 3), x)
  f = jax.jit(lambda a: steps.from_groups(steps.to_groups(a, 4, 2, sharding) * 2, 4, 3,
                                          sharding), in_shardings=sharding(2),
              out_shardings=sharding(2))
  hlo = f.lower(x).compile().as_text()
  for op in ("all-gather", "all-to-all", "collective-permute", "all-reduce"):
    assert op not in hlo, op
  np.testing.assert_array_equal(f(x), 2 * x)


# ------------------------------------------------------------------ M3D closed form

def _m3d_setup(step_mode="per_class", num_classes=4):
  s = steps.StepSettings(
      method="m3d", seed=1, num_classes=num_classes, image_shape=(8, 8, 1), mean=(0.3,),
      std=(0.4,), ipc=2, batch_real=6, model_name="convnetd2", model_overrides=(("width", 8),),
      factor=2, space="unit", lr=20.0, momentum=0.5, batch_syn_max=6, aug_policy="idc",
      aug_strategy="color_crop_cutout", ipm=2, step_mode=step_mode)
  r = np.random.default_rng(0)
  images = r.integers(0, 256, (num_classes * 10, 8, 8, 1), dtype=np.uint8)
  labels = np.repeat(np.arange(num_classes), 10).astype(np.int32)
  bank = bank_lib.build_bank(images, labels, num_classes)
  syn = jax.jit(steps.init_synthetic(s, "mix", bank_lib.sample_real))(bank)
  return s, bank, steps.init_state(s, syn)


@pytest.mark.slow
@pytest.mark.parametrize("cpg", [0, 3])
def test_m3d_per_class_closed_form_equals_sequential_scan(cpg):
  """Also with the gradient taken in class groups (3 of 4 classes, padded)."""
  s, bank, state = _m3d_setup()
  closed = jax.jit(steps.make_bank_step(dataclasses.replace(s, syn_cpg=cpg),
                                        bank_lib.sample_real))
  seq = jax.jit(steps.m3d_sequential_step(s))
  a, b = state, state
  for i in range(3):
    real = bank_lib.sample_real(bank, steps.rng.step_key(s.seed, i, steps.rng.REAL), s.batch_real)
    a, _ = closed(a, bank, jnp.int32(i))
    b = seq(b, real, bank.class_ids, jnp.int32(i))
    np.testing.assert_allclose(a["syn"], b["syn"], rtol=1e-4, atol=1e-4)   # lr 20 x float noise
    np.testing.assert_allclose(steps._momentum_buffer(a["opt"]),
                               steps._momentum_buffer(b["opt"]), rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(a["syn"]) - np.asarray(state["syn"])).max() > 1e-2
  # The joint mode (one step on the summed loss) is a different algorithm.
  sj, _, _ = _m3d_setup("joint")
  joint = jax.jit(steps.make_bank_step(sj, bank_lib.sample_real))
  c = state
  for i in range(3):
    c, _ = joint(c, bank, jnp.int32(i))
  assert np.abs(np.asarray(c["syn"]) - np.asarray(a["syn"])).max() > 1e-4


def test_m3d_per_class_on_a_class_subset_equals_sequential_scan():
  """A bank of a class subset (continual learning: ids 5, 2, 7 in slots 0-2) takes its
  momentum turns by slot, as the literal scan does; ids past num_classes once broke it."""
  s, _, _ = _m3d_setup(num_classes=3)
  r = np.random.default_rng(1)
  images = r.integers(0, 256, (80, 8, 8, 1), dtype=np.uint8)
  labels = np.repeat(np.arange(8), 10).astype(np.int32)
  bank = bank_lib.build_bank(images, labels, 8, classes=[5, 2, 7])
  np.testing.assert_array_equal(bank.class_ids, [5, 2, 7])
  state = steps.init_state(s, jax.jit(steps.init_synthetic(s, "mix", bank_lib.sample_real))(bank))
  closed = jax.jit(steps.make_bank_step(s, bank_lib.sample_real))
  seq = jax.jit(steps.m3d_sequential_step(s))
  a, b = state, state
  for i in range(2):
    real = bank_lib.sample_real(bank, steps.rng.step_key(s.seed, i, steps.rng.REAL), s.batch_real)
    a, _ = closed(a, bank, jnp.int32(i))
    b = seq(b, real, bank.class_ids, jnp.int32(i))
    np.testing.assert_allclose(a["syn"], b["syn"], rtol=1e-4, atol=1e-4)
  assert np.isfinite(np.asarray(a["syn"])).all()
  assert np.abs(np.asarray(a["syn"]) - np.asarray(state["syn"])).max() > 1e-2
