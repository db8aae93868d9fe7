"""Class bank: bucketing, in-jit sampling without replacement, sharding over 8 fake devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcond.data import (ClassBank, build_bank, check_batch, load_bank, local_class_slots,
                          normalize, sample_real)
from jaxcond.errors import ConfigError, DataError

COUNTS = [5, 8, 3, 12, 7, 9, 4, 6, 10, 11]
sample = jax.jit(sample_real, static_argnums=2)


def _tagged_split(counts=COUNTS, seed=0):
  """Image pixel (0,0) = class + 1, pixel (0,1) = index within class + 1; labels shuffled."""
  y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int32)
  np.random.default_rng(seed).shuffle(y)
  x = np.zeros((len(y), 4, 4, 1), np.uint8)
  for c in range(len(counts)):
    idx = np.flatnonzero(y == c)
    x[idx, 0, 0, 0] = c + 1
    x[idx, 0, 1, 0] = np.arange(len(idx)) + 1
  return x, y


def test_bucketing():
  x, y = _tagged_split()
  bank = build_bank(x, y, 10)
  assert isinstance(bank, ClassBank) and bank.images.dtype == jnp.uint8
  assert bank.images.shape == (10, 12, 4, 4, 1)
  assert bank.counts.tolist() == COUNTS and bank.class_ids.tolist() == list(range(10))
  imgs = np.asarray(bank.images)
  for c, n in enumerate(COUNTS):
    assert (imgs[c, :n, 0, 0, 0] == c + 1).all() and (imgs[c, n:] == 0).all()
    assert imgs[c, :n, 0, 1, 0].tolist() == list(range(1, n + 1))    # file order kept
  assert jax.tree_util.tree_structure(bank).num_leaves == 3


def test_purity_no_duplicates_unequal_sizes():
  x, y = _tagged_split()
  bank = build_bank(x, y, 10)
  check_batch(bank, 3)
  for step in range(20):
    s = np.asarray(sample(bank, jax.random.fold_in(jax.random.key(0), step), 3))
    assert s.shape == (10, 3, 4, 4, 1) and s.dtype == np.uint8
    for c, n in enumerate(COUNTS):
      assert (s[c, :, 0, 0, 0] == c + 1).all()                # class purity, never padding
      idx = s[c, :, 0, 1, 0]
      assert len(set(idx.tolist())) == 3 and idx.min() >= 1 and idx.max() <= n


def test_coverage_over_steps():
  x, y = _tagged_split()
  bank = build_bank(x, y, 10)
  seen = [set() for _ in COUNTS]
  hits = np.zeros(12)
  for step in range(60):
    s = np.asarray(sample(bank, jax.random.fold_in(jax.random.key(1), step), 3))
    for c in range(10):
      seen[c].update(s[c, :, 0, 1, 0].tolist())
    hits += np.bincount(s[3, :, 0, 1, 0] - 1, minlength=12)
  assert all(seen[c] == set(range(1, n + 1)) for c, n in enumerate(COUNTS))
  assert hits.min() > 0.4 * hits.mean()              # class 3 (12 images): roughly uniform


def test_batch_equal_to_class_size_is_a_permutation():
  x, y = _tagged_split()
  s = np.asarray(sample(build_bank(x, y, 10), jax.random.key(3), 3))
  assert sorted(s[2, :, 0, 1, 0].tolist()) == [1, 2, 3]        # class 2 has exactly 3


def test_check_batch_and_limits():
  x, y = _tagged_split()
  bank = build_bank(x, y, 10, pad_to=16)
  check_batch(bank, 3)
  with pytest.raises(ConfigError, match=r"batch_real: 4 exceeds the smallest class \(class 2 has 3 images\)"):
    check_batch(bank, 4)
  with pytest.raises(ConfigError, match="batch_real: expected a positive int"):
    check_batch(bank.counts, 0)
  with pytest.raises(ConfigError, match=r"batch_real: 13 must be in \[1, 12\]"):
    sample_real(bank, jax.random.key(0), 13)
  # Unchecked batch > count: the class's own images repeat, never zero padding.
  s = np.asarray(sample(bank, jax.random.key(0), 5))
  assert (s[2, :, 0, 0, 0] == 3).all() and set(s[2, :, 0, 1, 0].tolist()) == {1, 2, 3}


def test_determinism_and_global_class_keys():
  x, y = _tagged_split()
  full = build_bank(x, y, 10)
  key = jax.random.key(7)
  a, b = np.asarray(sample(full, key, 3)), np.asarray(sample(full, key, 3))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, np.asarray(sample(full, jax.random.key(8), 3)))
  # A bank holding only classes [7, 3] (per-host loading) draws what the full bank draws.
  sub = build_bank(x, y, 10, classes=[7, 3])
  assert sub.class_ids.tolist() == [7, 3] and sub.images.shape[1] == 12
  s = np.asarray(sample(sub, key, 3))
  np.testing.assert_array_equal(s[0], a[7])
  np.testing.assert_array_equal(s[1], a[3])


@pytest.mark.parametrize("axis_type", ["Explicit", "Auto"])
def test_sharded_over_8_devices_equals_unsharded(axis_type):
  assert jax.device_count() == 8
  x, y = _tagged_split()
  mesh = jax.make_mesh((8,), ("classes",), axis_types=(getattr(jax.sharding.AxisType, axis_type),))
  sharding = NamedSharding(mesh, P("classes"))
  bank = build_bank(x, y, 10, pad_to=16, sharding=sharding)
  assert bank.images.shape == (16, 12, 4, 4, 1)
  assert bank.class_ids.tolist() == list(range(10)) + [-1] * 6
  assert bank.counts.tolist() == COUNTS + [0] * 6
  for shard in bank.images.addressable_shards:                 # each device: only its 2 classes
    assert shard.data.shape == (2, 12, 4, 4, 1)
  ref = build_bank(x, y, 10)
  for step in range(3):
    key = jax.random.fold_in(jax.random.key(0), step)
    out = sample(bank, key, 3)
    assert tuple(out.sharding.spec)[0] == "classes"
    got = np.asarray(out)
    np.testing.assert_array_equal(got[:10], np.asarray(sample(ref, key, 3)))
    assert (got[10:] == 0).all()                               # dummy classes are zeros
  hlo = sample.lower(bank, jax.random.key(0), 3).compile().as_text()
  assert "all-gather" not in hlo and "all-reduce" not in hlo   # sampling stays on each device


def test_pad_must_divide_devices():
  x, y = _tagged_split()
  mesh = jax.make_mesh((8,), ("classes",))
  with pytest.raises(ConfigError, match="pad_to"):
    build_bank(x, y, 10, sharding=NamedSharding(mesh, P("classes")))
  with pytest.raises(ConfigError, match="pad_to: 8 is smaller than the 10 classes"):
    build_bank(x, y, 10, pad_to=8)
  assert local_class_slots(NamedSharding(mesh, P("classes")), 16).tolist() == list(range(16))


def test_bad_input():
  x, y = _tagged_split()
  y2 = y.copy()
  y2[4] = 10
  with pytest.raises(DataError, match=r"labels: value 10 outside the class range \[0, 10\)"):
    build_bank(x, y2, 10)
  with pytest.raises(DataError, match="labels: class 2 has no images"):
    build_bank(x[y != 2], y[y != 2], 10)
  with pytest.raises(DataError, match=r"images: expected uint8 \[N, H, W, ch\], got float32"):
    build_bank(x.astype(np.float32), y, 10)
  with pytest.raises(DataError, match="images: expected uint8"):
    build_bank(x[..., 0], y, 10)                               # wrong rank
  with pytest.raises(DataError, match="labels: 3 labels for"):
    build_bank(x, y[:3], 10)


def test_max_per_class_cap():
  x, y = _tagged_split()
  bank = build_bank(x, y, 10, max_per_class=4)
  assert bank.images.shape[1] == 4 and bank.counts.tolist() == [min(n, 4) for n in COUNTS]
  imgs = np.asarray(bank.images)
  assert (imgs[3, :, 0, 0, 0] == 4).all() and len(set(imgs[3, :, 0, 1, 0].tolist())) == 4


def test_normalize_fused_and_sharded():
  x = np.arange(2 * 3 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 3, 2, 2, 3)
  mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
  want = (x.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
  got = jax.jit(lambda a: normalize(a, mean, std))(x)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
  with pytest.raises(ConfigError, match="normalize: mean/std have 2/2 entries for 3 channels"):
    normalize(x, (0.5, 0.5), (0.2, 0.2))
  mesh = jax.make_mesh((8,), ("classes",))
  xs = np.zeros((16, 3, 2, 2, 1), np.uint8)
  out = jax.jit(lambda a: normalize(a, (0.1307,), (0.3081,)))(
      jax.device_put(xs, NamedSharding(mesh, P("classes"))))
  assert tuple(out.sharding.spec)[0] == "classes"


def test_load_bank_digits_sharded():
  mesh = jax.make_mesh((8,), ("classes",))
  bank, info = load_bank("digits", sharding=NamedSharding(mesh, P("classes")))
  assert info.name == "digits" and bank.images.shape == (16, 147, 8, 8, 1)
  assert bank.counts.tolist()[:10] == [143, 146, 142, 147, 145, 146, 145, 144, 140, 144]
  check_batch(bank, 64)
  s = sample(bank, jax.random.key(0), 64)
  assert s.shape == (16, 64, 8, 8, 1) and s.dtype == jnp.uint8
