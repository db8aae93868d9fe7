"""Orbax checkpoints of the condensation state: round trip, sharding, retention, metadata."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcond import checkpoint, parallel


def _state(mesh, c=16, scale=1.0):
  syn = jax.device_put(scale * jnp.arange(c * 2 * 4 * 4, dtype=jnp.float32).reshape(c, 2, 4, 4, 1),
                       parallel.class_sharding(mesh, 5))
  opt = optax.sgd(1.0, momentum=0.5)
  _, opt_state = opt.update(jnp.ones_like(syn), opt.init(syn), syn)
  return {"syn": syn, "opt": opt_state}


def test_round_trip_keeps_values_structure_and_sharding(tmp_path):
  mesh = parallel.make_mesh(8)
  state = _state(mesh)
  ckpt = checkpoint.Checkpointer(tmp_path / "ck", max_to_keep=2)
  assert ckpt.latest_step() is None and ckpt.all_steps() == []
  ckpt.save(5, state, {"step": 5, "config_hash": "abc", "trajectory": {"seed": 0}})
  ckpt.wait()
  assert ckpt.latest_step() == 5
  assert ckpt.saved_shapes(5) == [(16, 2, 4, 4, 1), (16, 2, 4, 4, 1)]
  abstract = checkpoint.abstract_like(state)
  restored, meta = ckpt.restore(5, abstract)
  ckpt.close()
  assert meta == {"step": 5, "config_hash": "abc", "trajectory": {"seed": 0},
                  "checksums": checkpoint.checksums(state)}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.sharding.is_equivalent_to(b.sharding, a.ndim)
  assert isinstance(restored["opt"][0], optax.TraceState)


def test_retention_and_reopen(tmp_path):
  mesh = parallel.make_mesh(4)
  ckpt = checkpoint.Checkpointer(tmp_path / "ck", max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(mesh, scale=float(step)), {"step": step})
  ckpt.close()
  again = checkpoint.Checkpointer(tmp_path / "ck", max_to_keep=2)
  assert again.all_steps() == [2, 3] and again.latest_step() == 3
  assert again.restore_meta(3) == {"step": 3, "checksums": checkpoint.checksums(
      _state(mesh, scale=3.0))}
  # Restore onto another mesh (resharding is orbax's job).
  other = parallel.make_mesh(2)
  abstract = checkpoint.abstract_like(_state(other))
  restored, _ = again.restore(3, abstract)
  again.close()
  np.testing.assert_array_equal(np.asarray(restored["syn"]), np.asarray(_state(mesh, scale=3.0)["syn"]))
  assert len(restored["syn"].sharding.device_set) == 2


def test_unfinished_save_is_invisible(tmp_path):
  """A folder left by a killed process mid-save is not a checkpoint."""
  mesh = parallel.make_mesh(2)
  ckpt = checkpoint.Checkpointer(tmp_path / "ck")
  ckpt.save(4, _state(mesh), {"step": 4})
  ckpt.close()
  (tmp_path / "ck" / "8.orbax-checkpoint-tmp-123").mkdir()
  again = checkpoint.Checkpointer(tmp_path / "ck")
  assert again.all_steps() == [4]
  again.close()
