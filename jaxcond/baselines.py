"""Coreset baselines: which IPC real images per class a network is trained on instead of a
condensed set (the random / herding / k-center rows of DM's tables, arXiv 2110.04181;
the DDM authors' `coreset.selector`).

- random: IPC images per class drawn uniformly without replacement from that class.
- herding (Welling 2009; the iCaRL/DC "herding" baseline): greedy mean matching in a feature
  space. Step k picks the unselected sample that brings the mean of the k selected features
  closest to the class mean:  i_k = argmin_i || mu - (S_{k-1} + f_i) / k ||²,
  S_k = S_{k-1} + f_{i_k}.
- k-center (Sener & Savarese 2018, greedy 2-approximation): start from one point, then
  repeatedly add the point whose distance to its nearest selected point is largest.

Feature space: the embedding (`nets.embed`, eval mode) of a randomly initialised ConvNet drawn
from the evaluation seed, as in the dataset-condensation literature's coreset rows, or any
features the caller passes (e.g. of a trained net).

Choices where the sources are silent (not stated in the papers or code):
- distances are squared Euclidean in float64 on the host (numpy); ties go to the lowest index;
- k-center's first centre is drawn uniformly from the class with the given key (DeepCore's
  `kCenterGreedy` convention); pass `first=` to fix it;
- herding and k-center select ONE subset per class from one feature net (they are
  deterministic given the features), shared by all evaluation networks; only `random` draws
  a fresh subset per network (see `jaxcond.evaluate`), because which subset is drawn moves
  accuracy far more than the network seed.
- selection is per class and returns indices in class-major order (class 0's IPC images,
  then class 1's, ...), like the synthetic sets.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from jaxcond import nets, progress, rng
from jaxcond.errors import ConfigError, DataError

BASELINES = ("random", "herding", "kcenter")


def _check_ipc(ipc) -> int:
  if isinstance(ipc, bool) or not isinstance(ipc, (int, np.integer)) or ipc < 1:
    raise ConfigError(f"ipc must be a positive integer, got {ipc!r}")
  return int(ipc)


def class_indices(labels, num_classes: int, ipc: int) -> list[np.ndarray]:
  """Indices of each class's samples; DataError when a class has fewer than `ipc`."""
  labels = np.asarray(labels)
  out = []
  for c in range(num_classes):
    idx = np.flatnonzero(labels == c)
    if idx.size < ipc:
      raise DataError(f"class {c} has {idx.size} training images, fewer than ipc={ipc}")
    out.append(idx)
  return out


def random_subset(key, labels, num_classes: int, ipc: int) -> np.ndarray:
  """[C·ipc] indices: ipc distinct random samples of each class, class-major.

  Class c uses `fold_in(key, c)`, so the draw of one class does not depend on the others.
  """
  ipc = _check_ipc(ipc)
  picks = []
  for c, idx in enumerate(class_indices(labels, num_classes, ipc)):
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, c), idx.size))
    picks.append(idx[perm[:ipc]])
  return np.concatenate(picks)


def herding(features, k: int) -> np.ndarray:
  """[k] row indices of `features` [n, d] in greedy mean-matching order (see module doc)."""
  f = np.asarray(features, np.float64)
  n = f.shape[0]
  k = _check_ipc(k)
  if k > n:
    raise DataError(f"herding: asked for {k} samples out of {n}")
  mu = f.mean(0)
  running = np.zeros_like(mu)
  taken = np.zeros(n, bool)
  order = []
  for step in range(1, k + 1):
    cand = (running[None, :] + f) / step
    dist = ((cand - mu[None, :]) ** 2).sum(1)
    dist[taken] = np.inf
    i = int(np.argmin(dist))
    order.append(i)
    taken[i] = True
    running += f[i]
  return np.asarray(order, np.int64)


def kcenter(features, k: int, *, first: int | None = None, key=None) -> np.ndarray:
  """[k] row indices of `features` [n, d] chosen by greedy farthest-point (k-center).

  The first centre is `first` if given, else uniform from `key` (row 0 without a key).
  """
  f = np.asarray(features, np.float64)
  n = f.shape[0]
  k = _check_ipc(k)
  if k > n:
    raise DataError(f"kcenter: asked for {k} samples out of {n}")
  if first is None:
    first = 0 if key is None else int(jax.random.randint(key, (), 0, n))
  if not 0 <= first < n:
    raise ConfigError(f"kcenter: first={first} is outside [0, {n})")
  sq = (f ** 2).sum(1)

  def sq_dist_to(i):
    return np.maximum(sq + sq[i] - 2.0 * f @ f[i], 0.0)

  order = [first]
  taken = np.zeros(n, bool)
  taken[first] = True
  nearest = sq_dist_to(first)
  for _ in range(k - 1):
    score = np.where(taken, -np.inf, nearest)
    i = int(np.argmax(score))
    order.append(i)
    taken[i] = True
    nearest = np.minimum(nearest, sq_dist_to(i))
  return np.asarray(order, np.int64)


