"""jaxcond.steps: the memory layout (class groups, real chunks, NCFM frequency chunks)
changes no value; the M3D per-class closed form equals the literal scan over classes; a
pool net is the blend of one net's initial and final weights; calibration, AdamW and the
plateau schedule follow their references."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcond import nets, parallel, plan, steps
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


# ------------------------------------------------------------------ pools, NCFM, optimisers

def _ncfm_settings(**kw):
  base = dict(method="ncfm", seed=2, num_classes=4, image_shape=(8, 8, 1), mean=(0.3,),
              std=(0.4,), ipc=2, batch_real=6, model_name="convnetd2",
              model_overrides=(("width", 8),), space="unit", optimizer="adamw", lr=0.01,
              weight_decay=5e-4, plateau_patience=2, aug_policy="idc",
              aug_strategy="color_crop_cutout", num_freqs=300)
  base.update(kw)
  return steps.StepSettings(**base)


def _bank(num_classes=4, per_class=10, seed=0):
  r = np.random.default_rng(seed)
  images = r.integers(0, 256, (num_classes * per_class, 8, 8, 1), dtype=np.uint8)
  labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
  return images, labels


def _pool(s, n=3, seed=0):
  """n nets: init = a fresh PyTorch init, final = another one (stands in for training)."""
  model = steps.make_model(s)
  draw = lambda k: nets.init_variables(model, jax.random.key(k), s.image_shape)
  stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)
  return {"init": stack([draw(seed + i) for i in range(n)]),
          "final": stack([draw(seed + 100 + i) for i in range(n)])}


def test_pool_net_is_the_blend_of_one_nets_init_and_final():
  s = _ncfm_settings(pool_size=3, ipm=2)
  pool = _pool(s)
  seen = set()
  for step in range(16):
    i, l = steps.pool_choice(jnp.int32(step), s)
    i, l = int(i), float(l)
    assert 0 <= i < 3 and 0.0 <= l < 1.0
    seen.add(i)
    v, final = steps.pool_net_variables(pool, jnp.int32(step), s)
    want = jax.tree.map(lambda a, b: l * a[i] + (1 - l) * b[i], pool["init"]["params"],
                        pool["final"]["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 v["params"], want)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[i]), final["params"],
                 pool["final"]["params"])
    # ipm: the same net and l for the steps of one net period (M3D's cadence)
    j, m = steps.pool_choice(jnp.int32(step // 2 * 2 + 1), s)
    assert (int(j), float(m)) == (i, l)
  assert len(seen) > 1


@pytest.mark.slow
def test_pool_of_one_fixed_net_equals_that_random_net():
  """A pool whose nets are all (init = final) the step's random net gives the random-net
  step: the pool path embeds with the blended weights and nothing else changes."""
  s = _ncfm_settings(method="dm", optimizer="sgd", lr=1.0, momentum=0.5, weight_decay=0.0,
                     plateau_patience=0, space="normalized", aug_policy="dm",
                     aug_strategy="color_crop_cutout_scale_rotate")
  sp = dataclasses.replace(s, pool_size=2)
  model = steps.make_model(s)
  v = steps.random_net_variables(model, jnp.int32(0), s)
  pool = {k: jax.tree.map(lambda a: jnp.stack([a, a]), v) for k in ("init", "final")}
  images, labels = _bank()
  bank = bank_lib.build_bank(images, labels, 4)
  syn = jax.jit(steps.init_synthetic(s, "real", bank_lib.sample_real))(bank)
  a, ma = jax.jit(steps.make_bank_step(s, bank_lib.sample_real))(
      steps.init_state(s, syn), bank, jnp.int32(0))
  b, mb = jax.jit(steps.make_bank_step(sp, bank_lib.sample_real))(
      steps.init_state(sp, syn), bank, pool, jnp.int32(0))
  np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
  np.testing.assert_allclose(a["syn"], b["syn"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_calibration_adds_the_final_nets_cross_entropy():
  s = _ncfm_settings(pool_size=3, calib_weight=2.0)
  model = steps.make_model(s)
  pool = _pool(s)
  images, labels = _bank()
  bank = bank_lib.build_bank(images, labels, 4)
  syn = jax.jit(steps.init_synthetic(s, "real", bank_lib.sample_real))(bank)
  real = bank_lib.sample_real(bank, jax.random.key(0), s.batch_real)
  ids, step = bank.class_ids, jnp.int32(5)

  @functools.partial(jax.jit, static_argnums=0)
  def losses(settings, syn, real):
    v, final = steps.pool_net_variables(pool, step, settings)
    feats, _ = steps.real_features(model, v, real, ids, step, settings)
    total, terms = steps.class_losses(model, v, syn, feats, None, ids, step, settings,
                                      final=final)
    # the calibration term by hand: mean CE of each class's images under the final weights
    keys = steps.rng.class_keys(steps.rng.step_key(settings.seed, step, steps.rng.CALIB), ids)
    x = steps._augment(steps.synthetic_batch(syn, ids, step, settings), keys, settings)
    out = jax.vmap(lambda xc: nets.logits(model, final, xc, train=False)[0])(x)
    logp = jax.nn.log_softmax(out)
    ce = -jnp.mean(jnp.take_along_axis(logp, ids[:, None, None], axis=-1)[..., 0], axis=-1)
    return total, terms, ce

  total, terms, ce = losses(s, syn, real)
  assert set(terms) == {"ncfm", "calib"}
  np.testing.assert_allclose(total, terms["ncfm"] + 2.0 * terms["calib"], rtol=1e-6)
  np.testing.assert_allclose(terms["calib"], ce, rtol=1e-5)
  # without a pool there is no trained net: the weight is not read
  _, terms0, _ = losses(dataclasses.replace(s, pool_size=0), syn, real)
  assert set(terms0) == {"ncfm"}


def test_ncfm_frequency_and_sample_chunks_change_no_value():
  """Frequencies drawn block by block inside the scan equal the whole draw (300 = one
  full 256-block chunk + a 44-frequency tail), with samples chunked too."""
  s = _ncfm_settings()
  r = np.random.default_rng(0)
  real = jnp.asarray(r.normal(size=(4, 6, 16)), jnp.float32)
  syn = jnp.asarray(r.normal(size=(4, 3, 16)), jnp.float32)
  ids = jnp.arange(4, dtype=jnp.int32)
  whole = steps.ncfm_objective(real, syn, ids, jnp.int32(3), s)
  for fc, sc in ((256, 0), (512, 0), (256, 4)):
    part = steps.ncfm_objective(real, syn, ids, jnp.int32(3),
                                dataclasses.replace(s, freq_chunk=fc, sample_chunk=sc))
    np.testing.assert_allclose(part, whole, rtol=2e-5)
  # the frequencies are N(0, I), one set per class, fresh per step
  keys = steps.rng.class_keys(steps.rng.step_key(s.seed, 3, steps.rng.FREQ), ids)
  t = np.asarray(steps.frequencies(keys, 0, 8, 16))
  assert t.shape == (4, 2048, 16) and abs(t.mean()) < 0.02 and abs(t.std() - 1) < 0.02
  assert not np.allclose(t[0], t[1])
  other = steps.ncfm_objective(real, syn, ids, jnp.int32(4), s)
  assert not np.allclose(other, whole)


def test_plateau_reduces_like_torch_after_the_step():
  """torch ReduceLROnPlateau(patience=2): steps 1-4 at lr (the 4th loss is the third
  without improvement, > patience), step 5 at lr/2; an improvement resets the count."""
  tx = steps.plateau_after_step(0.5, 2)
  st = tx.init(jnp.zeros(()))
  scales = []
  for value in (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5):
    u, st = tx.update(jnp.ones(()), st, None, value=jnp.float32(value))
    scales.append(float(u))
  assert scales == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5]


def test_adamw_is_torch_adamw():
  """Two steps against torch.optim.AdamW's update rule (decoupled decay, bias-corrected
  moments, eps outside the sqrt)."""
  s = _ncfm_settings(plateau_patience=0, lr=0.1, weight_decay=0.05)
  opt = steps.optimizer(s)
  x = jnp.asarray([1.0, -2.0, 0.5])
  st = opt.init(x)
  m = v = np.zeros(3)
  want = np.asarray(x, np.float64)
  for t, g in enumerate((np.array([0.3, -0.1, 0.0]), np.array([0.2, 0.4, -1.0])), 1):
    u, st = opt.update(jnp.asarray(g, jnp.float32), st, x)
    x = optax.apply_updates(x, u)
    want = want * (1 - 0.1 * 0.05)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    want = want - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


def _pool_run(s, num_devices, num_steps=3):
  """The bank step with a pool on a `num_devices` mesh (pool replicated, as condense)."""
  mesh = parallel.make_mesh(num_devices)
  c_pad = parallel.padded_num_classes(s.num_classes, mesh)
  images, labels = _bank(s.num_classes)
  bank = bank_lib.build_bank(images, labels, s.num_classes, pad_to=c_pad,
                             sharding=parallel.class_sharding(mesh, 5))
  sharding = functools.partial(parallel.class_sharding, mesh)
  syn = jax.jit(steps.init_synthetic(s, "real", bank_lib.sample_real),
                out_shardings=sharding(5))(bank)
  syn0 = np.asarray(syn)[:s.num_classes]
  pool = jax.device_put(_pool(s), parallel.replicated(mesh))
  state = jax.jit(lambda x: steps.init_state(s, x),
                  out_shardings=plan.state_shardings(s, mesh))(syn)
  fn = plan.build_step(s, mesh)
  losses = []
  for i in range(num_steps):
    state, m = fn(state, bank, pool, jnp.int32(i))
    losses.append(float(m["loss"]))
    assert bool(m["finite"])
  return np.asarray(state["syn"])[:s.num_classes], np.asarray(losses), syn0


@pytest.mark.slow
def test_ncfm_with_pool_and_calibration_one_device_equals_eight():
  """NCFM + pool + calibration + AdamW/plateau, sharded over 8 devices (4 classes padded
  to 8) and in class groups with chunked frequencies: the same result."""
  s = _ncfm_settings(pool_size=3, calib_weight=1.0)
  x1, l1, x0 = _pool_run(s, 1)
  x8, l8, _ = _pool_run(dataclasses.replace(s, syn_cpg=1, real_cpg=1, freq_chunk=256), 8)
  np.testing.assert_allclose(l1, l8, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(x1, x8, rtol=1e-4, atol=1e-5)
  assert np.abs(x1 - x0).max() > 1e-3


def test_pool_blend_takes_the_interpolation_apart():
  """pool.blend: uniform draws l ~ U(0, 1) from (seed, step); final / init fix l at 0 / 1,
  the same net index every time."""
  import dataclasses as dc
  base = steps.StepSettings(method="dm", seed=3, num_classes=2, image_shape=(8, 8, 1),
                            mean=(0.5,), std=(0.5,), ipc=1, batch_real=2, pool_size=5)
  ls = [float(steps.pool_choice(jnp.int32(t), base)[1]) for t in range(20)]
  assert 0.0 < min(ls) and max(ls) < 1.0 and len(set(ls)) == 20
  for blend, want in (("final", 0.0), ("init", 1.0)):
    s = dc.replace(base, pool_blend=blend)
    for t in range(5):
      i, l = steps.pool_choice(jnp.int32(t), s)
      assert float(l) == want and int(i) == int(steps.pool_choice(jnp.int32(t), base)[0])
