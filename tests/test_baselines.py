"""Coreset selection: random subsets, herding order, k-center order (jaxcond.baselines)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import baselines
from jaxcond.errors import ConfigError, DataError


def _labels():
  rs = np.random.RandomState(0)
  return rs.permutation(np.repeat(np.arange(3), 20))


def test_random_subset_respects_ipc_per_class_and_is_class_major():
  labels = _labels()
  idx = baselines.random_subset(jax.random.key(0), labels, 3, 4)
  assert idx.shape == (12,)
  assert len(set(idx.tolist())) == 12
  np.testing.assert_array_equal(labels[idx], np.repeat(np.arange(3), 4))


def test_random_subset_differs_per_seed_and_repeats_per_key():
  labels = _labels()
  a = baselines.random_subset(jax.random.key(0), labels, 3, 4)
  b = baselines.random_subset(jax.random.key(1), labels, 3, 4)
  c = baselines.random_subset(jax.random.key(0), labels, 3, 4)
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, c)


def test_random_subset_class_too_small():
  labels = np.array([0, 0, 0, 1])
  with pytest.raises(DataError, match="class 1 has 1"):
    baselines.random_subset(jax.random.key(0), labels, 2, 2)


def test_herding_greedy_mean_matching_order():
  # mu = 3.2. Step 1 picks 3 (|3-3.2|); step 2 (3+f)/2 -> 2 gives 2.5; step 3 (5+f)/3 -> 1
  # gives 2.0; step 4 (6+f)/4: 10 gives 4.0 (0.8 away), 0 gives 1.5 (1.7 away) -> 10.
  # Plain "closest to the mean" would order 3, 2, 1, 0, 10 instead.
  f = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
  np.testing.assert_array_equal(baselines.herding(f, 5), [3, 2, 1, 4, 0])
  np.testing.assert_array_equal(baselines.herding(f, 2), [3, 2])


def test_herding_2d_first_pick_is_nearest_to_mean():
  rs = np.random.RandomState(1)
  f = rs.randn(50, 4)
  order = baselines.herding(f, 6)
  assert order[0] == np.argmin(((f - f.mean(0)) ** 2).sum(1))
  assert len(set(order.tolist())) == 6


def test_kcenter_farthest_point_order():
  # From 0: farthest is 11 (idx 4); then 5 (min dist 5); then 2 (min dist 2);
  # then 1 and 10 tie at distance 1 -> lowest index (1).
  f = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [5.0]])
  np.testing.assert_array_equal(baselines.kcenter(f, 5, first=0), [0, 4, 5, 2, 1])


def test_kcenter_random_first_centre_from_key():
  f = np.random.RandomState(2).randn(40, 3)
  firsts = {int(baselines.kcenter(f, 3, key=jax.random.key(s))[0]) for s in range(6)}
  assert len(firsts) > 1
  a = baselines.kcenter(f, 5, key=jax.random.key(3))
  np.testing.assert_array_equal(a, baselines.kcenter(f, 5, key=jax.random.key(3)))
  # second centre is the farthest from the first
  d = ((f - f[a[0]]) ** 2).sum(1)
  assert a[1] == np.argmax(d)


def test_select_per_class_with_features():
  labels = _labels()
  feats = np.random.RandomState(3).randn(labels.size, 5)
  for method in ("herding", "kcenter"):
    idx = baselines.select(method, labels, 3, 3, key=jax.random.key(0), features=feats)
    np.testing.assert_array_equal(labels[idx], np.repeat(np.arange(3), 3))
  c0 = np.flatnonzero(labels == 0)
  herd = baselines.select("herding", labels, 3, 3, features=feats)
  np.testing.assert_array_equal(herd[:3], c0[baselines.herding(feats[c0], 3)])


def test_select_errors():
  labels = _labels()
  with pytest.raises(ConfigError, match="unknown"):
    baselines.select("kmeans", labels, 3, 2, key=jax.random.key(0))
  with pytest.raises(ConfigError, match="needs features"):
    baselines.select("herding", labels, 3, 2)
  with pytest.raises(DataError, match="do not match"):
    baselines.select("herding", labels, 3, 2, features=np.zeros((5, 2)))
  with pytest.raises(ConfigError, match="ipc"):
    baselines.select("random", labels, 3, 0, key=jax.random.key(0))


def test_embed_images_batches_match_unbatched():
  x = np.random.RandomState(4).randn(23, 4, 4, 1).astype(np.float32)
  fn = lambda b: jnp.sum(b.reshape(b.shape[0], -1) ** 2, axis=1, keepdims=True)
  out = baselines.embed_images(fn, x, batch_size=10)
  np.testing.assert_allclose(out, np.asarray(fn(x)), rtol=1e-6)


def test_random_net_features_shape_and_determinism():
  x = np.random.RandomState(5).randn(12, 8, 8, 1).astype(np.float32)
  a = baselines.random_net_features("mlp", jax.random.key(0), x, num_classes=10, batch_size=5)
  b = baselines.random_net_features("mlp", jax.random.key(0), x, num_classes=10, batch_size=5)
  c = baselines.random_net_features("mlp", jax.random.key(1), x, num_classes=10, batch_size=5)
  assert a.shape[0] == 12 and a.ndim == 2
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