def select(method: str, labels, num_classes: int, ipc: int, *, key=None,
           features=None) -> np.ndarray:
  """[C·ipc] class-major indices into the training set chosen by `method` (BASELINES).

  random needs `key`; herding and kcenter need `features` [n, d] aligned with `labels`
  (kcenter also uses `key`, per class `fold_in(key, c)`, for its first centre).
  """
  if method not in BASELINES:
    raise ConfigError(f"baseline {method!r} unknown (known: {', '.join(BASELINES)})")
  ipc = _check_ipc(ipc)
  if method == "random":
    if key is None:
      raise ConfigError("baseline 'random' needs a key")
    return random_subset(key, labels, num_classes, ipc)
  if features is None:
    raise ConfigError(f"baseline {method!r} needs features")
  features = np.asarray(features)
  labels = np.asarray(labels)
  if features.ndim != 2 or features.shape[0] != labels.shape[0]:
    raise DataError(f"baseline {method!r}: features {features.shape} do not match "
                    f"{labels.shape[0]} labels")
  picks = []
  for c, idx in enumerate(progress.track(class_indices(labels, num_classes, ipc),
                                         f"baseline {method}: selecting", num_classes,
                                         unit="classes")):
    if method == "herding":
      local = herding(features[idx], ipc)
    else:
      ck = None if key is None else jax.random.fold_in(key, c)
      local = kcenter(features[idx], ipc, key=ck)
    picks.append(idx[local])
  return np.concatenate(picks)


def embed_images(embed_fn: Callable, images, *, batch_size: int = 500,
                 what: str | None = "embedding images") -> np.ndarray:
  """Features of `images` [n, H, W, ch] (float, model input) with a jitted `embed_fn`, in
  fixed-size batches (the last one zero-padded) so there is a single compilation.
  `what` names the `jaxcond.progress` lines (None: silent)."""
  images = np.asarray(images)
  n = images.shape[0]
  fn = jax.jit(embed_fn)
  out = []
  starts = range(0, n, batch_size)
  if what:
    starts = progress.track(starts, what, len(starts), unit="batches")
  for start in starts:
    chunk = images[start:start + batch_size]
    valid = chunk.shape[0]
    if valid < batch_size and n > batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - valid, *chunk.shape[1:]),
                                              chunk.dtype)])
    out.append(np.asarray(fn(chunk))[:valid])
  return np.concatenate(out)


def random_net_features(model_name: str, key, images, *, num_classes: int,
                        batch_size: int = 500) -> np.ndarray:
  """Features of `images` (normalised float) under a random `model_name` net drawn from `key`
  (PyTorch default init, eval mode)."""
  image_shape = tuple(int(s) for s in np.shape(images)[1:])
  model = nets.get_model(model_name, num_classes=num_classes, image_shape=image_shape)
  variables = nets.init_variables(model, key, image_shape)
  return embed_images(lambda x: nets.embed(model, variables, x, train=False), images,
                      batch_size=batch_size,
                      what=f"embedding {len(images):,} images with a random {model_name}")


# Key purposes folded into the evaluation key for baselines (fixed, never reordered).
_SUBSET = 2
_FEATURES = 3


def training_sets(method: str, real_x, real_y, num_classes: int, ipc: int, *, num_nets: int,
                  seed: int, feature_net: str = "convnet", log: Callable | None = None):
  """What the evaluation networks train on for a baseline: (x, y, source record).

  `random` gives each of the `num_nets` networks its own subset ([nets, N, ...] arrays);
  herding / k-center one subset from the features of a random `feature_net`. Keys derive
  from the evaluation key `step_key(seed, 0, EVAL)`, so a baseline run is reproducible.
  """
  if method not in BASELINES:
    raise ConfigError(f"--baseline: {method!r} unknown (known: {', '.join(BASELINES)})")
  base = rng.step_key(seed, 0, rng.EVAL)
  if method == "random":
    subsets = [select("random", real_y, num_classes, ipc,
                      key=jax.random.fold_in(jax.random.fold_in(base, _SUBSET), i))
               for i in range(num_nets)]
    x = np.stack([real_x[s] for s in subsets])
    y = np.stack([real_y[s] for s in subsets])
    picked = [s.tolist() for s in subsets]
  else:
    fkey = jax.random.fold_in(base, _FEATURES)
    if log:
      log(f"baseline {method}: embedding {real_x.shape[0]} training images with a random "
          f"{feature_net}")
    feats = random_net_features(feature_net, fkey, real_x, num_classes=num_classes)
    idx = select(method, real_y, num_classes, ipc, key=fkey, features=feats)
    x, y = real_x[idx], real_y[idx]
    picked = idx.tolist()
  source = {"kind": "baseline", "baseline": method, "ipc": int(ipc),
            "per_net_subsets": method == "random",
            "feature_net": None if method == "random" else feature_net, "indices": picked}
  return x, y, source
