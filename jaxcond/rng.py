"""Deterministic key derivation: every draw is a function of (seed, step, purpose).

A resumed run therefore draws exactly what an uninterrupted one draws, and per-class
keys fold in the *global* class id so a sharded run matches a single-device run.
"""
import jax

# Purposes: fixed small integers, never reordered (changing them changes every run).
NET = 0
REAL = 1
AUG = 2
SYN_SUBSET = 3
INIT = 4
EVAL = 5
POOL = 6          # condensation: which pool net and the interpolation l (jaxcond.steps)
FREQ = 7          # NCFM frequencies t, per class (jaxcond.steps)
CALIB = 8         # calibration's augmentation of the synthetic images, per class
POOL_INIT = 9     # jaxcond.pool: each net's initial weights
POOL_TRAIN = 10   # jaxcond.pool: each training step's batches, augmentation and CutMix


def seed_key(seed: int) -> jax.Array:
  return jax.random.key(seed)


def step_key(seed: int, step, purpose: int) -> jax.Array:
  """Key for one purpose at one step; `step` may be a traced integer."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), purpose), step)


def class_keys(key: jax.Array, class_ids: jax.Array) -> jax.Array:
  """One key per (global) class id: `[C]` ids -> `[C]` keys."""
  return jax.vmap(lambda c: jax.random.fold_in(key, c))(class_ids)
